// Package version reports what switchboard binary this is: its module
// version, the commit it was built from and when, read from the build
// information the Go toolchain embeds (go build stamps the VCS revision
// and time when it builds inside a git checkout; go install stamps the
// module version).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// fallback is the version reported when the build carries none (go run,
// go test, or a build outside a module version). A release build may set
// it: go build -ldflags "-X github.com/switchboard-pbx/switchboard/internal/version.fallback=1.2.0".
var fallback = "0.2.0-dev"

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`    // module version (v1.2.3) or the fallback
	Commit    string `json:"commit"`     // VCS revision, "" when unknown
	BuildDate string `json:"build_date"` // commit time (RFC 3339), "" when unknown
	Modified  bool   `json:"modified"`   // built from a work tree with uncommitted changes
	Go        string `json:"go"`         // Go toolchain version
	Platform  string `json:"platform"`   // GOOS/GOARCH
}

// Get reads the binary's build information.
func Get() Info {
	info := Info{Version: fallback, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" && !strings.HasPrefix(v, "v0.0.0-") {
		info.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.BuildDate = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one-line form: "0.2.0-dev (commit 1a2b3c4d5e6f, 2026-12-03T04:00:00Z, modified; go1.26.8 linux/amd64)".
func (i Info) String() string {
	var parts []string
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		parts = append(parts, "commit "+c)
	}
	if i.BuildDate != "" {
		parts = append(parts, i.BuildDate)
	}
	if i.Modified {
		parts = append(parts, "modified")
	}
	tail := i.Go + " " + i.Platform
	if len(parts) > 0 {
		tail = strings.Join(parts, ", ") + "; " + tail
	}
	return fmt.Sprintf("%s (%s)", i.Version, tail)
}

package version

import (
	"strings"
	"testing"
)

func TestStringNamesEveryKnownPart(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "0123456789abcdef0123", BuildDate: "2026-12-03T04:00:00Z", Modified: true, Go: "go1.26.8", Platform: "linux/amd64"}
	got := i.String()
	want := "v1.2.3 (commit 0123456789ab, 2026-12-03T04:00:00Z, modified; go1.26.8 linux/amd64)"
	if got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	bare := Info{Version: "0.2.0-dev", Go: "go1.26.8", Platform: "linux/amd64"}.String()
	if bare != "0.2.0-dev (go1.26.8 linux/amd64)" {
		t.Fatalf("without VCS facts: %q", bare)
	}
}

func TestGetReportsToolchain(t *testing.T) {
	i := Get()
	if i.Version == "" || !strings.HasPrefix(i.Go, "go") || !strings.Contains(i.Platform, "/") {
		t.Fatalf("Get() = %+v", i)
	}
}

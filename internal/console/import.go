package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
)

// ImportFunc imports extensions from a CSV file (the format of `switchboard
// ext import`) into domain, all or nothing; it returns what the importer
// said on success, or an error that says which line is wrong.
type ImportFunc func(ctx context.Context, csv io.Reader, domain string) (string, error)

// maxImport bounds the uploaded CSV (about 10,000 extensions).
const maxImport = 1 << 20

// ImportWithCLI returns an ImportFunc that runs this very binary's `ext
// import - --data dataDir --domain D` with the CSV on its standard input:
// the CLI's import code, its checks and messages, and its sync with the
// running server, unchanged. No shell is involved; the child is killed
// after 60 s.
func ImportWithCLI(dataDir string) ImportFunc {
	return func(ctx context.Context, csv io.Reader, domain string) (string, error) {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("import: find the switchboard binary: %w", err)
		}
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		args := []string{"ext", "import", "-", "--data", dataDir}
		if domain != "" {
			args = append(args, "--domain", domain)
		}
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Stdin = csv
		cmd.Env = append(os.Environ(), "SWITCHBOARD_DATA=")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(errOut.String()), "switchboard: "))
			if msg == "" {
				msg = err.Error()
			}
			return "", errors.New(msg)
		}
		return strings.TrimSpace(out.String()), nil
	}
}

func (c *Console) importCSV(w http.ResponseWriter, r *http.Request) {
	if c.d.Import == nil {
		c.listError(w, r, "CSV import is not available here: use `switchboard ext import FILE.csv`")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxImport+64<<10)
	if err := r.ParseMultipartForm(maxImport); err != nil {
		c.listError(w, r, "the upload could not be read (at most 1 MiB): "+err.Error())
		return
	}
	defer r.MultipartForm.RemoveAll()
	f, _, err := r.FormFile("csv")
	if err != nil {
		c.listError(w, r, "choose a CSV file to import")
		return
	}
	defer f.Close()
	dom := strings.TrimSpace(r.FormValue("domain"))
	if dom != "" {
		if _, ok := c.d.Dir.Domain(dom); !ok {
			c.listError(w, r, fmt.Sprintf("unknown domain %q", dom))
			return
		}
	}
	said, err := c.d.Import(r.Context(), f, dom)
	if err != nil {
		c.listError(w, r, "nothing was imported: "+err.Error())
		return
	}
	c.sync(r.Context())
	c.audit(r, cause.ExtensionChanged, "extensions imported from CSV: "+said)
	d := extListData{Limit: 50, DefaultDomain: c.d.Dir.DefaultDomain(), Domains: c.d.Dir.Domains(),
		Chips: []string{StatusRegistered, StatusOffline, StatusFailing, StatusDisabled}}
	d.Rows, d.Next, d.Total = c.page("", "", "", "", d.Limit)
	c.render(w, r, http.StatusOK, "extensions", page{Title: "Extensions", Live: true, Flash: said, Data: d})
}

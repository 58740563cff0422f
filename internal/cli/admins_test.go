package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
	"github.com/switchboard-pbx/switchboard/internal/webauth"
)

// TestAdminCommands: admin add/passwd/rm/list and token add/list/rm store
// bcrypt and SHA-256 hashes only, print a token once, answer mistakes with
// one line, and journal each change.
func TestAdminCommands(t *testing.T) {
	data := t.TempDir()
	const pw = "a long enough secret"
	if _, err := run(t, data, pw+"\n", "admin", "add", "alice", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, data, pw+"\n", "admin", "add", "alice", "--password-stdin")
	wantUsage(t, []string{"admin add alice"}, err, "already exists")
	_, err = run(t, data, "short\n", "admin", "add", "bob", "--password-stdin")
	wantUsage(t, []string{"admin add bob"}, err, "too short")
	_, err = run(t, data, "", "admin", "add", "bob")
	wantUsage(t, []string{"admin add bob"}, err, "--password-stdin")
	_, err = run(t, data, pw+"\n", "admin", "add", "../x", "--password-stdin")
	wantUsage(t, []string{"admin add ../x"}, err, "invalid admin name")
	_, err = run(t, data, "", "admin", "rm", "nobody")
	wantUsage(t, []string{"admin rm nobody"}, err, "no admin nobody")

	out := mustRun(t, data, "admin", "list", "--json")
	var admins []adminView
	if err := json.Unmarshal([]byte(out), &admins); err != nil || len(admins) != 1 || admins[0].Name != "alice" {
		t.Fatalf("admin list --json: %v %q", err, out)
	}
	db, err := sqlite.Open(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, _ := db.Admin(context.Background(), "alice")
	if !strings.HasPrefix(a.PasswordHash, "$2") || !webauth.VerifyPassword(a.PasswordHash, pw) {
		t.Fatalf("stored hash %q", a.PasswordHash)
	}
	if _, err := run(t, data, "another long secret\n", "admin", "passwd", "alice", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	a2, _ := db.Admin(context.Background(), "alice")
	if webauth.VerifyPassword(a2.PasswordHash, pw) || !a2.PasswordChangedAt.After(a.PasswordChangedAt.Add(-1)) {
		t.Fatal("passwd did not change the hash")
	}

	tok := strings.TrimSpace(mustRun(t, data, "admin", "token", "add", "backup"))
	if !strings.HasPrefix(tok, webauth.TokenPrefix) || len(tok) < 40 {
		t.Fatalf("token %q", tok)
	}
	got, err := db.APITokenByHash(context.Background(), webauth.HashToken(tok))
	if err != nil || got.Name != "backup" {
		t.Fatalf("token not stored by its hash: %v", err)
	}
	out = mustRun(t, data, "admin", "token", "list", "--json")
	if strings.Contains(out, tok) || !strings.Contains(out, `"name": "backup"`) {
		t.Fatalf("token list shows the token or misses it: %q", out)
	}
	_, err = run(t, data, "", "admin", "token", "add", "backup")
	wantUsage(t, []string{"admin token add backup"}, err, "already exists")
	mustRun(t, data, "admin", "token", "rm", "backup")
	mustRun(t, data, "admin", "rm", "alice")
	if out := mustRun(t, data, "admin", "list"); !strings.Contains(out, "no admins") {
		t.Fatalf("after rm: %q", out)
	}
	ev, err := journal.Admin(context.Background(), db, 0)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := journal.Query(context.Background(), db, journal.Filter{Kind: journal.KindAdmin})
	if len(all) != 5 {
		t.Fatalf("journaled %d admin changes, want 5 (add, passwd, token add, token rm, rm): %+v %+v", len(all), all, ev)
	}
	for _, e := range all {
		if strings.Contains(e.Detail, pw) || strings.Contains(e.Detail, tok) {
			t.Fatal("a secret reached the journal")
		}
	}
}

package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDBCommandMistakes: each mistake with db and --db is one line saying
// what to type; a password in a bad URL is not repeated.
func TestDBCommandMistakes(t *testing.T) {
	data := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"db", "copy", "--from", "sqlite:" + data}, "needs --to postgres://"},
		{[]string{"db", "copy", "--to", "sqlite:/tmp/x"}, "--to must be a PostgreSQL URL"},
		{[]string{"db", "copy", "--to", "mysql://u:hunter2@h/db"}, "--to:"},
		{[]string{"db", "status", "--to", "postgres://h/db"}, "go with `switchboard db copy"},
		{[]string{"db", "status", "extra"}, "takes no arguments"},
		{[]string{"db", "vacuum"}, "db"},
		{[]string{"ext", "list", "--db", "mysql://u:hunter2@h/db"}, "--db: "},
		{[]string{"backup", "/tmp/x.db", "--db", "postgres://u:hunter2@127.0.0.1:1/db"}, "pg_dump"},
		{[]string{"restore", "/tmp/x.db", "--db", "postgres://u:hunter2@127.0.0.1:1/db"}, "pg_restore"},
	} {
		_, err := run(t, data, "", c.args...)
		wantUsage(t, c.args, err, c.want)
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%v: the password shows: %v", c.args, err)
		}
	}
}

// TestDBStatusSQLite: db status and migrate on a new SQLite data
// directory.
func TestDBStatusSQLite(t *testing.T) {
	data := t.TempDir()
	var st struct {
		Backend string `json:"backend"`
		Exists  bool   `json:"exists"`
		Version int    `json:"schema_version"`
		Latest  int    `json:"latest_version"`
		Pending int    `json:"pending_migrations"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, data, "db", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Backend != "sqlite" || st.Exists || st.Pending != st.Latest || st.Latest == 0 {
		t.Fatalf("new data directory: %+v", st)
	}
	if out := mustRun(t, data, "db", "migrate"); !strings.Contains(out, "migrated from schema version 0") {
		t.Fatalf("db migrate: %q", out)
	}
	if out := mustRun(t, data, "db", "status"); !strings.Contains(out, "(up to date)") {
		t.Fatalf("db status after migrate: %q", out)
	}
}

package sqlite

import (
	"strings"
	"testing"
)

// TestDoctorQueriesUseIndexes pins the query plans the doctor relies on to
// answer in milliseconds with a million events (see the doctor benchmark).
func TestDoctorQueriesUseIndexes(t *testing.T) {
	db := openTest(t, t.TempDir())
	plans := []struct {
		query string
		args  []any
		want  string
	}{
		{`SELECT * FROM journal WHERE extension = ? ORDER BY time DESC, id DESC LIMIT 2000`, []any{"2002"}, "INDEX journal_ext "},
		{`SELECT id FROM journal WHERE extension = ? ORDER BY time DESC, id DESC LIMIT 2000`, []any{"2002"}, "INDEX journal_ext "},
		{`SELECT * FROM journal WHERE extension = ? AND time >= ? ORDER BY time DESC, id DESC LIMIT 100`, []any{"2002", 5}, "INDEX journal_ext "},
		{`SELECT count(*) FROM (SELECT 1 FROM journal WHERE extension = ? AND domain = ? AND cause = ? AND time >= ? LIMIT 10)`,
			[]any{"2002", "d", "wrong_password", 0}, "COVERING INDEX journal_dom_ext_cause"},
		{`SELECT id FROM journal WHERE extension = ? AND domain = ? AND cause = ? ORDER BY time DESC LIMIT 1`,
			[]any{"2002", "d", "registered"}, "INDEX journal_dom_ext_cause"},
		{`SELECT id FROM journal WHERE id > ? ORDER BY id ASC LIMIT 1000`, []any{5}, "PRIMARY KEY"},
		{`SELECT id FROM journal WHERE +extension = ? AND +time >= ? AND id > ? ORDER BY id ASC LIMIT 1000`, []any{"2002", 1, 5}, "PRIMARY KEY"},
		{`SELECT id FROM journal WHERE (source = ? OR (source >= ? AND source < ?)) ORDER BY time DESC, id DESC LIMIT 10`,
			[]any{"1.2.3.4", "1.2.3.4:", "1.2.3.4;"}, "journal_source"},
	}
	for _, p := range plans {
		rows, err := db.sql.Query("EXPLAIN QUERY PLAN "+p.query, p.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "; ")
		if !strings.Contains(all+" ", p.want) || strings.Contains(all, "SCAN journal") && !strings.Contains(all, "INDEX") {
			t.Errorf("%s\nplan: %s\nwant %s", p.query, all, p.want)
		}
	}
}

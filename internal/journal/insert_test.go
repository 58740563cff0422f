package journal_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
)

// TestInsertChunks: a batch that is not a multiple of the statement chunk
// is stored whole, every field in place, in order.
func TestInsertChunks(t *testing.T) {
	db := openDB(t)
	var in []journal.Event
	for i := 0; i < 70; i++ {
		e := event(i, cause.WrongPassword, strconv.Itoa(2000+i), "127.0.0.1:5060")
		e.AuthUser, e.Realm, e.Status, e.CallID, e.Detail = "a"+strconv.Itoa(i), "r", 403, "c"+strconv.Itoa(i), "d"
		in = append(in, e)
	}
	if err := journal.Insert(context.Background(), db, in); err != nil {
		t.Fatal(err)
	}
	out, err := journal.Query(context.Background(), db, journal.Filter{Limit: 1000, Oldest: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("stored %d events, want %d", len(out), len(in))
	}
	for i := range in {
		got, want := out[i], in[i]
		got.ID = 0
		if !got.Time.Equal(want.Time) {
			t.Fatalf("event %d time %v, want %v", i, got.Time, want.Time)
		}
		got.Time = want.Time
		if got != want {
			t.Fatalf("event %d:\ngot  %+v\nwant %+v", i, got, want)
		}
	}
}

package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// fakeStore stands in for the database under the wrappers (this tests the
// counting logic only).
type fakeStore struct {
	store.Journal
	store.Calls
	fail bool
}

func (f *fakeStore) InsertEvents(context.Context, []store.Event) error {
	if f.fail {
		return io.ErrUnexpectedEOF
	}
	return nil
}
func (f *fakeStore) SaveCalls(context.Context, []store.Call) error { return nil }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestCountsFromWrites: events are counted by kind and cause once
// written (not when the write fails), REGISTER outcomes by cause, an ended
// call once however many snapshots; gauges read their sources; the Go
// runtime is there.
func TestCountsFromWrites(t *testing.T) {
	m := New(Sources{RegistrationsByDomain: func() map[string]int { return map[string]int{"pbx.test": 3} },
		ActiveBans: func() int { return 2 }, JournalQueue: func() int { return 7 },
		InHand: func() int { return 5 }, Shed: func() int64 { return 3 }, Absorbed: func() int64 { return 11 }, Stale: func() int64 { return 7 }})
	fs := &fakeStore{}
	j := m.Journal(fs)
	ev := []store.Event{{Kind: journal.KindRegister, Cause: cause.WrongPassword}, {Kind: journal.KindRegister, Cause: cause.WrongPassword},
		{Kind: journal.KindRegister, Cause: cause.Registered}, {Kind: journal.KindBan, Cause: cause.IPBanned}}
	if err := j.InsertEvents(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	fs.fail = true
	_ = j.InsertEvents(context.Background(), ev) // failed: not counted
	c := m.Calls(fs)
	end := time.Now()
	_ = c.SaveCalls(context.Background(), []store.Call{{ID: 1}, {ID: 2, End: end, Cause: cause.UserNotRegistered}})
	_ = c.SaveCalls(context.Background(), []store.Call{{ID: 2, End: end, Cause: cause.UserNotRegistered}, {ID: 1, End: end, Cause: cause.NormalClearing}})
	out := scrape(t, m)
	for _, want := range []string{
		`switchboard_auth_outcomes_total{cause="wrong_password"} 2`,
		`switchboard_auth_outcomes_total{cause="registered"} 1`,
		`switchboard_journal_events_total{cause="ip_banned",kind="ban"} 1`,
		`switchboard_calls_total{cause="USER_NOT_REGISTERED"} 1`,
		`switchboard_calls_total{cause="NORMAL_CLEARING"} 1`,
		`switchboard_registrations{domain="pbx.test"} 3`,
		`switchboard_bans 2`,
		`switchboard_writer_queue_depth{writer="journal"} 7`,
		`switchboard_requests_in_hand 5`,
		`switchboard_stateless_total{what="shed"} 3`,
		`switchboard_stateless_total{what="absorbed"} 11`,
		`switchboard_stateless_total{what="stale"} 7`,
		`switchboard_writer_errors_total{writer="journal"} 1`,
		`switchboard_writer_batch_seconds_count{writer="journal"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want+" ") {
			t.Errorf("metrics miss %q", want)
		}
	}
}

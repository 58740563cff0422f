package journal_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
)

// TestAdmin: Admin returns the operator's changes only, newest first, with
// who made them, whatever else the journal holds.
func TestAdmin(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	admin := func(sec int, c cause.Code, src, detail string) journal.Event {
		return journal.Event{Time: t0.Add(time.Duration(sec) * time.Second), Kind: journal.KindAdmin, Cause: c, AuthUser: "alice", Source: src, Detail: detail}
	}
	ban := journal.Event{Time: t0.Add(2e9), Kind: journal.KindBan, Cause: cause.IPBanned, Source: "127.0.0.5", Detail: "banned"}
	evs := []journal.Event{
		admin(1, cause.BanAdded, "127.0.0.5", "127.0.0.5 banned for 1h by alice"),
		ban,
		event(3, cause.WrongPassword, "2002", "127.0.0.5:5060"),
		admin(4, cause.BanLifted, "127.0.0.5", "ban of 127.0.0.5 lifted by alice"),
		admin(5, cause.ACLChanged, "", "acl office: removed 127.0.0.0/8 by alice"),
		admin(6, cause.ProfileChanged, "", "profile internal: inbound acl office -> none by alice"),
	}
	if err := journal.Insert(ctx, db, evs); err != nil {
		t.Fatal(err)
	}
	got, err := journal.Admin(ctx, db, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []cause.Code{cause.ProfileChanged, cause.ACLChanged, cause.BanLifted, cause.BanAdded}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(got), len(want), got)
	}
	for i, c := range want {
		if got[i].Cause != c || got[i].AuthUser != "alice" || got[i].Kind != journal.KindAdmin {
			t.Fatalf("event %d: %+v, want cause %s by alice", i, got[i], c)
		}
	}
	if got, _ := journal.Admin(ctx, db, 2); len(got) != 2 || got[0].Cause != cause.ProfileChanged {
		t.Fatalf("limit 2: %+v", got)
	}
}

package server

import (
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// fakeFacts relays the calls in up.
type fakeFacts struct{ up []string }

func (f fakeFacts) LiveMedia(id string) ([]store.MediaLeg, bool) {
	for _, u := range f.up {
		if u == id {
			return []store.MediaLeg{{Side: "caller", Relayed: true, PacketsIn: 1}, {Side: "callee", Relayed: true}}, true
		}
	}
	return nil, false
}

func (f fakeFacts) RelayedCalls(limit int) []string { return f.up[:min(limit, len(f.up))] }

// TestLiveMediaOf: the calls asked for that are relayed (in the order
// asked, at most limit), or the relayed calls when none is named; a server
// without a relay answers nothing.
func TestLiveMediaOf(t *testing.T) {
	f := fakeFacts{up: []string{"a", "b", "c"}}
	got := liveMediaOf(f, []string{"c", "gone", "a"}, 10)
	if len(got) != 2 || got[0].CallID != "c" || got[1].CallID != "a" || len(got[0].Legs) != 2 {
		t.Fatalf("by id: %+v", got)
	}
	if got := liveMediaOf(f, nil, 2); len(got) != 2 || got[0].CallID != "a" {
		t.Fatalf("all, limit 2: %+v", got)
	}
	if got := liveMediaOf(f, []string{"a", "b", "c"}, 1); len(got) != 1 {
		t.Fatalf("limit: %+v", got)
	}
	if got := (&Server{}).LiveMedia([]string{"a"}, 10); got != nil {
		t.Fatalf("no relay: %+v", got)
	}
}

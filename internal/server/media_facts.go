package server

import (
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// mediaFacts is where the live media counters come from: the proxy, which
// knows which calls are relayed and converts the relay's stats into call
// record legs (the same legs the record keeps at the call's end).
type mediaFacts interface {
	LiveMedia(callID string) ([]store.MediaLeg, bool)
	RelayedCalls(limit int) []string
}

// LiveMedia answers the live media counters of the relayed calls in
// progress with these Call-IDs, or of at most limit of them when none is
// named (control.MediaBackend, for `calls --active` and the API); nil
// without a relay.
func (s *Server) LiveMedia(callIDs []string, limit int) []control.LiveMedia {
	if s.Media == nil || s.Proxy == nil {
		return nil
	}
	return liveMediaOf(s.Proxy, callIDs, limit)
}

func liveMediaOf(f mediaFacts, callIDs []string, limit int) []control.LiveMedia {
	if len(callIDs) == 0 {
		callIDs = f.RelayedCalls(limit)
	}
	var out []control.LiveMedia
	for _, id := range callIDs {
		if len(out) >= limit {
			break
		}
		if legs, ok := f.LiveMedia(id); ok {
			out = append(out, control.LiveMedia{CallID: id, Legs: legs})
		}
	}
	return out
}

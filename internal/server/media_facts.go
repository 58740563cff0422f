package server

import "github.com/switchboard-pbx/switchboard/internal/control"

// LiveMedia answers the live media counters of the relayed calls in
// progress (control.MediaBackend) from s.MediaFacts, which the media relay's
// wiring sets (calls.RelayFacts over the relay); nil without a relay.
func (s *Server) LiveMedia(callIDs []string, limit int) []control.LiveMedia {
	if s.MediaFacts == nil {
		return nil
	}
	return s.MediaFacts.LiveMedia(callIDs, limit)
}

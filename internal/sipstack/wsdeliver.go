package sipstack

import (
	_ "unsafe" // go:linkname

	"github.com/emiago/sipgo/sip"
)

// transportDeliver hands a message read by switchboard (serveWS) to
// sipgo's transport layer as sipgo's own readers do: every handler
// registered with OnMessage runs (the transaction layer first, then the
// stack's delivered hook). sipgo v1.7.3 passes this method only to its
// own read loops and has no exported way to inject a message with a
// source address of the caller's choice (its pool is exported, so writing
// on our connections needs nothing of the kind). It is linked by name: a
// sipgo that renames it fails the build, not a call, and
// TestTransportDeliver checks that the handlers run.
//
//go:linkname transportDeliver github.com/emiago/sipgo/sip.(*TransportLayer).handleMessage
func transportDeliver(l *sip.TransportLayer, msg sip.Message)

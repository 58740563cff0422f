package sipstack

import (
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// sipgo v1.7.3 keeps three of the settings switchboard needs in package
// variables of github.com/emiago/sipgo/sip, and offers no per-UA option
// for them (its TransportLayerOptions are the logger, connection reuse,
// DNS SRV, the read filter and the transports, none of which carries a
// size or a logger for connections; its TransactionLayerOptions are the
// logger, the unhandled-response handler and terminate-on-close, and the
// transaction state machines read the timers from the package):
//
//   - sip.UDPMTUSize: UDPConnection.WriteMsg refuses a message longer than
//     UDPMTUSize-200 bytes (1300 by default) with ErrUDPMTUCongestion, so
//     a 200 to an INVITE with a WebRTC or multi-codec SDP is never sent
//     (TestLargeUDPMessage).
//   - sip.Timer_J, Timer_L, Timer_M: how long a transaction stays after its
//     final answer; RFC 3261's 64*T1 (32 s) keeps every call's messages in
//     memory 32 s (TestTxLinger, TestTxLingerEnds).
//   - sip.SetDefaultLogger: sipgo's connections log through the package
//     logger, not the UA's; without ours, a flood of bad messages logs
//     them whole on the default logger.
//
// setSipgoGlobals is the one place that changes them: once per process,
// before the first Stack serves, so every Stack in the process shares
// these values (they are constants of switchboard, not settings), and the
// connection logger is the first Stack's. Nothing else in switchboard
// writes a sipgo package variable.
func setSipgoGlobals(log *slog.Logger) {
	sipgoGlobals.Do(func() {
		sip.UDPMTUSize = MaxUDPMessage + 200
		sip.Timer_L, sip.Timer_M, sip.Timer_J = TxLinger, TxLinger, TxLinger
		if log == nil {
			log = slog.Default()
		}
		// Clip and demote sipgo's noise there as on the stack's logger.
		sip.SetDefaultLogger(slog.New(clipHandler{log.Handler()}))
	})
}

// sipgoGlobals makes setSipgoGlobals run once: the only mutable package-level
// state of sipstack, standing for sipgo's own.
var sipgoGlobals sync.Once

// TxLinger is how long a transaction that got its final answer stays to
// absorb retransmissions (sipgo's Timers L, M and J): RFC 3261/6026 say
// 64*T1 (32 s), which at 1,000 calls/s keeps 32,000 calls' messages (about
// 1 GiB) in memory. Kamailio keeps its transactions 5 s (tm's wt_timer).
// 8 s covers four retransmissions (0.5, 1.5, 3.5, 7.5 s). Later ones are
// still handled: a 2xx retransmission without a transaction is forwarded
// statelessly (RFC 3261 §16.7), an authenticated INVITE retransmitted
// later fails the nonce-count replay check instead of starting a second
// call, and a late BYE retransmission reaches the callee, which answers
// 481.
const TxLinger = 8 * time.Second

// MaxUDPMessage is the largest UDP message sent (sipgo defaults to about
// 1300 bytes, too small for WebRTC and multi-codec SDPs).
const MaxUDPMessage = 65000

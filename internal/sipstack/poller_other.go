//go:build !linux

package sipstack

import (
	"errors"
	"log/slog"
)

// poller: without epoll, an idle connection's reader stays blocked in its
// Read (a goroutine each), as before.
type poller struct{}

var errNoPoller = errors.New("no poller on this system")

func newPoller(*slog.Logger) (*poller, error) { return nil, errNoPoller }
func (p *poller) run()                        {}
func (p *poller) close()                      {}
func (p *poller) park(*trackedConn) error     { return errNoPoller }
func (p *poller) unpark(*trackedConn)         {}
func (p *poller) count() int                  { return 0 }

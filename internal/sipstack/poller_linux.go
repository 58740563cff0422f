package sipstack

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller parks idle TLS, WS and WSS connections without a goroutine each.
//
// A goroutine blocked in a connection's Read costs its stack (4 KiB once
// the runtime's adaptive start size has seen TLS handshakes) and its g
// (about 0.4 KiB), and, inside crypto/tls, a record buffer: as much as
// the rest of an idle connection. So a connection's reader, once it has
// handled a message and no byte more has come for parkAfter, parks the
// connection here and ends: the connection's socket is watched by one
// epoll instance (EPOLLONESHOT: one wake-up per parking) and its idle
// deadline by a timer. The first of readable data (or the peer's close),
// the idle deadline, or the connection's Close claims the parking and
// starts a fresh reader goroutine, which reads as before: a deadline that
// passed makes its Read end the connection, a close makes it fail.
//
// The sockets stay registered with Go's own netpoller too (a second epoll
// instance may watch the same socket); this one only says when to start a
// reader.
type poller struct {
	ep  *os.File        // the epoll instance, in Go's netpoller: run waits there, close stops it
	erc syscall.RawConn // ep's descriptor, held open while used
	log *slog.Logger

	mu     sync.Mutex
	parked map[int]*trackedConn // guarded by mu; by socket descriptor
	closed bool                 // guarded by mu
	done   chan struct{}        // closed when run has returned
	once   sync.Once            // close
}

// newPoller creates the epoll instance; its owner starts run and calls
// close. The instance is itself registered with Go's netpoller (an epoll
// descriptor is readable when it has events), so run's goroutine is woken
// as any network reader is, holding no thread while it waits.
func newPoller(log *slog.Logger) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll descriptor non-blocking: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	erc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	return &poller{ep: ep, erc: erc, log: log, parked: map[int]*trackedConn{}, done: make(chan struct{})}, nil
}

// run hands out readiness until close.
func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	var woken []*trackedConn
	err := p.erc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				p.log.Error("sip stack: epoll_wait failed", "error", err)
				return false
			}
			woken = woken[:0]
			p.mu.Lock()
			for _, ev := range events[:n] {
				fd := int(ev.Fd)
				if c := p.parked[fd]; c != nil {
					p.claimLocked(fd, c)
					woken = append(woken, c)
				}
			}
			p.mu.Unlock()
			for _, c := range woken {
				go c.resume()
			}
			if n < len(events) {
				return false // drained: wait for the descriptor again
			}
		}
	})
	if !p.isClosed() {
		p.log.Error("sip stack: epoll wait ended; idle connections are read by a goroutine each from now on", "error", err)
	}
	p.shut()
}

func (p *poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// shut refuses further parkings and wakes every parked connection.
func (p *poller) shut() {
	p.mu.Lock()
	p.closed = true
	var woken []*trackedConn
	for fd, c := range p.parked {
		p.claimLocked(fd, c)
		woken = append(woken, c)
	}
	p.mu.Unlock()
	for _, c := range woken {
		go c.resume()
	}
}

// close stops run and wakes the connections still parked (their readers
// then find them closed, or read them as before). Parkings after close
// fail.
func (p *poller) close() {
	p.once.Do(func() {
		p.shut()
		p.ep.Close() // ends run's wait
		<-p.done
	})
}

// claimLocked takes c, parked under fd, off the books. p.mu must be held.
func (p *poller) claimLocked(fd int, c *trackedConn) {
	delete(p.parked, fd)
	c.pfd = 0
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
}

// park watches c until it is readable, its idle deadline passes or it is
// closed, then calls go c.resume(). It fails (and c is not parked) when
// the poller is closed or c's socket cannot be watched; the caller then
// keeps reading c itself. Only c's reader calls park.
func (p *poller) park(c *trackedConn) error {
	rc, err := c.rawConn()
	if err != nil {
		return err
	}
	var perr error
	cerr := rc.Control(func(fd uintptr) {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			perr = errPollerClosed
			return
		}
		// On the books first: readiness may be reported at once.
		p.parked[int(fd)] = c
		c.pfd = int(fd) + 1
		op := unix.EPOLL_CTL_MOD
		if !c.watched {
			op = unix.EPOLL_CTL_ADD
			c.watched = true
		}
		d := time.Until(time.Unix(0, c.deadline.Load()))
		if c.idleTimer == nil {
			c.idleTimer = time.AfterFunc(d, func() { p.expire(c) })
		} else {
			c.idleTimer.Reset(d)
		}
		p.mu.Unlock()
		// From here on c may be claimed, and its reader running, at any
		// moment: only the descriptor is used.
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
		err := p.ctl(op, int(fd), &ev)
		switch {
		case err == nil:
			return
		case op == unix.EPOLL_CTL_MOD && errors.Is(err, unix.ENOENT):
			err = p.ctl(unix.EPOLL_CTL_ADD, int(fd), &ev)
		case op == unix.EPOLL_CTL_ADD && errors.Is(err, unix.EEXIST):
			err = p.ctl(unix.EPOLL_CTL_MOD, int(fd), &ev)
		}
		if err == nil {
			return
		}
		perr = fmt.Errorf("epoll_ctl: %w", err)
		p.mu.Lock()
		if p.parked[int(fd)] == c {
			p.claimLocked(int(fd), c)
		} else {
			perr = nil // claimed meanwhile (closed): its reader is on the way
		}
		p.mu.Unlock()
	})
	if cerr != nil {
		return cerr // closed: Control did not run f
	}
	return perr
}

// ctl is epoll_ctl on the instance, which stays open meanwhile (it fails
// once close has closed it).
func (p *poller) ctl(op, fd int, ev *unix.EpollEvent) error {
	var err error
	if cerr := p.erc.Control(func(epfd uintptr) { err = unix.EpollCtl(int(epfd), op, fd, ev) }); cerr != nil {
		return cerr
	}
	return err
}

// expire is c's idle timer: when c is still parked and its deadline has
// passed, its reader is started (its Read then reports the deadline and
// the connection ends); a deadline moved later re-arms the timer.
func (p *poller) expire(c *trackedConn) {
	p.mu.Lock()
	fd := c.pfd - 1
	if fd < 0 || p.parked[fd] != c {
		p.mu.Unlock()
		return
	}
	if d := time.Until(time.Unix(0, c.deadline.Load())); d > 0 {
		c.idleTimer.Reset(d)
		p.mu.Unlock()
		return
	}
	p.claimLocked(fd, c)
	p.mu.Unlock()
	go c.resume()
}

// unpark claims c if it is parked (its Close calls this) and starts its
// reader, which finds it closed.
func (p *poller) unpark(c *trackedConn) {
	p.mu.Lock()
	fd := c.pfd - 1
	if fd < 0 || p.parked[fd] != c {
		p.mu.Unlock()
		return
	}
	p.claimLocked(fd, c)
	p.mu.Unlock()
	go c.resume()
}

// errPollerClosed: the stack is closing; the reader keeps the connection.
var errPollerClosed = errors.New("poller closed")

// count returns the connections parked (for tests).
func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// Package control is the channel between the command line and a running
// server: HTTP over a Unix socket in the data directory
// (DATA/switchboard.sock, mode 0600, so only the server's user and root
// reach it), and the data directory's lock that says whether a server runs.
//
// The server answers:
//
//	GET  /v1/runtime            what runs: pid, start time, version, domain, listeners
//	POST /v1/flush              commit queued registrations, journal events and call records
//	POST /v1/sync?change=N      apply the directory's change feed up to change N
//	POST /v1/registrations/remove {"domain","extension","contact"}: drop registrations
//	POST /v1/calls/hangup {"call_id"}: BYE to both parties of an answered call
//	GET  /v1/calls/media?call_id=  live media counters of relayed calls in progress (those named, or the first 500)
//	GET  /v1/trace?ext=&ip=&call_id=&method=  SIP messages as they pass, as JSON lines
//	GET  /v1/trace/recent?ext=&ip=&call_id=&method=&limit=  the matching messages still buffered
//
// A command that reads asks for a flush first so that it sees what the
// server holds in memory; a command that edits the directory asks for a
// sync so that the edit is live when it returns. Without a running server
// the CLI reads and writes the database directly and there is nothing to
// ask.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/trace"
	"golang.org/x/sys/unix"
)

// SocketName is the control socket's file name in the data directory.
const SocketName = "switchboard.sock"

// LockFile is the file a running server holds locked (flock) in the data
// directory; it contains the server's pid.
const LockFile = "switchboard.lock"

// Listener is one bound SIP socket of the running server.
type Listener struct {
	Proto string `json:"protocol"` // "udp", "tcp", ...
	Addr  string `json:"address"`  // bound ip:port
}

// Runtime is what a running server reports about itself.
type Runtime struct {
	PID       int        `json:"pid"`
	StartedAt time.Time  `json:"started_at"`
	Version   string     `json:"version"`
	Domain    string     `json:"domain"`
	Listeners []Listener `json:"listeners"`
}

// Backend is what the server does for the control channel.
type Backend interface {
	// Runtime describes the running server.
	Runtime() Runtime
	// Flush commits every queued write (bindings, journal events, call
	// records) and returns when they are in the database.
	Flush(ctx context.Context) error
	// Sync applies the directory's change feed at least up to change and
	// returns the change applied.
	Sync(ctx context.Context, change int64) (int64, error)
	// RemoveRegistrations drops the live registrations that match (""
	// matches any domain, extension or contact) on behalf of by (who asked,
	// for the journal) and returns them.
	RemoveRegistrations(ctx context.Context, domain, extension, contact, by string) ([]store.Binding, error)
	// HangupCall ends the answered call with Call-ID callID on behalf of
	// by, and returns the final status each party answered its BYE with
	// (0: none in time); ErrNoSuchCall when no such call is up.
	HangupCall(ctx context.Context, callID, by string) (HangupResult, error)
}

// TraceBackend is a Backend that captures SIP messages; GET /v1/trace
// answers 404 for a Backend that does not.
type TraceBackend interface {
	Tracer() *trace.Tracer
}

// maxRecent is the most messages GET /v1/trace/recent answers.
const maxRecent = 100

// TraceLine is one line of GET /v1/trace: a message, or (Lost > 0 and
// no message) how many messages this trace lost so far because it read
// too slowly.
type TraceLine struct {
	*trace.Message
	Lost int64 `json:"lost,omitempty"`
}

// HangupRequest is the body of POST /v1/calls/hangup.
type HangupRequest struct {
	CallID   string `json:"call_id"`
	SudoUser string `json:"sudo_user,omitempty"` // as in RemoveRequest
}

// HangupResult is the answer to POST /v1/calls/hangup.
type HangupResult struct {
	Caller int `json:"caller_status"`
	Callee int `json:"callee_status"`
}

// MediaBackend is a Backend whose calls' media may go through the media
// relay; GET /v1/calls/media answers an empty list for a Backend that is
// not one.
type MediaBackend interface {
	// LiveMedia returns the live counters of the relayed calls in
	// progress with the given Call-IDs, or of all of them (at most limit)
	// when callIDs is empty; nil: none, or no relay.
	LiveMedia(callIDs []string, limit int) []LiveMedia
}

// maxLiveMedia bounds one answer of GET /v1/calls/media: the calls asked
// for by Call-ID, or the first calls when none is named.
const maxLiveMedia = 500

// LiveMedia is one relayed call's counters, as the call record keeps them
// at its end (GET /v1/calls/media answers a list of them).
type LiveMedia struct {
	CallID string           `json:"call_id"`
	Legs   []store.MediaLeg `json:"legs"`
}

// ErrNoSuchCall is returned (wrapped) by Backend.HangupCall for a Call-ID
// no answered call has; the channel answers it 404.
var ErrNoSuchCall = errors.New("no call in progress with this Call-ID")

// RemoveRequest is the body of POST /v1/registrations/remove.
type RemoveRequest struct {
	Domain    string `json:"domain"`
	Extension string `json:"extension"`
	Contact   string `json:"contact"`
	// SudoUser is $SUDO_USER of the command, named beside root in the
	// journal ("root (sudo alice)"); the peer's own identity comes from
	// the socket (SO_PEERCRED), not from the request.
	SudoUser string `json:"sudo_user,omitempty"`
}

// ErrNotRunning is returned by Dial when no server serves the data
// directory.
var ErrNotRunning = errors.New("switchboard serve is not running")

// Listen binds the control socket of dataDir (replacing a stale socket file
// left by a killed server: call it only while holding the lock) with mode
// 0600.
func Listen(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, SocketName)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	addr, done, err := shortPath(path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer done()
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// maxSockPath is the longest socket path Linux takes (sun_path is 108
// bytes with its NUL).
const maxSockPath = 107

// shortPath returns an address for the socket at path that fits in
// sun_path: path itself, or, when the data directory's path is too long,
// the same file through /proc/self/fd of the open directory. done closes
// that directory once bind or connect has used the address.
func shortPath(path string) (addr string, done func(), err error) {
	if len(path) <= maxSockPath {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + filepath.Base(path), func() { unix.Close(fd) }, nil
}

// Serve answers the control API on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, b Backend, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/runtime", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, b.Runtime())
	})
	mux.HandleFunc("POST /v1/flush", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Flush(r.Context()); err != nil {
			reply(w, http.StatusServiceUnavailable, errorBody{Error: "flush: " + err.Error()})
			return
		}
		reply(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST /v1/sync", func(w http.ResponseWriter, r *http.Request) {
		want, err := strconv.ParseInt(r.URL.Query().Get("change"), 10, 64)
		if err != nil || want < 0 {
			reply(w, http.StatusBadRequest, errorBody{Error: "change must be a change number, e.g. /v1/sync?change=42"})
			return
		}
		got, err := b.Sync(r.Context(), want)
		if err != nil {
			reply(w, http.StatusGatewayTimeout, syncBody{Applied: got, Error: err.Error()})
			return
		}
		reply(w, http.StatusOK, syncBody{Applied: got})
	})
	mux.HandleFunc("POST /v1/registrations/remove", func(w http.ResponseWriter, r *http.Request) {
		var req RemoveRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, errorBody{Error: "body: " + err.Error()})
			return
		}
		gone, err := b.RemoveRegistrations(r.Context(), req.Domain, req.Extension, req.Contact, peerName(r, req.SudoUser))
		if err != nil {
			reply(w, http.StatusServiceUnavailable, errorBody{Error: err.Error()})
			return
		}
		if gone == nil {
			gone = []store.Binding{}
		}
		reply(w, http.StatusOK, gone)
	})
	mux.HandleFunc("POST /v1/calls/hangup", func(w http.ResponseWriter, r *http.Request) {
		var req HangupRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.CallID == "" {
			reply(w, http.StatusBadRequest, errorBody{Error: "body: want {\"call_id\": \"...\"}"})
			return
		}
		res, err := b.HangupCall(r.Context(), req.CallID, peerName(r, req.SudoUser))
		switch {
		case errors.Is(err, ErrNoSuchCall):
			reply(w, http.StatusNotFound, errorBody{Error: err.Error()})
		case err != nil:
			reply(w, http.StatusServiceUnavailable, errorBody{Error: err.Error()})
		default:
			reply(w, http.StatusOK, res)
		}
	})
	mux.HandleFunc("GET /v1/calls/media", func(w http.ResponseWriter, r *http.Request) {
		ids := r.URL.Query()["call_id"]
		if len(ids) > maxLiveMedia {
			reply(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("at most %d call_id per request", maxLiveMedia)})
			return
		}
		var live []LiveMedia
		if mb, ok := b.(MediaBackend); ok {
			live = mb.LiveMedia(ids, maxLiveMedia)
		}
		if len(live) > maxLiveMedia {
			live = live[:maxLiveMedia]
		}
		if live == nil {
			live = []LiveMedia{}
		}
		reply(w, http.StatusOK, live)
	})
	mux.HandleFunc("GET /v1/trace", func(w http.ResponseWriter, r *http.Request) {
		tb, ok := b.(TraceBackend)
		if !ok || tb.Tracer() == nil {
			reply(w, http.StatusNotFound, errorBody{Error: "this server does not trace"})
			return
		}
		q := r.URL.Query()
		f, err := trace.ParseFilter(q.Get("ext"), q.Get("ip"), q.Get("call_id"), q.Get("method"))
		if err != nil {
			reply(w, http.StatusBadRequest, errorBody{Error: err.Error()})
			return
		}
		streamTrace(ctx, w, r, tb.Tracer(), f)
	})
	mux.HandleFunc("GET /v1/trace/recent", func(w http.ResponseWriter, r *http.Request) {
		tb, ok := b.(TraceBackend)
		if !ok || tb.Tracer() == nil {
			reply(w, http.StatusNotFound, errorBody{Error: "this server does not trace"})
			return
		}
		q := r.URL.Query()
		f, err := trace.ParseFilter(q.Get("ext"), q.Get("ip"), q.Get("call_id"), q.Get("method"))
		if err != nil {
			reply(w, http.StatusBadRequest, errorBody{Error: err.Error()})
			return
		}
		limit, err := strconv.Atoi(q.Get("limit"))
		if err != nil || limit < 1 || limit > maxRecent {
			limit = maxRecent
		}
		ms := tb.Tracer().Recent(f, limit)
		if ms == nil {
			ms = []trace.Message{}
		}
		reply(w, http.StatusOK, ms)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// streamTrace writes the messages f matches as JSON lines, flushing after
// each, until the client goes away or ctx (the server's) ends. Capture is
// on while it runs.
func streamTrace(ctx context.Context, w http.ResponseWriter, r *http.Request, t *trace.Tracer, f trace.Filter) {
	rc := http.NewResponseController(w)
	// The request was read; a trace runs for as long as the client wants.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	sub := t.Subscribe(0)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	var lost int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.Context().Done():
			return
		case m := <-sub.C():
			if l := sub.Lost(); l != lost {
				lost = l
				if enc.Encode(TraceLine{Lost: lost}) != nil {
					return
				}
			}
			if !f.Match(&m) {
				continue
			}
			if enc.Encode(TraceLine{Message: &m}) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// connKey keys the request's connection in its context.
type connKey struct{}

// peerName names the user at the other end of the request's socket
// (SO_PEERCRED): "alice", or "root (sudo alice)" when root ran the command
// through sudo.
func peerName(r *http.Request, sudoUser string) string {
	uc, ok := r.Context().Value(connKey{}).(*net.UnixConn)
	if !ok {
		return "unknown"
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return "unknown"
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred == nil {
		return "unknown"
	}
	return UserName(int(cred.Uid), sudoUser)
}

// UserName names uid (its login name, or "uid N"), with the sudo user
// beside root.
func UserName(uid int, sudoUser string) string {
	name := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	if uid == 0 && sudoUser != "" && sudoUser != "root" {
		name += " (sudo " + sudoUser + ")"
	}
	return name
}

type errorBody struct {
	Error string `json:"error"`
}

type syncBody struct {
	Applied int64  `json:"applied"`
	Error   string `json:"error,omitempty"`
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Client talks to the server of one data directory.
type Client struct {
	hc *http.Client
}

// Dial connects to the server running on dataDir; ErrNotRunning when none
// does (no socket, or nobody accepting on it).
func Dial(dataDir string) (*Client, error) {
	path := filepath.Join(dataDir, SocketName)
	dial := func(ctx context.Context) (net.Conn, error) {
		addr, done, err := shortPath(path)
		if err != nil {
			return nil, err
		}
		defer done()
		var d net.Dialer
		return d.DialContext(ctx, "unix", addr)
	}
	c, err := dial(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%w on %s (%v)", ErrNotRunning, dataDir, err)
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableCompression: true, MaxIdleConns: 1}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
}

// Close releases the connection.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Runtime asks what runs.
func (c *Client) Runtime(ctx context.Context) (Runtime, error) {
	var rt Runtime
	return rt, c.do(ctx, http.MethodGet, "/v1/runtime", &rt)
}

// Flush asks the server to commit its queued writes and waits until it has.
func (c *Client) Flush(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/flush", nil)
}

// Sync asks the server to apply the directory's change feed up to change
// and waits until it has (or the server gives up, after a few seconds).
func (c *Client) Sync(ctx context.Context, change int64) error {
	return c.do(ctx, http.MethodPost, "/v1/sync?change="+strconv.FormatInt(change, 10), nil)
}

// RemoveRegistrations asks the server to drop the registrations that
// match and returns them.
func (c *Client) RemoveRegistrations(ctx context.Context, r RemoveRequest) ([]store.Binding, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var gone []store.Binding
	return gone, c.doBody(ctx, http.MethodPost, "/v1/registrations/remove", body, &gone)
}

// Hangup asks the server to end an answered call.
func (c *Client) Hangup(ctx context.Context, r HangupRequest) (HangupResult, error) {
	var res HangupResult
	body, err := json.Marshal(r)
	if err != nil {
		return res, err
	}
	return res, c.doBody(ctx, http.MethodPost, "/v1/calls/hangup", body, &res)
}

// LiveMedia reads the live media counters of the relayed calls in
// progress with these Call-IDs (asked 200 at a time); with none, of the
// first 500 such calls.
func (c *Client) LiveMedia(ctx context.Context, callIDs []string) ([]LiveMedia, error) {
	var all []LiveMedia
	for first := true; first || len(callIDs) > 0; first = false {
		n := min(len(callIDs), 200) // an answer well below the client's 1 MiB
		q := url.Values{"call_id": callIDs[:n]}
		callIDs = callIDs[n:]
		var live []LiveMedia
		if err := c.do(ctx, http.MethodGet, "/v1/calls/media?"+q.Encode(), &live); err != nil {
			return all, err
		}
		all = append(all, live...)
	}
	return all, nil
}

// Trace streams the SIP messages the server sees that match the query
// (ext, ip, call_id, method) to fn until ctx ends (then it returns nil),
// the server goes away, or fn fails. started, when set, is called once
// the server captures.
func (c *Client) Trace(ctx context.Context, q url.Values, started func(), fn func(TraceLine) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://switchboard/v1/trace?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	hc := *c.hc
	hc.Timeout = 0 // as long as ctx lasts
	res, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ask the server: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var e errorBody
		body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("the server answered %s: %s", res.Status, e.Error)
		}
		return fmt.Errorf("the server answered %s", res.Status)
	}
	if started != nil {
		started()
	}
	dec := json.NewDecoder(res.Body)
	for {
		var l TraceLine
		if err := dec.Decode(&l); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("the server ended the trace (it stopped?)")
			}
			return fmt.Errorf("trace: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
}

// RecentTrace returns the buffered messages (the server keeps them while
// a trace runs and trace.RingKeep after) that match the query (ext, ip,
// call_id, method, limit ≤ 100), oldest first.
func (c *Client) RecentTrace(ctx context.Context, q url.Values) ([]trace.Message, error) {
	var ms []trace.Message
	return ms, c.do(ctx, http.MethodGet, "/v1/trace/recent?"+q.Encode(), &ms)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	return c.doBody(ctx, method, path, nil, out)
}

func (c *Client) doBody(ctx context.Context, method, path string, in []byte, out any) error {
	var reqBody io.Reader
	if in != nil {
		reqBody = bytes.NewReader(in)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://switchboard"+path, reqBody)
	if err != nil {
		return err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ask the server: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("ask the server: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("the server answered %s: %s", res.Status, e.Error)
		}
		return fmt.Errorf("the server answered %s", res.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// Progress is a counter that waiters can wait on (the change applied).
type Progress struct {
	mu    sync.Mutex
	value int64         // guarded by mu
	moved chan struct{} // closed and replaced when value grows; guarded by mu
}

// Set raises the value to v (never lowers it) and wakes waiters.
func (p *Progress) Set(v int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v <= p.value && p.moved != nil {
		return
	}
	p.value = max(p.value, v)
	if p.moved != nil {
		close(p.moved)
	}
	p.moved = make(chan struct{})
}

// Wait returns once the value is at least want, or with ctx's error and the
// value reached.
func (p *Progress) Wait(ctx context.Context, want int64) (int64, error) {
	for {
		p.mu.Lock()
		if p.moved == nil {
			p.moved = make(chan struct{})
		}
		v, moved := p.value, p.moved
		p.mu.Unlock()
		if v >= want {
			return v, nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}

// Lock takes the data directory's lock for a server, writing its pid, or
// fails naming the pid that holds it.
func Lock(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s is unusable: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("another switchboard serve (pid %s) is already using data directory %s; stop it or pass another --data",
			trimSpace(string(b)), dir)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	return f, nil
}

// Running reports whether a server holds the data directory's lock, and
// its pid.
func Running(dir string) (bool, int) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, 0
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		pid, _ := strconv.Atoi(trimSpace(string(b)))
		return true, pid
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, 0
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

package control

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/trace"
)

type traceBackend struct {
	*backend
	tr *trace.Tracer
}

func (b traceBackend) Tracer() *trace.Tracer { return b.tr }

// TestTraceStream: GET /v1/trace turns capture on while a client reads,
// streams only the messages its filter matches, reports a bad filter and
// a backend without a tracer, and turns capture off when the client goes.
func TestTraceStream(t *testing.T) {
	// a backend that does not trace
	plain := t.TempDir()
	serve(t, plain)
	pc, err := Dial(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.Trace(context.Background(), nil, nil, func(TraceLine) error { return nil }); err == nil || !strings.Contains(err.Error(), "does not trace") {
		t.Fatalf("trace on a backend without a tracer: %v", err)
	}

	dir := t.TempDir()
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := trace.New(0, 0)
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(sctx, ln, traceBackend{&backend{}, tr}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { stop(); <-served }()
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.Trace(context.Background(), url.Values{"ip": {"nope"}}, nil, func(TraceLine) error { return nil }); err == nil || !strings.Contains(err.Error(), "not an IP") {
		t.Fatalf("bad ip filter: %v", err)
	}
	if tr.Active() {
		t.Fatal("capture on after a refused trace")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	lines := make(chan TraceLine, 10)
	ended := make(chan error, 1)
	go func() {
		ended <- c.Trace(ctx, url.Values{"ext": {"2001"}}, func() { close(started) }, func(l TraceLine) error {
			lines <- l
			return nil
		})
	}()
	select {
	case <-started:
	case err := <-ended:
		t.Fatalf("trace ended: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("trace did not start")
	}
	if !tr.Active() {
		t.Fatal("capture off while a client traces")
	}
	phone := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
	for _, user := range []string{"2002", "2001"} {
		tr.Record(trace.In, "UDP", local, phone, []byte("REGISTER sip:pbx SIP/2.0\r\nTo: <sip:"+user+"@pbx>\r\nCall-ID: c-"+user+"\r\nCSeq: 1 REGISTER\r\n\r\n"))
	}
	select {
	case l := <-lines:
		if l.Message == nil || l.CallID != "c-2001" || l.Remote.String() != "127.0.0.1:5070" || l.Method != "REGISTER" {
			t.Fatalf("line %+v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message streamed")
	}
	cancel()
	if err := <-ended; err != nil {
		t.Fatalf("trace ended by its context: %v", err)
	}
	if len(lines) != 0 {
		t.Fatalf("%d more lines; the 2002 message passed the filter", len(lines))
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Active() {
		if time.Now().After(deadline) {
			t.Fatal("capture still on after the client went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

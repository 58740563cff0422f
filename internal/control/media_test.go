package control

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// mediaBackend has a relay with a call "up" per Call-ID in calls.
type mediaBackend struct {
	*backend
	calls []string
	asked atomic.Int64 // LiveMedia calls
}

func (m *mediaBackend) LiveMedia(ids []string, limit int) []LiveMedia {
	m.asked.Add(1)
	var out []LiveMedia
	for _, id := range m.calls {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, LiveMedia{CallID: id, Legs: []store.MediaLeg{{Side: "caller", Relayed: true, PacketsIn: 7}, {Side: "callee", Relayed: true}}})
	}
	return out
}

func serveBackend(t *testing.T, dir string, b Backend) {
	t.Helper()
	ln, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, b, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestLiveMedia: GET /v1/calls/media answers the relay's live counters for
// the Call-IDs asked (the client asks 200 at a time), an empty list from a
// server without a relay, and refuses more than 500 Call-IDs at once.
func TestLiveMedia(t *testing.T) {
	ctx := context.Background()
	plain := t.TempDir()
	serve(t, plain)
	c, err := Dial(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if live, err := c.LiveMedia(ctx, nil); err != nil || len(live) != 0 {
		t.Fatalf("no relay: %+v %v", live, err)
	}

	dir := t.TempDir()
	m := &mediaBackend{backend: &backend{}}
	for i := range 700 {
		m.calls = append(m.calls, fmt.Sprintf("call-%d@%s", i, strings.Repeat("h", i%40)))
	}
	serveBackend(t, dir, m)
	c2, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	live, err := c2.LiveMedia(ctx, []string{m.calls[3], "gone", m.calls[650]})
	if err != nil || len(live) != 2 || live[0].CallID != m.calls[3] || live[1].CallID != m.calls[650] ||
		len(live[0].Legs) != 2 || live[0].Legs[0].PacketsIn != 7 {
		t.Fatalf("by call id: %+v %v", live, err)
	}
	if live, err := c2.LiveMedia(ctx, nil); err != nil || len(live) != maxLiveMedia {
		t.Fatalf("all: %d %v, want the first %d", len(live), err, maxLiveMedia)
	}
	before := m.asked.Load()
	if live, err := c2.LiveMedia(ctx, m.calls[:450]); err != nil || len(live) != 450 || m.asked.Load()-before != 3 {
		t.Fatalf("450 ids: %d %v in %d requests, want 450 in 3", len(live), err, m.asked.Load()-before)
	}
	q := url.Values{"call_id": m.calls[:maxLiveMedia+1]}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://switchboard/v1/calls/media?"+q.Encode(), nil)
	res, err := c2.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("%d call ids: %s, want 400", maxLiveMedia+1, res.Status)
	}
}

package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type memMeta struct {
	mu sync.Mutex
	m  map[string]string
}

func (m *memMeta) Meta(_ context.Context, k string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[k]
	return v, ok, nil
}

func (m *memMeta) SetMeta(_ context.Context, k, v string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[k] = v
	return nil
}

var ctx = context.Background()

// TestSignVerify: a node verifies what another node of the same database
// signed, and refuses a tampered, foreign, stale or malformed header.
func TestSignVerify(t *testing.T) {
	meta := &memMeta{m: map[string]string{}}
	a, err := NewSigner(ctx, "a", meta)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSigner(ctx, "b", meta)
	if err != nil {
		t.Fatal(err)
	}
	h := a.Sign("call-1", "sip:2001@10.0.0.5:5060", "<sip:2002@example.com>;tag=x", "example.com")
	node, dom, err := b.Verify(ctx, h, "call-1", "sip:2001@10.0.0.5:5060", "<sip:2002@example.com>;tag=x")
	if err != nil || node != "a" || dom != "example.com" {
		t.Fatalf("Verify: %q %q %v", node, dom, err)
	}
	const from = "<sip:2002@example.com>;tag=x"
	for name, c := range map[string]struct{ h, callID, ruri, from string }{
		"other call":     {h, "call-2", "sip:2001@10.0.0.5:5060", from},
		"other contact":  {h, "call-1", "sip:2001@10.6.6.6:5060", from},
		"other caller":   {h, "call-1", "sip:2001@10.0.0.5:5060", "<sip:2003@example.com>;tag=x"},
		"node renamed":   {strings.Replace(h, "node=a", "node=c", 1), "call-1", "sip:2001@10.0.0.5:5060", from},
		"domain changed": {strings.Replace(h, "domain=example.com", "domain=other.com", 1), "call-1", "sip:2001@10.0.0.5:5060", from},
		"no mac":         {"node=a;ts=1;domain=x", "call-1", "sip:2001@10.0.0.5:5060", from},
		"garbage":        {"%%%", "call-1", "sip:2001@10.0.0.5:5060", from},
		"empty":          {"", "call-1", "sip:2001@10.0.0.5:5060", from},
	} {
		if _, _, err := b.Verify(ctx, c.h, c.callID, c.ruri, c.from); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
	// A signer with another secret (an outsider) is refused.
	out, _ := NewSigner(ctx, "a", &memMeta{m: map[string]string{}})
	if _, _, err := b.Verify(ctx, out.Sign("call-1", "sip:x@y", "f", "example.com"), "call-1", "sip:x@y", "f"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("outsider: %v", err)
	}
	// Too old.
	a.now = func() time.Time { return time.Now().Add(-time.Minute) }
	old := a.Sign("call-1", "sip:x@y", "f", "example.com")
	if _, _, err := b.Verify(ctx, old, "call-1", "sip:x@y", "f"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("stale: %v", err)
	}
}

// TestVerifyReloads: a node that loaded the secret before another node
// replaced it (both started at once) picks up the new one.
func TestVerifyReloads(t *testing.T) {
	meta := &memMeta{m: map[string]string{}}
	b, _ := NewSigner(ctx, "b", meta)
	b.reloaded = time.Now().Add(-time.Hour)
	meta.m[MetaKey] = strings.Repeat("ab", 32)
	a, _ := NewSigner(ctx, "a", meta)
	if _, _, err := b.Verify(ctx, a.Sign("c", "sip:x@y", "f", "d"), "c", "sip:x@y", "f"); err != nil {
		t.Fatalf("after the secret changed: %v", err)
	}
}

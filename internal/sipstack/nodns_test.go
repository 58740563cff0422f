package sipstack

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestNoDNS: the stack's resolver never sends a DNS query (its dialer
// refuses, so the error carries ErrNoDNS); /etc/hosts still works.
func TestNoDNS(t *testing.T) {
	r := noDNS()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.LookupHost(ctx, "phone.example.com")
	if err == nil || !strings.Contains(err.Error(), ErrNoDNS.Error()) {
		t.Fatalf("lookup of a DNS name: err = %v, want one carrying %q", err, ErrNoDNS)
	}
	if addrs, err := r.LookupHost(ctx, "localhost"); err != nil || len(addrs) == 0 {
		t.Fatalf("localhost from /etc/hosts: %v %v", addrs, err)
	}
}

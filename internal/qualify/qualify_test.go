package qualify

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// TestOffsetsSpreadPings: 100,000 bindings are spread evenly over the
// interval (no thundering herd), each at the same place every cycle.
func TestOffsetsSpreadPings(t *testing.T) {
	q := New(Config{Interval: 30 * time.Second}, nil, nil, nil, nil)
	const n, buckets = 100_000, 30
	var count [buckets]int
	for i := 0; i < n; i++ {
		b := store.Binding{Domain: "pbx.test", Extension: fmt.Sprint(100000 + i), Contact: fmt.Sprintf("sip:%d@10.0.%d.%d", i, i/250%250, i%250)}
		off := q.offset(b)
		if off < 0 || off >= 30*time.Second {
			t.Fatalf("offset %s outside the interval", off)
		}
		if off != q.offset(b) {
			t.Fatal("offset is not stable")
		}
		count[off/time.Second]++
	}
	for i, c := range count {
		// Each second should get ~3,333 pings; allow ±10 %.
		if c < n/buckets*9/10 || c > n/buckets*11/10 {
			t.Fatalf("second %d gets %d pings, want about %d: %v", i, c, n/buckets, count)
		}
	}
}

func TestTimeoutDefaults(t *testing.T) {
	for _, tc := range []struct{ interval, want time.Duration }{
		{time.Second, time.Second}, {500 * time.Millisecond, time.Second}, {30 * time.Second, 5 * time.Second},
	} {
		if got := New(Config{Interval: tc.interval}, nil, nil, nil, nil).cfg.Timeout; got != tc.want {
			t.Errorf("interval %s: timeout %s, want %s", tc.interval, got, tc.want)
		}
	}
}

func TestOnePingPerBindingInFlight(t *testing.T) {
	q := New(Config{Interval: time.Second}, nil, nil, nil, nil)
	k := store.BindingKey{Domain: "d", Extension: "1", Contact: "sip:1@x"}
	if !q.begin(k) || q.begin(k) {
		t.Fatal("a second ping of the same binding started while one is in flight")
	}
	q.end(k)
	if !q.begin(k) {
		t.Fatal("binding stuck in flight")
	}
}

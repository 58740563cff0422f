package cli

import (
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 15, 14, 30, 0, 0, time.Local)
	cases := map[string]time.Time{
		"10m":                  now.Add(-10 * time.Minute),
		"2h":                   now.Add(-2 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"1d12h":                now.Add(-36 * time.Hour),
		"2026-01-15 14:02":     time.Date(2026, 1, 15, 14, 2, 0, 0, time.Local),
		"2026-01-15 14:02:05":  time.Date(2026, 1, 15, 14, 2, 5, 0, time.Local),
		"2026-01-14":           time.Date(2026, 1, 14, 0, 0, 0, 0, time.Local),
		"14:02":                time.Date(2026, 1, 15, 14, 2, 0, 0, time.Local),
		"2026-01-15T14:02:00Z": time.Date(2026, 1, 15, 14, 2, 0, 0, time.UTC),
	}
	for in, want := range cases {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: got %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5m", "10x", "d", "3dd"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("%q: no error", bad)
		} else if _, ok := err.(*UsageError); !ok {
			t.Errorf("%q: %T is not a usage error", bad, err)
		}
	}
}

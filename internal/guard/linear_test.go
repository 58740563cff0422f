package guard

import (
	"bytes"
	"testing"
	"time"
)

// TestFilterLinearTime feeds large pathological inputs (whole, and over TCP
// in 1000-byte reads): none may take the filter long (no quadratic paths).
func TestFilterLinearTime(t *testing.T) {
	head := "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
	inputs := map[string][]byte{
		"crlf":       bytes.Repeat([]byte("\r\n"), 30000),
		"headers":    append([]byte(head), bytes.Repeat([]byte("X: y\r\n"), 10000)...),
		"msgs":       bytes.Repeat([]byte(head+"Content-Length: 0\r\n\r\n"), 300),
		"crcr":       bytes.Repeat([]byte("\r"), 60000),
		"folds":      append([]byte(head+"X: a"), bytes.Repeat([]byte("\r\n b"), 15000)...),
		"colonless":  bytes.Repeat([]byte("a\r\n"), 20000),
		"longline":   append([]byte(head+"X: "), bytes.Repeat([]byte("a"), 60000)...),
		"nocrlfcrlf": append([]byte(head), bytes.Repeat([]byte("Y: z\r\n"), 9000)...),
	}
	for name, in := range inputs {
		s, _ := newTestGuard(t, Config{})
		start := time.Now()
		s.Filter("UDP", udpFrom, in)
		for i := 0; i < len(in); i += 1000 {
			end := min(i+1000, len(in))
			s.Filter("TCP", tcpFrom, in[i:end])
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s (%d bytes): %v", name, len(in), d)
		}
	}
}

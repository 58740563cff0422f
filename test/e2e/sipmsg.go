package e2e

import (
	"regexp"
	"strings"
)

// SIPMessage is one message from a SIPp -trace_msg log.
type SIPMessage struct {
	Received bool   // true: SIPp received it (from the server); false: SIPp sent it
	First    string // request or status line, e.g. "SIP/2.0 401 Unauthorized"
	// Headers in order, names as written on the wire.
	Headers [][2]string
}

var traceSep = regexp.MustCompile(`(?m)^-{20,} .*\n(.*)\n`)

// ParseSIPpMessages splits a SIPp -trace_msg log (SIPpResult.Messages) into
// messages, in the order SIPp logged them.
func ParseSIPpMessages(log string) []SIPMessage {
	var out []SIPMessage
	locs := traceSep.FindAllStringSubmatchIndex(log, -1)
	for i, loc := range locs {
		end := len(log)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		kind := log[loc[2]:loc[3]]
		body := strings.TrimLeft(log[loc[1]:end], "\r\n")
		lines := strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n")
		if len(lines) == 0 || lines[0] == "" {
			continue
		}
		m := SIPMessage{Received: strings.Contains(kind, "received"), First: strings.TrimSpace(lines[0])}
		for _, l := range lines[1:] {
			if strings.TrimSpace(l) == "" {
				break
			}
			name, value, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			m.Headers = append(m.Headers, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
		}
		out = append(out, m)
	}
	return out
}

// Responses returns the messages SIPp received that are responses.
func Responses(msgs []SIPMessage) []SIPMessage {
	var out []SIPMessage
	for _, m := range msgs {
		if m.Received && strings.HasPrefix(m.First, "SIP/2.0 ") {
			out = append(out, m)
		}
	}
	return out
}

// Status returns the status code and reason phrase of a response, e.g. "401
// Unauthorized".
func (m SIPMessage) Status() string { return strings.TrimPrefix(m.First, "SIP/2.0 ") }

// Get returns every value of a header (case-insensitive name).
func (m SIPMessage) Get(name string) []string {
	var out []string
	for _, h := range m.Headers {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

// HeaderNames returns the header names in order.
func (m SIPMessage) HeaderNames() []string {
	out := make([]string, len(m.Headers))
	for i, h := range m.Headers {
		out[i] = h[0]
	}
	return out
}

package trace

import (
	"fmt"
	"net/netip"
	"strings"
)

// Filter selects messages; empty fields match anything.
type Filter struct {
	// Ext matches the user part of the Request-URI, From, To or a
	// Contact.
	Ext string
	// IP matches the remote address.
	IP netip.Addr
	// CallID matches the Call-ID exactly.
	CallID string
	// Method matches the CSeq method, case-insensitively (so a response
	// matches its request's method).
	Method string
}

// ParseFilter builds a Filter from the query values of GET /v1/trace.
func ParseFilter(ext, ip, callID, method string) (Filter, error) {
	f := Filter{Ext: ext, CallID: callID, Method: strings.ToUpper(method)}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return Filter{}, fmt.Errorf("ip %q is not an IP address, e.g. 192.0.2.10", ip)
		}
		f.IP = a.Unmap()
	}
	return f, nil
}

// Match reports whether m passes the filter.
func (f Filter) Match(m *Message) bool {
	if f.IP.IsValid() && m.Remote.Addr().Unmap() != f.IP {
		return false
	}
	if f.CallID != "" && m.CallID != f.CallID {
		return false
	}
	if f.Method != "" && !strings.EqualFold(m.Method, f.Method) {
		return false
	}
	if f.Ext != "" {
		found := false
		for _, u := range m.users {
			if u == f.Ext {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// summarize fills m's FirstLine, CallID, Method and users from its text,
// reading the header lines only (no full SIP parse).
func summarize(m *Message) {
	text := m.Text
	line, rest, _ := strings.Cut(text, "\n")
	line = strings.TrimRight(line, "\r")
	m.FirstLine = line
	if !strings.HasPrefix(line, "SIP/") {
		// request line: METHOD URI SIP/2.0
		if _, after, ok := strings.Cut(line, " "); ok {
			uri, _, _ := strings.Cut(after, " ")
			addUser(m, uri)
		}
	}
	for rest != "" {
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break // end of headers
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "call-id", "i":
			m.CallID = value
		case "cseq":
			if _, meth, ok := strings.Cut(value, " "); ok {
				m.Method = strings.ToUpper(strings.TrimSpace(meth))
			}
		case "from", "f", "to", "t":
			addUser(m, value)
		case "contact", "m":
			// a Contact may list several addresses
			for _, v := range strings.Split(value, ",") {
				addUser(m, v)
			}
		}
	}
}

// addUser adds the user part of the first sip:/sips:/tel: URI in s.
func addUser(m *Message, s string) {
	low := strings.ToLower(s)
	i := strings.Index(low, "sip:")
	n := 4
	if j := strings.Index(low, "sips:"); j >= 0 && (i < 0 || j < i) {
		i, n = j, 5
	}
	if i < 0 {
		if j := strings.Index(low, "tel:"); j >= 0 {
			num := s[j+4:]
			if k := strings.IndexAny(num, ";>? "); k >= 0 {
				num = num[:k]
			}
			m.users = append(m.users, num)
		}
		return
	}
	u := s[i+n:]
	end := strings.IndexAny(u, "@;>? ,")
	if end < 0 || u[end] != '@' {
		return // no user part
	}
	u = u[:end]
	if k := strings.IndexByte(u, ':'); k >= 0 {
		u = u[:k] // user:password
	}
	if u != "" {
		m.users = append(m.users, u)
	}
}

package guard

// Summary is what a journal event tells of a raw message: its method and
// the first User-Agent, Call-ID, To and From. The slices point into the
// message; any of them is nil when it was not found.
type Summary struct {
	Method             []byte // the start line's first word when it is short ("SIP/2.0" for a response)
	UserAgent, CallID  []byte
	ToUser, ToHost     []byte // of the first sip:/sips: URI of To
	FromUser, FromHost []byte // of From
}

// Summarize reads a Summary from head (a message or what was read of it),
// tolerating any bytes.
func Summarize(head []byte) Summary {
	if len(head) > MaxMessage {
		head = head[:MaxMessage]
	}
	var m Summary
	if sp := indexByte(head, ' '); sp > 0 && sp < 32 {
		m.Method = head[:sp]
	}
	var to, from []byte
	eachRawHeader(head, func(h hdr, value, _ []byte) {
		switch h {
		case hTo:
			if to == nil {
				to = value
			}
		case hFrom:
			if from == nil {
				from = value
			}
		case hUserAgent:
			if m.UserAgent == nil {
				m.UserAgent = value
			}
		case hCallID:
			if m.CallID == nil {
				m.CallID = value
			}
		}
	})
	m.ToUser, m.ToHost = uriUserHost(to)
	m.FromUser, m.FromHost = uriUserHost(from)
	return m
}

// Printable returns b for a journal detail: at most 64 bytes, with
// anything outside printable ASCII (and the double quote and backslash)
// replaced by '?', so nothing a client sent can inject lines or quotes.
func Printable(b []byte) string { return printable(b) }

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// uriUserHost returns the user and host of the first sip:/sips: URI in an
// address header value.
func uriUserHost(v []byte) (user, host []byte) {
	lv := v
	i := -1
	for j := 0; j+4 <= len(lv); j++ {
		if eqFold(lv[j:j+4], "sip:") {
			i = j + 4
			break
		}
		if j+5 <= len(lv) && eqFold(lv[j:j+5], "sips:") {
			i = j + 5
			break
		}
	}
	if i < 0 {
		return nil, nil
	}
	rest := v[i:]
	end := len(rest)
	for k, c := range rest {
		if c == '>' || c == ';' || c == '?' || c == ' ' || c == '"' {
			end = k
			break
		}
	}
	rest = rest[:end]
	at := -1
	for k, c := range rest {
		if c == '@' {
			at = k
			break
		}
	}
	if at < 0 {
		return nil, nil
	}
	user, host = rest[:at], rest[at+1:]
	if c := indexByte(user, ':'); c >= 0 {
		user = user[:c] // user:password
	}
	if h := indexByte(host, ':'); h >= 0 && (len(host) == 0 || host[0] != '[') {
		host = host[:h]
	}
	return user, host
}

package guard

import "bytes"

// normalize rewrites the header section of a request that sipgo's parser
// refuses or misreads into the equivalent form RFC 3261 §7.3.1 lets a
// recipient use before it interprets a message ("a recipient MAY replace
// any linear white space with a single SP"):
//
//   - continuation lines are unfolded, each line break with the white
//     space around it becoming one SP;
//   - every header field becomes "Name: value", the value trimmed;
//   - in the fields sipgo splits into parameters (Via, From, To, Contact,
//     Route, Record-Route, compact forms included), white space around
//     ";", "=" and "," is removed, and in Via around "/" and ":" too
//     (RFC 3261 §25.1: SEMI, EQUAL, COMMA, SLASH and COLON allow it),
//     except inside quoted strings and <...>; other runs become one SP.
//
// RFC 4475's wsinv ("tag = 98asjd8", a Via split over three lines) is
// read by sipgo as a From without a tag after this, not before. The body
// is copied unchanged, so Content-Length stays right. msg is one message
// that passed scan, bodyStart the offset of its body. normalize returns
// nil when the message is already in that form.
//
// It runs only on the filter's slow path, for messages sipgo would refuse
// as they are.
func normalize(msg []byte, bodyStart int) []byte {
	if bodyStart < 4 || bodyStart > len(msg) {
		return nil
	}
	head := msg[:bodyStart-2] // each header line with its CRLF; the empty line's CRLF follows
	eol := bytes.Index(head, []byte("\r\n"))
	if eol < 0 {
		return nil
	}
	out := make([]byte, 0, len(msg)+16)
	out = append(out, head[:eol+2]...) // start line
	pos := eol + 2
	for pos < len(head) {
		// One field: its first line and its continuation lines.
		start := pos
		end := bytes.Index(head[pos:], []byte("\r\n"))
		if end < 0 {
			return nil
		}
		pos += end + 2
		for pos < len(head) && (head[pos] == ' ' || head[pos] == '\t') {
			e := bytes.Index(head[pos:], []byte("\r\n"))
			if e < 0 {
				return nil
			}
			pos += e + 2
		}
		field := head[start : pos-2]
		colon := bytes.IndexByte(field, ':')
		if colon < 0 {
			return nil
		}
		name := trimWSP(field[:colon])
		h, _ := classify(name)
		out = append(out, name...)
		out = append(out, ':', ' ')
		switch h {
		case hVia:
			out = appendCanonical(out, field[colon+1:], true)
		case hFrom, hTo, hContact, hRoute, hRecordRoute:
			out = appendCanonical(out, field[colon+1:], false)
		default:
			out = appendLWSOne(out, field[colon+1:])
		}
		out = append(out, '\r', '\n')
	}
	out = append(out, msg[bodyStart-2:]...) // the empty line and the body
	if bytes.Equal(out, msg) {
		return nil
	}
	return out
}

// appendLWSOne appends v trimmed, each run of linear white space (line
// breaks included) inside it as one SP.
func appendLWSOne(out, v []byte) []byte {
	v = trimLWS(v)
	space := false
	for _, c := range v {
		if isLWS(c) {
			space = true
			continue
		}
		if space {
			out = append(out, ' ')
			space = false
		}
		out = append(out, c)
	}
	return out
}

// appendCanonical appends the value v of a parameterised header field
// unfolded, with no white space around its separators (";", "=", ",";
// with via also "/" and ":"), other runs of white space as one SP and none
// at the ends. Quoted strings (with their backslash escapes) and <...> are
// copied as they are, but for the unfolding.
func appendCanonical(out, v []byte, via bool) []byte {
	isSep := func(c byte) bool {
		return c == ';' || c == '=' || c == ',' || (via && (c == '/' || c == ':'))
	}
	v = appendLWSOne(nil, v)
	start := len(out)
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			space = true
			continue
		}
		if space && !isSep(c) && len(out) > start && !isSep(out[len(out)-1]) {
			out = append(out, ' ')
		}
		space = false
		switch c {
		case '"':
			// A quoted string, up to its closing quote.
			out = append(out, c)
			for i++; i < len(v); i++ {
				out = append(out, v[i])
				if v[i] == '\\' && i+1 < len(v) {
					i++
					out = append(out, v[i])
				} else if v[i] == '"' {
					break
				}
			}
		case '<':
			j := bytes.IndexByte(v[i:], '>')
			if j < 0 {
				j = len(v) - i - 1
			}
			out = append(out, v[i:i+j+1]...)
			i += j
		default:
			out = append(out, c)
		}
	}
	return out
}

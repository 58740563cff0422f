package guard

import (
	"bytes"
)

// Limits on one SIP message. Larger messages are refused with 513 (size) or
// 400 (header count) before sipgo parses them.
const (
	// MaxMessage is the largest message accepted, in bytes (sipgo's
	// sip.ParseMaxMessageLength).
	MaxMessage = 65535
	// MaxDatagram bounds a message in one UDP datagram: a datagram of this
	// size or more gets 513. It is sipgo's read buffer
	// (sip.TransportBufferReadSize, 32 KiB), which the kernel fills with
	// the first bytes of a larger datagram, dropping the rest; a message
	// that large belongs on TCP anyway (RFC 3261 §18.1.1). The buffer also
	// sizes every TCP connection's reads, so it is not raised.
	MaxDatagram = 32768
	// MaxHeaders is the largest number of header fields (lines, counting
	// folded lines once) one message may carry.
	MaxHeaders = 256
)

// hdr names the header fields the scanner tracks.
type hdr uint8

const (
	hOther hdr = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hMaxForwards
	hContentLength
	hContact
	hRoute
	hRecordRoute
	hReferTo
	hReferredBy
	hContentType
	hRequire
	hProxyRequire
	hUserAgent
	numHdr
)

// field is what the scanner remembers about one header field name: how
// often it occurred and the value of its first occurrence.
type field struct {
	n     int
	value []byte // raw value after the colon, trimmed; may span folded lines
}

// message is what the scanner learned about one raw SIP message. Byte
// slices point into the scanned data; scanning does not allocate.
type message struct {
	size      int // bytes of the message from its start line to the end of its body
	skipped   int // leading CRLFs skipped before the start line (stream only)
	request   bool
	method    []byte
	uri       []byte
	version   []byte
	status    []byte // response status code
	headers   int    // header fields
	bodyStart int    // offset of the body (after the empty line)
	clen      int    // Content-Length value, -1 when absent or invalid
	f         [numHdr]field
	// unsure is set when the fast path cannot vouch that sipgo's parser
	// accepts the message (unusual but possibly valid syntax); the slow
	// path then asks the parser itself.
	unsure bool
}

// scanError is a syntax problem found while scanning: fatal ones leave no
// message boundary (the stream cannot continue).
type scanError struct {
	status int
	reason string
	detail string
	fatal  bool
}

// scan states beyond a scanError.
type scanResult uint8

const (
	scanOK scanResult = iota
	scanPartial
	scanBad
)

var (
	errNoCRLF    = &scanError{status: 400, reason: "Bad Request", detail: "a line does not end in CRLF", fatal: true}
	errBareLF    = &scanError{status: 400, reason: "Bad Request", detail: "bare LF inside the header section"}
	errStartLine = &scanError{status: 400, reason: "Bad Request", detail: "malformed start line"}
	errTooLarge  = &scanError{status: 513, reason: "Message Too Large", detail: "message larger than 65535 bytes", fatal: true}
	// errDatagramTooLarge: see MaxDatagram.
	errDatagramTooLarge = &scanError{status: 513, reason: "Message Too Large",
		detail: "UDP datagram of 32768 bytes or more: send messages that large over TCP", fatal: true}
	errTooMany     = &scanError{status: 400, reason: "Bad Request", detail: "more than 256 header fields"}
	errHeaderLine  = &scanError{status: 400, reason: "Bad Request", detail: "header line without a field name and colon"}
	errCLBad       = &scanError{status: 400, reason: "Bad Request", detail: "Content-Length is not a number", fatal: true}
	errCLMulti     = &scanError{status: 400, reason: "Bad Request", detail: "more than one Content-Length", fatal: true}
	errCLShort     = &scanError{status: 400, reason: "Bad Request", detail: "body shorter than Content-Length", fatal: true}
	errCLMissing   = &scanError{status: 400, reason: "Bad Request", detail: "no Content-Length on a stream transport", fatal: true}
	errLeadingWSP  = &scanError{status: 400, reason: "Bad Request", detail: "first header line starts with white space"}
	errEmptyStream = &scanError{status: 400, reason: "Bad Request", detail: "empty message", fatal: true}
)

// scan reads one message from data. On a datagram (stream=false) data is
// the whole datagram: the body is framed by Content-Length when present
// (bytes after it are ignored, RFC 3261 §18.3) or runs to the end. On a
// stream, leading CRLFs are skipped, Content-Length is required, and
// scanPartial means more bytes are needed.
//
// Syntax problems are returned as a scanError with the answer to give.
// Fields the filter needs are recorded in m; nothing is allocated.
func scan(data []byte, stream bool, m *message) (scanResult, *scanError) {
	*m = message{clen: -1}
	if stream {
		for len(data)-m.skipped >= 2 && data[m.skipped] == '\r' && data[m.skipped+1] == '\n' {
			m.skipped += 2
		}
		data = data[m.skipped:]
		if len(data) == 0 {
			return scanPartial, nil
		}
	}
	// Header section: find its end first, so partial stream data costs one
	// search per read and oversized headers are refused early.
	hend := bytes.Index(data, crlfcrlf)
	if hend < 0 {
		if stream && len(data) < MaxMessage {
			return scanPartial, nil
		}
		if len(data) > MaxMessage {
			return scanBad, errTooLarge
		}
		if bytes.IndexByte(data, '\r') < 0 {
			return scanBad, errNoCRLF
		}
		// A datagram without the empty line: sipgo refuses it too.
		return scanBad, &scanError{status: 400, reason: "Bad Request", detail: "no empty line after the headers", fatal: true}
	}
	if hend+4 > MaxMessage {
		return scanBad, errTooLarge
	}
	// Start line.
	eol := bytes.IndexByte(data, '\r')
	if eol < 0 || eol+1 >= len(data) || data[eol+1] != '\n' {
		return scanBad, errNoCRLF
	}
	if bytes.IndexByte(data[:eol], '\n') >= 0 {
		return scanBad, errBareLF
	}
	if e := m.startLine(data[:eol]); e != nil {
		return scanBad, e
	}
	m.bodyStart = hend + 4
	// Header lines up to hend (the CRLF ending the last header line).
	pos := eol + 2
	if pos <= hend && (data[pos] == ' ' || data[pos] == '\t') {
		return scanBad, errLeadingWSP
	}
	for pos <= hend {
		// One header field: its first line and any continuation lines.
		start := pos
		end, e := lineEnd(data, pos)
		if e != nil {
			return scanBad, e
		}
		pos = end + 2
		folded := false
		for pos <= hend && (data[pos] == ' ' || data[pos] == '\t') {
			end, e = lineEnd(data, pos)
			if e != nil {
				return scanBad, e
			}
			pos = end + 2
			folded = true
		}
		m.headers++
		if m.headers > MaxHeaders {
			return scanBad, errTooMany
		}
		if e := m.header(data[start:end], folded); e != nil {
			return scanBad, e
		}
	}
	// Body framing.
	if f := &m.f[hContentLength]; f.n > 0 {
		if f.n > 1 {
			return scanBad, errCLMulti
		}
		n, ok := parseUint(f.value)
		if !ok || n > MaxMessage {
			if ok {
				return scanBad, errTooLarge
			}
			return scanBad, errCLBad
		}
		m.clen = int(n)
	}
	switch {
	case m.clen >= 0:
		if m.bodyStart+m.clen > MaxMessage {
			return scanBad, errTooLarge
		}
		if len(data)-m.bodyStart < m.clen {
			if stream {
				return scanPartial, nil
			}
			return scanBad, errCLShort
		}
		m.size = m.bodyStart + m.clen
	case stream:
		// RFC 3261 §18.3: Content-Length MUST be present on streams; the
		// message boundary is unknown, so the connection cannot go on.
		m.size = m.bodyStart
		return scanBad, errCLMissing
	default:
		m.size = len(data)
		if m.size > MaxMessage {
			return scanBad, errTooLarge
		}
	}
	return scanOK, nil
}

var crlfcrlf = []byte("\r\n\r\n")

// lineEnd returns the index of the CR ending the line that starts at pos,
// refusing bare CR and bare LF inside it.
func lineEnd(data []byte, pos int) (int, *scanError) {
	i := bytes.IndexByte(data[pos:], '\r')
	if i < 0 {
		if bytes.IndexByte(data[pos:], '\n') >= 0 {
			return 0, errBareLF
		}
		return 0, errNoCRLF
	}
	if bytes.IndexByte(data[pos:pos+i], '\n') >= 0 {
		return 0, errBareLF
	}
	i += pos
	if i+1 >= len(data) || data[i+1] != '\n' {
		return 0, errNoCRLF
	}
	return i, nil
}

// startLine parses "METHOD SP Request-URI SP SIP-Version" or
// "SIP-Version SP Status-Code SP Reason-Phrase".
func (m *message) startLine(line []byte) *scanError {
	if len(line) == 0 {
		return errStartLine
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errStartLine
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return errStartLine
	}
	a, b, c := line[:sp1], rest[:sp2], rest[sp2+1:]
	// sipgo decides request vs response this way: the third part of a
	// request has no space and starts with "sip"/"SIP".
	if len(c) >= 3 && bytes.IndexByte(c, ' ') < 0 && isSIPWord(c[:3]) {
		m.request = true
		m.method, m.uri, m.version = a, b, c
		if !isToken(a) {
			return &scanError{status: 400, reason: "Bad Request", detail: "method is not a token"}
		}
		if len(b) == 0 {
			return &scanError{status: 400, reason: "Bad Request", detail: "more than one space between start line elements"}
		}
		if !fastURI(b, false) {
			m.unsure = true
		}
		return nil
	}
	if len(a) >= 3 && isSIPWord(a[:3]) {
		m.version, m.status = a, b
		if len(b) != 3 || !allDigits(b) || b[0] == '0' {
			m.unsure = true // sipgo accepts any 16-bit code; the checks drop the rest
		}
		return nil
	}
	if bytes.Count(line, []byte(" ")) > 2 || len(b) == 0 {
		return &scanError{status: 400, reason: "Bad Request", detail: "extra spaces in the start line"}
	}
	return errStartLine
}

func isSIPWord(b []byte) bool { return string(b) == "sip" || string(b) == "SIP" }

// header records one header field; line spans from the name to the end of
// its last continuation line (without the final CRLF).
func (m *message) header(line []byte, folded bool) *scanError {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return errHeaderLine
	}
	name := trimWSP(line[:colon])
	if !isToken(name) {
		return errHeaderLine
	}
	value := trimLWS(line[colon+1:])
	h, parsed := classify(name)
	if h != hOther {
		f := &m.f[h]
		if f.n == 0 {
			f.value = value
		}
		f.n++
	}
	if parsed && !m.unsure {
		if folded || !fastValue(h, value) {
			m.unsure = true
		}
	}
	return nil
}

// classify maps a header name to what the scanner tracks, and reports
// whether sipgo's parser parses that header's value (and can fail on it).
func classify(name []byte) (h hdr, sipgoParses bool) {
	if len(name) == 1 {
		switch name[0] | 0x20 {
		case 'v':
			return hVia, true
		case 'f':
			return hFrom, true
		case 't':
			return hTo, true
		case 'i':
			return hCallID, true
		case 'l':
			return hContentLength, true
		case 'm':
			return hContact, true
		case 'c':
			return hContentType, true
		}
		return hOther, false
	}
	switch len(name) {
	case 2:
		if eqFold(name, "to") {
			return hTo, true
		}
	case 3:
		if eqFold(name, "via") {
			return hVia, true
		}
	case 4:
		if eqFold(name, "from") {
			return hFrom, true
		}
		if eqFold(name, "cseq") {
			return hCSeq, true
		}
	case 5:
		if eqFold(name, "route") {
			return hRoute, true
		}
	case 7:
		if eqFold(name, "call-id") {
			return hCallID, true
		}
		if eqFold(name, "contact") {
			return hContact, true
		}
		if eqFold(name, "require") {
			return hRequire, false
		}
	case 8:
		if eqFold(name, "refer-to") {
			return hReferTo, true
		}
	case 10:
		if eqFold(name, "user-agent") {
			return hUserAgent, false
		}
	case 11:
		if eqFold(name, "referred-by") {
			return hReferredBy, true
		}
	case 12:
		if eqFold(name, "max-forwards") {
			return hMaxForwards, true
		}
		if eqFold(name, "record-route") {
			return hRecordRoute, true
		}
		if eqFold(name, "content-type") {
			return hContentType, true
		}
	case 13:
		if eqFold(name, "proxy-require") {
			return hProxyRequire, false
		}
	case 14:
		if eqFold(name, "content-length") {
			return hContentLength, true
		}
	}
	return hOther, false
}

// fastValue reports whether sipgo's parser surely accepts value (already
// trimmed, one line) for header h. False means "not sure", never "invalid".
func fastValue(h hdr, v []byte) bool {
	if len(v) > 0 && (v[0] >= 0x80 || v[len(v)-1] >= 0x80 || v[0] < 0x20 || v[len(v)-1] < 0x20) {
		return false // sipgo trims Unicode and control white space; leave it to the parser
	}
	switch h {
	case hCallID, hContentType:
		return len(v) > 0
	case hMaxForwards, hContentLength:
		_, ok := parseUint(v)
		return ok
	case hCSeq:
		i := indexIn(v, &wspSet)
		if i < 1 || len(v)-i < 2 {
			return false
		}
		n, ok := parseUint(v[:i])
		return ok && n <= 1<<31-1
	case hVia:
		return fastVia(v)
	case hFrom, hTo, hReferredBy:
		return fastAddress(v, false)
	case hContact:
		return bytes.IndexByte(v, ',') < 0 && fastAddress(v, true)
	case hRoute, hRecordRoute, hReferTo:
		return bytes.IndexByte(v, ',') < 0 && fastAddress(v, true)
	}
	return true
}

// fastVia mirrors sipgo's Via parser for values without IPv6 brackets:
// one or more comma-separated "PROTO/VERSION/TRANSPORT SP sent-by
// *(;param)" hops (as UAs echo the Vias of a request in their response).
// With more than one hop every hop but the last must have parameters (the
// parser notices a comma only among them) and no value may be quoted.
func fastVia(v []byte) bool {
	if bytes.IndexByte(v, '[') >= 0 {
		return false
	}
	if bytes.IndexByte(v, ',') < 0 {
		return fastViaHop(v)
	}
	if bytes.IndexByte(v, '"') >= 0 {
		return false
	}
	for {
		hop, rest, more := bytes.Cut(v, []byte(","))
		hop = trimLWS(hop)
		if !fastViaHop(hop) || (more && bytes.IndexByte(hop, ';') < 0) {
			return false
		}
		if !more {
			return true
		}
		v = rest
	}
}

// fastViaHop checks one hop: "PROTO/VERSION/TRANSPORT SP sent-by...".
func fastViaHop(v []byte) bool {
	i := bytes.IndexByte(v, '/')
	if i < 0 {
		return false
	}
	j := bytes.IndexByte(v[i+1:], '/')
	if j < 0 {
		return false
	}
	return indexIn(v[i+1+j+1:], &wspSet) >= 0
}

// fastAddress mirrors sipgo's name-addr / addr-spec parser for values
// without backslashes: [display-name] <URI> *(;param), or URI *(;param).
// wildcard allows the "*" URI (Contact, and the route family which never
// checks it).
func fastAddress(v []byte, wildcard bool) bool {
	if len(v) == 0 || bytes.IndexByte(v, '\\') >= 0 {
		return false
	}
	i := indexIn(v, &addrSet)
	if i < 0 {
		return fastURI(v, wildcard)
	}
	switch v[i] {
	case '"':
		rest := v[i+1:]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return false
		}
		after := rest[j+1:]
		k := indexIn(after, &bracketSemiSet)
		if k < 0 {
			return false
		}
		if after[k] == '<' {
			return fastBracket(after[k+1:], wildcard)
		}
		return fastAddrSpec(after[k+1:], wildcard)
	case '<':
		return fastBracket(v[i+1:], wildcard)
	default: // ';' before any '<': the whole value is addr-spec *(;param)
		return fastAddrSpec(v, wildcard)
	}
}

func fastBracket(s []byte, wildcard bool) bool {
	j := bytes.IndexByte(s, '>')
	if j < 0 {
		return false
	}
	return fastURI(s[:j], wildcard)
}

func fastAddrSpec(s []byte, wildcard bool) bool {
	if len(s) == 0 {
		return false
	}
	if j := bytes.IndexByte(s, ';'); j >= 0 {
		s = s[:j]
	}
	return fastURI(s, wildcard)
}

// fastURI mirrors sipgo's URI parser: it reports whether ParseUri surely
// accepts s. Without wildcard, a URI whose host could be "*" is left to the
// parser (sipgo refuses the wildcard in To and From).
func fastURI(s []byte, wildcard bool) bool {
	if len(s) < 3 {
		return wildcard && string(s) == "*"
	}
	if !wildcard && bytes.IndexByte(s, '*') >= 0 {
		return false
	}
	c := bytes.IndexByte(s, ':')
	if c <= 0 {
		return false
	}
	for _, b := range s[:c] {
		if !('a' <= b|0x20 && b|0x20 <= 'z') {
			return false
		}
	}
	if !eqFold(s[:c], "sip") && !eqFold(s[:c], "sips") {
		return true // opaque URI: tel:, urn:, ...
	}
	rest := s[c+1:]
	if bytes.IndexByte(rest, '[') >= 0 {
		return false
	}
	if len(rest) >= 2 && rest[0] == '/' && rest[1] == '/' {
		rest = rest[2:]
	}
	if at := bytes.IndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	for i, b := range rest {
		switch b {
		case ';', '?':
			return true
		case ':':
			port := rest[i+1:]
			if k := indexIn(port, &paramSet); k >= 0 {
				port = port[:k]
			}
			return len(port) > 0 && len(port) <= 9 && allDigits(port)
		}
	}
	return true
}

// parseUint parses 1..10 decimal digits no larger than 2^32-1 (what sipgo
// accepts with strconv.ParseUint(s, 10, 32)).
func parseUint(s []byte) (uint64, bool) {
	if len(s) == 0 || len(s) > 10 || !allDigits(s) {
		return 0, false
	}
	var n uint64
	for _, b := range s {
		n = n*10 + uint64(b-'0')
	}
	return n, n <= 1<<32-1
}

func allDigits(s []byte) bool {
	for _, b := range s {
		if b < '0' || b > '9' {
			return false
		}
	}
	return true
}

// isToken reports whether s is a non-empty RFC 3261 token.
func isToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, b := range s {
		if !tokenChar[b] {
			return false
		}
	}
	return true
}

// tokenChar is the RFC 3261 token alphabet: alphanum / "-" / "." / "!" /
// "%" / "*" / "_" / "+" / "`" / "'" / "~".
var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "-.!%*_+`'~" {
		t[c] = true
	}
	return t
}()

// eqFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// trimWSP trims spaces and tabs.
func trimWSP(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// trimLWS trims linear white space, folded line breaks included.
func trimLWS(b []byte) []byte {
	for len(b) > 0 && isLWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isLWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// byteSet is a set of bytes for indexIn.
type byteSet [256]bool

func setOf(chars string) (s byteSet) {
	for i := 0; i < len(chars); i++ {
		s[chars[i]] = true
	}
	return s
}

var (
	wspSet         = setOf(" \t")
	addrSet        = setOf("\"<;")
	bracketSemiSet = setOf("<;")
	paramSet       = setOf(";?")
)

// indexIn is bytes.IndexAny for a precomputed set (no per-call setup).
func indexIn(b []byte, set *byteSet) int {
	for i, c := range b {
		if set[c] {
			return i
		}
	}
	return -1
}

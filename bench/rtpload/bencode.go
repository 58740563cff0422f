package main

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// The ng control protocol of rtpengine carries one bencoded dictionary per
// UDP datagram, after a cookie and a space (rtpengine's docs, "ng Control
// Protocol"). Only the four bencode types are needed: byte strings,
// integers, lists and dictionaries. Strings decode to string, integers to
// int64, lists to []any, dictionaries to map[string]any.

// maxBencodeDepth bounds nesting while decoding (an answer is at most a few
// levels deep; a deeper one is malformed, not a reason to exhaust the stack).
const maxBencodeDepth = 32

// bencode appends the encoding of v to dst. v is a string, []byte, int,
// int64, []string, []any or map[string]any (keys sorted, as bencode
// requires); anything else is an error.
func bencode(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case []byte:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case int:
		return bencode(dst, int64(x))
	case int64:
		dst = append(dst, 'i')
		dst = strconv.AppendInt(dst, x, 10)
		return append(dst, 'e'), nil
	case []string:
		dst = append(dst, 'l')
		for _, s := range x {
			dst, _ = bencode(dst, s)
		}
		return append(dst, 'e'), nil
	case []any:
		dst = append(dst, 'l')
		for _, e := range x {
			var err error
			if dst, err = bencode(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, 'e'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, 'd')
		for _, k := range keys {
			dst, _ = bencode(dst, k)
			var err error
			if dst, err = bencode(dst, x[k]); err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
		}
		return append(dst, 'e'), nil
	default:
		return nil, fmt.Errorf("bencode: cannot encode %T", v)
	}
}

var errBencode = errors.New("malformed bencode")

// bdecode decodes exactly one value from b (trailing bytes are an error).
func bdecode(b []byte) (any, error) {
	v, rest, err := bdecodeOne(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the value", errBencode, len(rest))
	}
	return v, nil
}

func bdecodeOne(b []byte, depth int) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: unexpected end", errBencode)
	}
	if depth > maxBencodeDepth {
		return nil, nil, fmt.Errorf("%w: nested deeper than %d", errBencode, maxBencodeDepth)
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 2 {
			return nil, nil, fmt.Errorf("%w: bad integer", errBencode)
		}
		n, err := strconv.ParseInt(string(b[1:end]), 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: bad integer %q", errBencode, b[1:end])
		}
		return n, b[end+1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 1 {
			return nil, nil, fmt.Errorf("%w: string without length", errBencode)
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || n > len(b)-colon-1 {
			return nil, nil, fmt.Errorf("%w: bad string length %q", errBencode, b[:colon])
		}
		s := b[colon+1 : colon+1+n]
		return string(s), b[colon+1+n:], nil
	case c == 'l':
		var out []any
		rest := b[1:]
		for {
			if len(rest) == 0 {
				return nil, nil, fmt.Errorf("%w: unterminated list", errBencode)
			}
			if rest[0] == 'e' {
				return out, rest[1:], nil
			}
			v, r, err := bdecodeOne(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, v)
			rest = r
		}
	case c == 'd':
		out := map[string]any{}
		rest := b[1:]
		for {
			if len(rest) == 0 {
				return nil, nil, fmt.Errorf("%w: unterminated dictionary", errBencode)
			}
			if rest[0] == 'e' {
				return out, rest[1:], nil
			}
			k, r, err := bdecodeOne(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, nil, fmt.Errorf("%w: dictionary key is not a string", errBencode)
			}
			v, r, err := bdecodeOne(r, depth+1)
			if err != nil {
				return nil, nil, err
			}
			out[ks] = v
			rest = r
		}
	default:
		return nil, nil, fmt.Errorf("%w: unexpected byte %q", errBencode, c)
	}
}

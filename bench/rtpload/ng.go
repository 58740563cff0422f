package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ngClient talks rtpengine's ng control protocol over one UDP socket:
// "<cookie> <bencoded dictionary>" out, "<cookie> <bencoded dictionary>"
// back. A request is retransmitted with the same cookie (rtpengine answers
// a repeated cookie from its cache) until answered or the deadline.
type ngClient struct {
	conn   *net.UDPConn
	prefix string
	n      int
	buf    []byte
}

func dialNG(addr netip.AddrPort, prefix string) (*ngClient, error) {
	if !addr.Addr().IsLoopback() {
		return nil, fmt.Errorf("ng address %s is not a loopback address", addr)
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("ng socket to %s: %w", addr, err)
	}
	return &ngClient{conn: c, prefix: prefix, buf: make([]byte, 65535)}, nil
}

func (c *ngClient) Close() error { return c.conn.Close() }

// request sends one command and returns the answer dictionary; a "result"
// other than "ok" is an error carrying rtpengine's "error-reason".
func (c *ngClient) request(ctx context.Context, cmd map[string]any) (map[string]any, error) {
	c.n++
	cookie := c.prefix + "_" + strconv.Itoa(c.n)
	body, err := bencode(nil, cmd)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(cookie+" "), body...)
	for attempt := 0; attempt < 5; attempt++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, err := c.conn.Write(msg); err != nil {
			return nil, fmt.Errorf("ng %v: %w", cmd["command"], err)
		}
		deadline := time.Now().Add(time.Second << attempt)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = c.conn.SetReadDeadline(deadline)
		for {
			n, err := c.conn.Read(c.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				return nil, fmt.Errorf("ng %v: %w", cmd["command"], err)
			}
			ck, rest, ok := bytes.Cut(c.buf[:n], []byte(" "))
			if !ok || string(ck) != cookie {
				continue // a late answer to an earlier request
			}
			return ngResult(cmd["command"], rest)
		}
	}
	return nil, fmt.Errorf("ng %v: no answer from rtpengine", cmd["command"])
}

// ngResult decodes an ng answer body.
func ngResult(command any, body []byte) (map[string]any, error) {
	v, err := bdecode(body)
	if err != nil {
		return nil, fmt.Errorf("ng %v answer: %w", command, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("ng %v answer: not a dictionary", command)
	}
	if r, _ := d["result"].(string); r != "ok" {
		reason, _ := d["error-reason"].(string)
		return nil, fmt.Errorf("ng %v: result %q %s", command, r, reason)
	}
	return d, nil
}

// ngSDP returns the "sdp" of an answer dictionary.
func ngSDP(d map[string]any) (string, error) {
	s, ok := d["sdp"].(string)
	if !ok || s == "" {
		return "", errors.New("ng answer without sdp")
	}
	return s, nil
}

// buildSDP is the G.711 offer or answer of one party: PCMU at addr.
func buildSDP(addr netip.AddrPort, sessID int64) string {
	ip := addr.Addr().String()
	return "v=0\r\n" +
		"o=rtpload " + strconv.FormatInt(sessID, 10) + " 1 IN IP4 " + ip + "\r\n" +
		"s=-\r\n" +
		"c=IN IP4 " + ip + "\r\n" +
		"t=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(addr.Port())) + " RTP/AVP 0\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n"
}

// sdpAudioAddr returns where to send the audio of an SDP body: the
// connection address of the first audio m= line (its own c= or the
// session's) and its port. Only IPv4/IPv6 literals are accepted.
func sdpAudioAddr(sdp string) (netip.AddrPort, error) {
	var sessC, mediaC string
	port := -1
	inAudio := false
lines:
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			if port >= 0 {
				// the first audio m= line ended
				break lines
			}
			f := strings.Fields(line[2:])
			inAudio = len(f) >= 3 && f[0] == "audio"
			if inAudio {
				p, err := strconv.Atoi(strings.SplitN(f[1], "/", 2)[0])
				if err != nil || p <= 0 || p > 65535 {
					return netip.AddrPort{}, fmt.Errorf("SDP audio port %q", f[1])
				}
				port = p
			}
		case strings.HasPrefix(line, "c="):
			f := strings.Fields(line[2:])
			if len(f) < 3 {
				return netip.AddrPort{}, fmt.Errorf("SDP connection line %q", line)
			}
			addr := strings.SplitN(f[2], "/", 2)[0]
			if port < 0 && !inAudio {
				sessC = addr
			} else if inAudio {
				mediaC = addr
			}
		}
	}
	if port < 0 {
		return netip.AddrPort{}, errors.New("SDP without an audio m= line")
	}
	c := mediaC
	if c == "" {
		c = sessC
	}
	ip, err := netip.ParseAddr(c)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("SDP connection address %q: %w", c, err)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

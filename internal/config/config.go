// Package config holds switchboard's settings: one Config struct with every
// field documented, its defaults, and Validate. Settings describes each
// setting once; the serve flags and the optional JSON config file (same
// names as the flags, snake_case) are made from it.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/digest"
)

// Config is the server's configuration.
type Config struct {
	// DataDir holds the SQLite database and lock file (flag --data, env SWITCHBOARD_DATA).
	DataDir string
	// DB is the database URL (flag --db, env SWITCHBOARD_DB): "" or
	// sqlite:DIR for SQLite (default: the file in DataDir), or
	// postgres://... for PostgreSQL (see package store/open).
	DB string
	// SIP is the internal profile's listen address, UDP and TCP (flag --sip).
	SIP string
	// Domain is the default domain; "" means the host's primary IPv4 address.
	Domain string
	// Digest lists the digest algorithms challenged, in order (flag --digest).
	Digest string
	// MinExpires, MaxExpires and DefaultExpires bound registrations (seconds).
	MinExpires     int
	MaxExpires     int
	DefaultExpires int
	// NonceLifetime is how long a digest nonce is fresh before stale=true.
	NonceLifetime time.Duration
	// QualifyInterval is how often each UDP binding is pinged with OPTIONS
	// (0 disables); TCP bindings are pinged at twice this interval.
	QualifyInterval time.Duration
	// JournalMaxAge and JournalMaxEvents bound the journal.
	JournalMaxAge    time.Duration
	JournalMaxEvents int
	// Journal records decisions (default true). Advanced: false exists only
	// to measure the journal's cost; the doctor has nothing to read then.
	Journal bool
	// BanAfter failed authentications (or scanner messages) from one
	// address within BanWindow ban it for BanFor: its packets are dropped
	// (flags --ban-after, --ban-window, --ban-for). Trusted networks and
	// addresses with a live registration are judged by BanAfterRegistered.
	BanAfter  int
	BanWindow time.Duration
	BanFor    time.Duration
	// BanAfterRegistered is BanAfter for an address with a live
	// registration: failures for extensions not registered from it (guesses
	// at others) ban it after this many within BanWindow; its registered
	// phones' own failures never count. 0 means 4 x BanAfter (at most 100)
	// (flag --ban-after-registered).
	BanAfterRegistered int
	// DigestAllowRFC2069 accepts digest answers without qop (RFC 2069)
	// although qop="auth" is offered; each such nonce is then accepted once
	// (flag --digest-allow-rfc2069; default false: they get 403).
	DigestAllowRFC2069 bool
	// RateLimit is how many SIP messages per second one address may send
	// on average, with bursts of RateBurst; more are dropped (0 = no limit;
	// trusted networks are exempt) (flags --rate-limit, --rate-burst).
	RateLimit int
	RateBurst int
	// TCPIdleTimeout closes a TCP connection that delivers no complete SIP
	// message for this long; a connection a phone registered over stays
	// until its registration expires (flag --tcp-idle-timeout).
	TCPIdleTimeout time.Duration
	// TCPMaxPerIP caps the TCP connections of one address (IPv6: one /64;
	// trusted networks are exempt; 0 = no cap) (flag --tcp-max-per-ip).
	TCPMaxPerIP int
	// TCPMaxConns caps the TCP connections in all (0 = derived from the
	// file limit) (flag --tcp-max-conns).
	TCPMaxConns int
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Pprof, when set, serves net/http/pprof on this loopback address
	// (profiling for benchmarks; flag --pprof, e.g. 127.0.0.1:6060).
	Pprof string
	// MemoryLimit is the Go runtime's soft memory limit, as GOMEMLIMIT
	// writes it (e.g. "512MiB"; flag --memory-limit). "" leaves the
	// runtime's: the GOMEMLIMIT environment variable, or none. Near the
	// limit the runtime collects more often and returns freed memory to
	// the OS at once.
	MemoryLimit string
	// Node names this server among the nodes sharing one database (flag
	// --node; "" = the host name). NodeAddress is its internal SIP address
	// (host:port, UDP) the other nodes forward calls to ("" = the UDP
	// listener's). NodeLease is how long its lease lasts after a renewal
	// (renewed every third of it; flag --node-lease).
	Node        string
	NodeAddress string
	NodeLease   time.Duration
	// HTTP is the web console's, the HTTP API's and /metrics' listen
	// address (flag --http; default 127.0.0.1:8080; "" turns it off). A
	// non-loopback address needs HTTPCert and HTTPKey (TLS) or
	// HTTPInsecure.
	HTTP string
	// HTTPCert and HTTPKey are PEM files of the console's TLS certificate
	// and key (flags --http-cert, --http-key): both or neither.
	HTTPCert string
	HTTPKey  string
	// HTTPInsecure allows plain HTTP on a non-loopback --http address
	// (behind a TLS-terminating reverse proxy on the same host or network).
	HTTPInsecure bool
	// TLS, WS and WSS are the internal profile's SIP over TLS, WebSocket
	// and secure WebSocket listen addresses (flags --tls, --ws, --wss):
	// host:port, "off", or "auto" (the --sip host with port 5061 for TLS,
	// 5066 for WS, 7443 for WSS; port 0 when --sip's port is 0; a port
	// that is taken leaves that listener off with a warning).
	TLS, WS, WSS string
	// TLSCert and TLSKey are PEM files (full chain, key) served by TLS and
	// WSS; "" for both: a self-signed certificate in the data directory.
	TLSCert, TLSKey string
	// WSOrigins lists page origins allowed to open a WebSocket besides
	// the server's own host and loopback pages (comma-separated; "*": any).
	WSOrigins string
	// MediaRelay decides when calls' media go through the embedded relay
	// (flag --media-relay): "auto" (a WebRTC browser and a plain-RTP
	// phone, or a party whose SDP address is not where its SIP came
	// from: behind NAT), "always" (every call with SDP) or "never".
	MediaRelay string
	// RTPPorts is the relay's UDP port range, "LOW-HIGH" (flag
	// --rtp-ports; two ports per relayed call leg: RTP and RTCP).
	RTPPorts string
	// MediaIP is the address written into relayed SDP (flag --media-ip):
	// "" = the --sip host when it is specific, else the primary IPv4.
	// Behind NAT it must be the public address.
	MediaIP string
	// MediaTimeout ends a relayed call when neither party sent media for
	// this long (flag --media-timeout).
	MediaTimeout time.Duration
}

// Default returns the defaults.
func Default() Config {
	data := os.Getenv("SWITCHBOARD_DATA")
	if data == "" {
		data = "./data"
	}
	return Config{
		DataDir:          data,
		DB:               os.Getenv("SWITCHBOARD_DB"),
		SIP:              "0.0.0.0:5060",
		Digest:           "md5",
		MinExpires:       60,
		MaxExpires:       7200,
		DefaultExpires:   3600,
		NonceLifetime:    5 * time.Minute,
		QualifyInterval:  30 * time.Second,
		JournalMaxAge:    7 * 24 * time.Hour,
		JournalMaxEvents: 1_000_000,
		Journal:          true,
		BanAfter:         5,
		BanWindow:        60 * time.Second,
		BanFor:           time.Hour,
		RateLimit:        200,
		RateBurst:        1000,
		TCPIdleTimeout:   30 * time.Second,
		TCPMaxPerIP:      128,
		LogLevel:         "info",
		NodeLease:        15 * time.Second,
		HTTP:             "127.0.0.1:8080",
		TLS:              "auto",
		WS:               "off",
		WSS:              "auto",
		MediaRelay:       "auto",
		RTPPorts:         "16384-32768",
		MediaTimeout:     60 * time.Second,
	}
}

// Validate checks every field and returns the first problem in one line.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("--data is empty: give a directory, e.g. --data ./data")
	}
	if c.DB != "" && !strings.HasPrefix(c.DB, "sqlite:") && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		return errors.New("--db must be sqlite:DIR or postgres://USER@HOST/DB, e.g. --db postgres://switchboard@localhost/switchboard")
	}
	host, port, err := net.SplitHostPort(c.SIP)
	if err != nil {
		return fmt.Errorf("--sip %q is not host:port, e.g. --sip 0.0.0.0:5060", c.SIP)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--sip %q: port must be 0..65535", c.SIP)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("--sip %q: host must be an IP address", c.SIP)
	}
	if c.Domain != "" {
		if err := ValidDomain(c.Domain); err != nil {
			return fmt.Errorf("--domain: %w", err)
		}
	}
	if _, err := digest.ParseAlgorithms(c.Digest); err != nil {
		return fmt.Errorf("--digest %q: %v (use md5, sha-256 or both, e.g. sha-256,md5)", c.Digest, err)
	}
	if c.MinExpires < 1 || c.MaxExpires < c.MinExpires || c.DefaultExpires < c.MinExpires || c.DefaultExpires > c.MaxExpires {
		return fmt.Errorf("expires bounds are inconsistent: need 1 <= min (%d) <= default (%d) <= max (%d)",
			c.MinExpires, c.DefaultExpires, c.MaxExpires)
	}
	if c.NonceLifetime < time.Second {
		return errors.New("--nonce-lifetime must be at least 1s")
	}
	if c.NodeLease < 3*time.Second {
		return fmt.Errorf("--node-lease %s: give at least 3s, e.g. --node-lease 15s", c.NodeLease)
	}
	if c.Node != "" && !validNodeName(c.Node) {
		return fmt.Errorf("--node %q: use letters, digits, '.', '-' and '_' (at most 64)", c.Node)
	}
	if c.NodeAddress != "" {
		if h, p, err := net.SplitHostPort(c.NodeAddress); err != nil || net.ParseIP(h) == nil || p == "0" {
			return fmt.Errorf("--node-address %q: give the IP:port the other nodes reach this one at, e.g. --node-address 10.0.0.11:5060", c.NodeAddress)
		}
	}
	if c.QualifyInterval < 0 {
		return errors.New("--qualify-interval must be 0 (off) or positive")
	}
	if c.BanAfter < 1 || c.BanAfter > 100 {
		return fmt.Errorf("--ban-after %d: give 1..100 failed authentications, e.g. --ban-after 5", c.BanAfter)
	}
	if c.BanAfterRegistered < 0 || c.BanAfterRegistered > 100 {
		return fmt.Errorf("--ban-after-registered %d: give 1..100 failed authentications, or 0 for 4 x --ban-after", c.BanAfterRegistered)
	}
	if c.BanWindow < time.Second {
		return fmt.Errorf("--ban-window %s: give at least 1s, e.g. --ban-window 60s", c.BanWindow)
	}
	if c.BanFor < time.Second {
		return fmt.Errorf("--ban-for %s: give at least 1s, e.g. --ban-for 1h", c.BanFor)
	}
	if c.RateLimit < 0 {
		return fmt.Errorf("--rate-limit %d: give messages per second per address, or 0 for no limit", c.RateLimit)
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		return fmt.Errorf("--rate-burst %d: give at least 1, e.g. --rate-burst %d", c.RateBurst, 5*c.RateLimit)
	}
	if c.TCPIdleTimeout < 100*time.Millisecond {
		return fmt.Errorf("--tcp-idle-timeout %s: give at least 100ms, e.g. --tcp-idle-timeout 30s", c.TCPIdleTimeout)
	}
	if c.TCPMaxPerIP < 0 {
		return fmt.Errorf("--tcp-max-per-ip %d: give connections per address, or 0 for no cap", c.TCPMaxPerIP)
	}
	if c.TCPMaxConns < 0 {
		return fmt.Errorf("--tcp-max-conns %d: give connections in all, or 0 to derive it from the file limit", c.TCPMaxConns)
	}
	if c.Pprof != "" {
		h, _, err := net.SplitHostPort(c.Pprof)
		if ip := net.ParseIP(h); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("--pprof %q must be a loopback address such as 127.0.0.1:6060", c.Pprof)
		}
	}
	if c.MemoryLimit != "" {
		if _, err := ParseSize(c.MemoryLimit); err != nil {
			return fmt.Errorf("--memory-limit %q: %v (e.g. --memory-limit 512MiB)", c.MemoryLimit, err)
		}
	}
	if err := c.validateHTTP(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", c.LogLevel)
	}
	for _, l := range []struct{ flag, v string }{{"tls", c.TLS}, {"ws", c.WS}, {"wss", c.WSS}} {
		if l.v == "auto" || l.v == "off" {
			continue
		}
		h, p, err := net.SplitHostPort(l.v)
		if n, perr := strconv.Atoi(p); err != nil || perr != nil || n < 0 || n > 65535 || (h != "" && net.ParseIP(h) == nil) {
			return fmt.Errorf("--%s %q: give ip:port (e.g. --%s 0.0.0.0:%s), auto or off", l.flag, l.v, l.flag, StreamPort(l.flag))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both PEM files, or neither for a self-signed certificate")
	}
	return c.validateMedia()
}

// validateMedia checks --media-relay, --rtp-ports, --media-ip and
// --media-timeout.
func (c *Config) validateMedia() error {
	switch c.MediaRelay {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("--media-relay %q: use auto, always or never", c.MediaRelay)
	}
	if _, _, err := ParsePortRange(c.RTPPorts); err != nil {
		return fmt.Errorf("--rtp-ports %q: %v (e.g. --rtp-ports 16384-32768)", c.RTPPorts, err)
	}
	if c.MediaIP != "" {
		ip := net.ParseIP(c.MediaIP)
		if ip == nil || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("--media-ip %q: give the IP address phones send media to (behind NAT: the public one), e.g. --media-ip 203.0.113.10", c.MediaIP)
		}
	}
	if c.MediaTimeout < time.Second || c.MediaTimeout > 24*time.Hour {
		return fmt.Errorf("--media-timeout %s: give 1s..24h, e.g. --media-timeout 60s", c.MediaTimeout)
	}
	return nil
}

// ParsePortRange reads an --rtp-ports value "LOW-HIGH": 1024 <= LOW < HIGH
// <= 65535, at least 4 ports (one relayed call needs two RTP/RTCP pairs).
func ParsePortRange(v string) (low, high int, err error) {
	a, b, ok := strings.Cut(v, "-")
	if !ok {
		return 0, 0, errors.New("want LOW-HIGH")
	}
	low, err1 := strconv.Atoi(a)
	high, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return 0, 0, errors.New("want two port numbers LOW-HIGH")
	}
	if low < 1024 || high > 65535 || high-low < 3 {
		return 0, 0, errors.New("want 1024 <= LOW, HIGH <= 65535 and at least 4 ports")
	}
	return low, high, nil
}

// StreamPort is the standard port of the auto TLS, WS or WSS listener
// (flag "tls", "ws", "wss"), as FreeSWITCH and FusionPBX use.
func StreamPort(flag string) string {
	switch flag {
	case "tls":
		return "5061"
	case "ws":
		return "5066"
	}
	return "7443"
}

// StreamAddr resolves a --tls, --ws or --wss value (flag "tls", "ws" or
// "wss") against --sip: "" when off; auto reports whether it came from
// "auto" (then a taken port leaves the listener off instead of failing).
func (c *Config) StreamAddr(flag string) (addr string, auto bool) {
	v := map[string]string{"tls": c.TLS, "ws": c.WS, "wss": c.WSS}[flag]
	switch v {
	case "off", "":
		return "", false
	case "auto":
		host, port, _ := net.SplitHostPort(c.SIP)
		if port == "0" {
			return net.JoinHostPort(host, "0"), true
		}
		return net.JoinHostPort(host, StreamPort(flag)), true
	}
	return v, false
}

// PrimaryIPv4 returns the host's primary IPv4 address: the first up,
// non-loopback interface's IPv4 address, or 127.0.0.1 when there is none.
func PrimaryIPv4() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if v4 := ipn.IP.To4(); v4 != nil && !v4.IsLinkLocalUnicast() {
					return v4.String()
				}
			}
		}
	}
	return "127.0.0.1"
}

var domainRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.?)*$|^[0-9a-fA-F:]+$`)

// ValidDomain checks that name can be a domain (a SIP host and digest
// realm): a host name like pbx.example.com, or an IP address.
func ValidDomain(name string) error {
	if len(name) > 253 || !domainRE.MatchString(name) {
		return fmt.Errorf("invalid domain name %q: use a host name like pbx.example.com or an IP address", name)
	}
	return nil
}

// ParseSize reads a size in bytes as GOMEMLIMIT writes it: a whole number
// with an optional unit B, KiB, MiB, GiB or TiB (e.g. "512MiB").
func ParseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	num, shift := v, uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64>>shift {
		return 0, errors.New("want a positive size in B, KiB, MiB, GiB or TiB")
	}
	return n << shift, nil
}

// validNodeName reports whether name is usable as a node name.
func validNodeName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// validateHTTP checks --http and its TLS flags: a non-loopback address
// needs TLS (--http-cert and --http-key) or --http-insecure.
func (c *Config) validateHTTP() error {
	if (c.HTTPCert == "") != (c.HTTPKey == "") {
		return errors.New("--http-cert and --http-key go together: give both PEM files (certificate and private key), or neither")
	}
	if c.HTTP == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(c.HTTP)
	if err != nil {
		return fmt.Errorf("--http %q is not host:port, e.g. --http 127.0.0.1:8080 (or --http \"\" to turn the console off)", c.HTTP)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("--http %q: port must be 0..65535", c.HTTP)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Errorf("--http %q: host must be an IP address or localhost", c.HTTP)
	}
	if !HTTPLoopback(c.HTTP) && c.HTTPCert == "" && !c.HTTPInsecure {
		return fmt.Errorf("--http %s is reachable from the network: give TLS with --http-cert FILE --http-key FILE, or --http-insecure (only behind a TLS proxy), or keep the default 127.0.0.1:8080", c.HTTP)
	}
	return nil
}

// HTTPLoopback reports whether the --http address addr listens on
// loopback only (127.0.0.0/8, ::1 or localhost); "" and unspecified
// hosts (":8080", "0.0.0.0:8080") are not.
func HTTPLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

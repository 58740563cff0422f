package config

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// Setting describes one serve setting, once: its flag (--Name), its key in
// the JSON config file (Key), its help text, and the Config field it fills.
// The flags of `switchboard serve` and the config file reader are built
// from Settings; a test checks the README's serve table against it.
type Setting struct {
	// Name is the flag name (--name); the config file key is Name with
	// '_' for '-'.
	Name string
	// Help is the flag's help text.
	Help string
	// DefaultDoc is how the README writes a default that is not the
	// field's value in Default() ("" = that value), e.g. "primary IPv4".
	DefaultDoc string
	// field returns the Config field: *string, *int, *bool or
	// *time.Duration.
	field func(*Config) any
}

// Key is the setting's key in the JSON config file (snake_case).
func (s Setting) Key() string { return strings.ReplaceAll(s.Name, "-", "_") }

// Settings returns every serve setting, in the order of the serve flags'
// definition.
func Settings() []Setting {
	return []Setting{
		{Name: "data", Help: "data directory (env SWITCHBOARD_DATA)",
			field: func(c *Config) any { return &c.DataDir }},
		{Name: "db", Help: "database URL: sqlite:DIR or postgres://USER@HOST/DB (env SWITCHBOARD_DB; default: SQLite in --data)",
			DefaultDoc: "SQLite in DIR",
			field:      func(c *Config) any { return &c.DB }},
		{Name: "sip", Help: "internal profile listen address, UDP and TCP (port 0: pick a free port)",
			field: func(c *Config) any { return &c.SIP }},
		{Name: "domain", Help: "default domain (default: the host's primary IPv4 address)", DefaultDoc: "primary IPv4",
			field: func(c *Config) any { return &c.Domain }},
		{Name: "digest", Help: "digest algorithms to challenge with, in order: md5, sha-256 or sha-256,md5",
			field: func(c *Config) any { return &c.Digest }},
		{Name: "min-expires", Help: "shortest registration accepted (seconds; shorter gets 423)",
			field: func(c *Config) any { return &c.MinExpires }},
		{Name: "max-expires", Help: "longest registration granted (seconds)",
			field: func(c *Config) any { return &c.MaxExpires }},
		{Name: "default-expires", Help: "registration time when the phone asks for none (seconds)",
			field: func(c *Config) any { return &c.DefaultExpires }},
		{Name: "digest-allow-rfc2069", Help: "accept digest answers without qop (RFC 2069, old phones); each nonce is then accepted once",
			field: func(c *Config) any { return &c.DigestAllowRFC2069 }},
		{Name: "nonce-lifetime", Help: "how long a digest nonce stays fresh",
			field: func(c *Config) any { return &c.NonceLifetime }},
		{Name: "qualify-interval", Help: "OPTIONS ping interval per UDP binding (0 = off)",
			field: func(c *Config) any { return &c.QualifyInterval }},
		{Name: "journal-max-age", Help: "delete journal events older than this",
			field: func(c *Config) any { return &c.JournalMaxAge }},
		{Name: "journal-max-events", Help: "keep at most this many journal events",
			field: func(c *Config) any { return &c.JournalMaxEvents }},
		{Name: "pprof", Help: "advanced: serve Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060",
			field: func(c *Config) any { return &c.Pprof }},
		{Name: "journal", Help: "advanced: --journal=false records no decisions (only to measure the journal's cost; the doctor needs it)",
			field: func(c *Config) any { return &c.Journal }},
		{Name: "ban-after", Help: "ban an address after this many failed authentications within --ban-window",
			field: func(c *Config) any { return &c.BanAfter }},
		{Name: "ban-after-registered", Help: "ban an address with registered phones after this many failed authentications for other extensions within --ban-window (0 = 4 x --ban-after; the registered phones' own failures never count)",
			field: func(c *Config) any { return &c.BanAfterRegistered }},
		{Name: "ban-window", Help: "window in which failed authentications are counted",
			field: func(c *Config) any { return &c.BanWindow }},
		{Name: "ban-for", Help: "how long a ban lasts (lift one early with switchboard ban rm IP)",
			field: func(c *Config) any { return &c.BanFor }},
		{Name: "rate-limit", Help: "SIP messages per second one address may send (0 = no limit; trusted networks are exempt)",
			field: func(c *Config) any { return &c.RateLimit }},
		{Name: "rate-burst", Help: "burst allowed above --rate-limit",
			field: func(c *Config) any { return &c.RateBurst }},
		{Name: "tcp-idle-timeout", Help: "close a TCP connection that sends no complete SIP message for this long (a registered phone's stays until its registration expires)",
			field: func(c *Config) any { return &c.TCPIdleTimeout }},
		{Name: "tcp-max-per-ip", Help: "TCP connections one address may hold (IPv6: one /64; trusted networks exempt; 0 = no cap)",
			field: func(c *Config) any { return &c.TCPMaxPerIP }},
		{Name: "tcp-max-conns", Help: "TCP connections in all (0 = from the file limit: the limit minus a reserve, at most 65536)", DefaultDoc: "from file limit",
			field: func(c *Config) any { return &c.TCPMaxConns }},
		{Name: "log-level", Help: "debug, info, warn or error",
			field: func(c *Config) any { return &c.LogLevel }},
		{Name: "memory-limit", Help: "soft memory limit of the Go runtime, a `SIZE` such as 512MiB (default: $GOMEMLIMIT, else none)",
			field: func(c *Config) any { return &c.MemoryLimit }},
		{Name: "node", Help: "this node's name among the servers sharing one database (default: the host name)", DefaultDoc: "host name",
			field: func(c *Config) any { return &c.Node }},
		{Name: "node-address", Help: "this node's internal SIP address (host:port, UDP) where the other nodes forward calls for its phones (default: the --sip listener)", DefaultDoc: "the --sip listener",
			field: func(c *Config) any { return &c.NodeAddress }},
		{Name: "node-lease", Help: "how long a node counts as up after its last lease renewal (renewed every third of this); the other nodes skip the bindings of a node whose lease ran out",
			field: func(c *Config) any { return &c.NodeLease }},
		{Name: "http", Help: "web console, HTTP API and /metrics listen address (\"\" = off); not loopback: needs --http-cert/--http-key or --http-insecure",
			field: func(c *Config) any { return &c.HTTP }},
		{Name: "http-cert", Help: "TLS certificate (PEM) for --http",
			field: func(c *Config) any { return &c.HTTPCert }},
		{Name: "http-key", Help: "TLS private key (PEM) for --http",
			field: func(c *Config) any { return &c.HTTPKey }},
		{Name: "http-insecure", Help: "allow plain HTTP on a non-loopback --http address (only behind a TLS-terminating proxy)",
			field: func(c *Config) any { return &c.HTTPInsecure }},
		{Name: "tls", Help: "SIP over TLS listen address: ip:port, auto (the --sip address's host, port 5061) or off",
			field: func(c *Config) any { return &c.TLS }},
		{Name: "ws", Help: "SIP over WebSocket (plain, RFC 7118) listen address: ip:port, auto (port 5066) or off; browsers need --wss",
			field: func(c *Config) any { return &c.WS }},
		{Name: "wss", Help: "SIP over secure WebSocket (WebRTC phones) listen address: ip:port, auto (port 7443) or off",
			field: func(c *Config) any { return &c.WSS }},
		{Name: "tls-cert", Help: "PEM certificate chain for TLS and WSS, reloaded when it changes (default: a self-signed one in the data directory)", DefaultDoc: "self-signed",
			field: func(c *Config) any { return &c.TLSCert }},
		{Name: "tls-key", Help: "PEM private key of --tls-cert", DefaultDoc: "self-signed",
			field: func(c *Config) any { return &c.TLSKey }},
		{Name: "ws-origins", Help: "page origins allowed to open a WebSocket besides this host and loopback pages (comma-separated, e.g. https://phone.example.com; * = any)",
			field: func(c *Config) any { return &c.WSOrigins }},
		{Name: "media-relay", Help: "when calls' audio goes through the embedded media relay: auto (NAT or WebRTC<->phone), always or never",
			field: func(c *Config) any { return &c.MediaRelay }},
		{Name: "rtp-ports", Help: "the media relay's UDP port range LOW-HIGH (open it in the firewall; 2 ports per relayed call leg)",
			field: func(c *Config) any { return &c.RTPPorts }},
		{Name: "media-ip", Help: "the address the relay writes into SDP (default: the --sip host if specific, else the primary IPv4; behind NAT: the public address)", DefaultDoc: "--sip host or primary IPv4",
			field: func(c *Config) any { return &c.MediaIP }},
		{Name: "media-timeout", Help: "end a relayed call when no media arrived from either party for this long",
			field: func(c *Config) any { return &c.MediaTimeout }},
	}
}

// DefineFlags defines a flag on fs for every setting, writing into c; the
// flags' defaults are c's values.
func (c *Config) DefineFlags(fs *flag.FlagSet) {
	for _, s := range Settings() {
		switch p := s.field(c).(type) {
		case *string:
			fs.StringVar(p, s.Name, *p, s.Help)
		case *int:
			fs.IntVar(p, s.Name, *p, s.Help)
		case *bool:
			fs.BoolVar(p, s.Name, *p, s.Help)
		case *time.Duration:
			fs.DurationVar(p, s.Name, *p, s.Help)
		default:
			panic(fmt.Sprintf("config: setting %s has a field of type %T", s.Name, p))
		}
	}
}

// LoadFile overlays the JSON config file at path onto c: an object whose
// keys are the settings' Keys (snake_case flag names). Durations are Go
// durations ("30s") or seconds. Settings named in keep (by flag name:
// given on the command line) keep their value. An unknown key, a value of
// the wrong type or an unreadable file is an error naming the file.
func (c *Config) LoadFile(path string, keep map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	byKey := map[string]Setting{}
	for _, s := range Settings() {
		byKey[s.Key()] = s
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := byKey[k]
		if !ok {
			return fmt.Errorf("config file %s: unknown setting %q (the keys are the serve flags with _ for -, e.g. min_expires)", path, k)
		}
		if keep[s.Name] {
			continue
		}
		if err := setJSON(s.field(c), raw[k]); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// setJSON decodes v into the field p.
func setJSON(p any, v json.RawMessage) error {
	switch p := p.(type) {
	case *string:
		if err := json.Unmarshal(v, p); err != nil {
			return fmt.Errorf("want a string")
		}
	case *bool:
		if err := json.Unmarshal(v, p); err != nil {
			return fmt.Errorf("want true or false")
		}
	case *int:
		var f float64
		if err := json.Unmarshal(v, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
			return fmt.Errorf("want a whole number")
		}
		*p = int(f)
	case *time.Duration:
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		switch x := x.(type) {
		case float64:
			*p = time.Duration(x * float64(time.Second))
		case string:
			d, err := time.ParseDuration(x)
			if err != nil {
				return err
			}
			*p = d
		default:
			return fmt.Errorf("want a duration such as \"30s\"")
		}
	default:
		return fmt.Errorf("setting of type %T", p)
	}
	return nil
}

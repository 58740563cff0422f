package cli

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/server"
)

const serveUsage = `Usage: switchboard serve [--data DIR] [--sip ADDR] [--domain NAME] [flags]

Runs the PBX: the internal SIP profile on UDP and TCP, with its directory,
registrar and journal in DIR (an embedded SQLite database, created on first
start). Stops gracefully on SIGINT or SIGTERM.`

// Serve runs `switchboard serve` until a signal or ctx ends it. ready, when
// not nil, is called with the started server (tests use it).
func Serve(ctx context.Context, env Env, args []string, ready func(*server.Server)) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configFile := fs.String("config", "", "optional JSON file with the same settings as these flags (snake_case names)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (env SWITCHBOARD_DATA)")
	fs.StringVar(&cfg.SIP, "sip", cfg.SIP, "internal profile listen address, UDP and TCP (port 0: pick a free port)")
	fs.StringVar(&cfg.Domain, "domain", cfg.Domain, "default domain (default: the host's primary IPv4 address)")
	fs.StringVar(&cfg.Digest, "digest", cfg.Digest, "digest algorithms to challenge with, in order: md5, sha-256 or sha-256,md5")
	fs.IntVar(&cfg.MinExpires, "min-expires", cfg.MinExpires, "shortest registration accepted (seconds; shorter gets 423)")
	fs.IntVar(&cfg.MaxExpires, "max-expires", cfg.MaxExpires, "longest registration granted (seconds)")
	fs.IntVar(&cfg.DefaultExpires, "default-expires", cfg.DefaultExpires, "registration time when the phone asks for none (seconds)")
	fs.BoolVar(&cfg.DigestAllowRFC2069, "digest-allow-rfc2069", cfg.DigestAllowRFC2069, "accept digest answers without qop (RFC 2069, old phones); each nonce is then accepted once")
	fs.DurationVar(&cfg.NonceLifetime, "nonce-lifetime", cfg.NonceLifetime, "how long a digest nonce stays fresh")
	fs.DurationVar(&cfg.QualifyInterval, "qualify-interval", cfg.QualifyInterval, "OPTIONS ping interval per UDP binding (0 = off)")
	fs.DurationVar(&cfg.JournalMaxAge, "journal-max-age", cfg.JournalMaxAge, "delete journal events older than this")
	fs.IntVar(&cfg.JournalMaxEvents, "journal-max-events", cfg.JournalMaxEvents, "keep at most this many journal events")
	fs.StringVar(&cfg.Pprof, "pprof", cfg.Pprof, "advanced: serve Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060")
	fs.BoolVar(&cfg.Journal, "journal", cfg.Journal, "advanced: --journal=false records no decisions (only to measure the journal's cost; the doctor needs it)")
	fs.IntVar(&cfg.BanAfter, "ban-after", cfg.BanAfter, "ban an address after this many failed authentications within --ban-window")
	fs.IntVar(&cfg.BanAfterRegistered, "ban-after-registered", cfg.BanAfterRegistered, "ban an address with registered phones after this many failed authentications for other extensions within --ban-window (0 = 4 x --ban-after; the registered phones' own failures never count)")
	fs.DurationVar(&cfg.BanWindow, "ban-window", cfg.BanWindow, "window in which failed authentications are counted")
	fs.DurationVar(&cfg.BanFor, "ban-for", cfg.BanFor, "how long a ban lasts (lift one early with switchboard ban rm IP)")
	fs.IntVar(&cfg.RateLimit, "rate-limit", cfg.RateLimit, "SIP messages per second one address may send (0 = no limit; trusted networks are exempt)")
	fs.IntVar(&cfg.RateBurst, "rate-burst", cfg.RateBurst, "burst allowed above --rate-limit")
	fs.DurationVar(&cfg.TCPIdleTimeout, "tcp-idle-timeout", cfg.TCPIdleTimeout, "close a TCP connection that sends no complete SIP message for this long (a registered phone's stays until its registration expires)")
	fs.IntVar(&cfg.TCPMaxPerIP, "tcp-max-per-ip", cfg.TCPMaxPerIP, "TCP connections one address may hold (IPv6: one /64; trusted networks exempt; 0 = no cap)")
	fs.IntVar(&cfg.TCPMaxConns, "tcp-max-conns", cfg.TCPMaxConns, "TCP connections in all (0 = from the file limit: the limit minus a reserve, at most 65536)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	pos, done, err := parseHelp(env, fs, args, serveUsage)
	if done || err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("`switchboard serve` takes no arguments, only flags (see switchboard serve --help)")
	}
	if *configFile != "" {
		// The file sets defaults; flags given on the command line win.
		fileCfg := config.Default()
		if err := fileCfg.LoadFile(*configFile); err != nil {
			return err
		}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		merge(&cfg, fileCfg, given)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(srv)
	}
	return srv.Run(ctx)
}

// merge copies file settings into cfg for every flag not given.
func merge(cfg *config.Config, file config.Config, given map[string]bool) {
	set := func(name string, apply func()) {
		if !given[name] {
			apply()
		}
	}
	set("data", func() { cfg.DataDir = file.DataDir })
	set("sip", func() { cfg.SIP = file.SIP })
	set("domain", func() { cfg.Domain = file.Domain })
	set("digest", func() { cfg.Digest = file.Digest })
	set("min-expires", func() { cfg.MinExpires = file.MinExpires })
	set("max-expires", func() { cfg.MaxExpires = file.MaxExpires })
	set("default-expires", func() { cfg.DefaultExpires = file.DefaultExpires })
	set("nonce-lifetime", func() { cfg.NonceLifetime = file.NonceLifetime })
	set("qualify-interval", func() { cfg.QualifyInterval = file.QualifyInterval })
	set("pprof", func() { cfg.Pprof = file.Pprof })
	set("journal-max-age", func() { cfg.JournalMaxAge = file.JournalMaxAge })
	set("journal-max-events", func() { cfg.JournalMaxEvents = file.JournalMaxEvents })
	set("journal", func() { cfg.Journal = file.Journal })
	set("ban-after", func() { cfg.BanAfter = file.BanAfter })
	set("ban-after-registered", func() { cfg.BanAfterRegistered = file.BanAfterRegistered })
	set("digest-allow-rfc2069", func() { cfg.DigestAllowRFC2069 = file.DigestAllowRFC2069 })
	set("ban-window", func() { cfg.BanWindow = file.BanWindow })
	set("ban-for", func() { cfg.BanFor = file.BanFor })
	set("rate-limit", func() { cfg.RateLimit = file.RateLimit })
	set("rate-burst", func() { cfg.RateBurst = file.RateBurst })
	set("tcp-idle-timeout", func() { cfg.TCPIdleTimeout = file.TCPIdleTimeout })
	set("tcp-max-per-ip", func() { cfg.TCPMaxPerIP = file.TCPMaxPerIP })
	set("tcp-max-conns", func() { cfg.TCPMaxConns = file.TCPMaxConns })
	set("log-level", func() { cfg.LogLevel = file.LogLevel })
}

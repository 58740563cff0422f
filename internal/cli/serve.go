package cli

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/switchboard-pbx/switchboard/internal/config"
)

const serveUsage = `Usage: switchboard serve [--data DIR] [--sip ADDR] [--domain NAME] [flags]

Runs the PBX: the internal SIP profile on UDP and TCP, with its directory,
registrar and journal in DIR (an embedded SQLite database, created on first
start). Also serves the web console, the JSON API (/api/v1/) and /metrics on
--http (default 127.0.0.1:8080); while no admin exists it prints a one-time
setup link on stderr. Stops gracefully on SIGINT or SIGTERM.`

// Serve runs `switchboard serve` until a signal or ctx ends it: it reads
// the settings (flags, config file), then hands them to env.Serve, which
// builds and runs the server (the command line does not import it).
func Serve(ctx context.Context, env Env, args []string) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configFile := fs.String("config", "", "optional JSON file with the same settings as these flags (snake_case names)")
	cfg.DefineFlags(fs)
	pos, done, err := parseHelp(env, fs, args, serveUsage)
	if done || err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("`switchboard serve` takes no arguments, only flags (see switchboard serve --help)")
	}
	if *configFile != "" {
		// The file sets defaults; flags given on the command line win.
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if err := cfg.LoadFile(*configFile, given); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.MemoryLimit != "" {
		// Process-wide, like GOMEMLIMIT, which it overrides.
		n, _ := config.ParseSize(cfg.MemoryLimit) // checked by Validate
		debug.SetMemoryLimit(n)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if env.Serve == nil {
		return errors.New("this build of switchboard cannot serve (no server linked in)")
	}
	return env.Serve(ctx, cfg, log)
}

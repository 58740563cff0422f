// Command regload is the REGISTER load client of bench/tls.sh: clients on
// persistent TLS connections or UDP sockets register a new user each time
// (REGISTER, 401, REGISTER with digest, 200) against one registrar for a
// bounded time, and it prints one tab-separated result line:
//
//	label transport clients ok failed elapsed_s per_s exhausted first_error
//
// Usage:
//
//	regload -transport tls -addr 127.0.0.1:5071 -ca cert.pem -label switchboard
//
// It sends only to -addr, which must be a loopback address.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/regload"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "regload:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		transport = flag.String("transport", "udp", "udp or tls")
		addr      = flag.String("addr", "127.0.0.1:5070", "the registrar (a loopback host:port)")
		caFile    = flag.String("ca", "", "PEM certificate(s) to trust for TLS (the server's self-signed certificate)")
		name      = flag.String("server-name", "127.0.0.1", "TLS server name to verify")
		domain    = flag.String("domain", "127.0.0.1", "the registrar's domain (realm)")
		clients   = flag.Int("clients", 32, "concurrent clients: TLS connections or UDP sockets")
		first     = flag.Int("first", 100000, "first user")
		users     = flag.Int("users", 100000, "users first..first+users-1, shared among the clients")
		prefix    = flag.String("password-prefix", "pw", "a user's password is this prefix and its number")
		dur       = flag.Duration("duration", 10*time.Second, "how long to register (at most 60s)")
		timeout   = flag.Duration("timeout", 5*time.Second, "wait for each answer")
		label     = flag.String("label", "", "first column of the result line")
		header    = flag.Bool("header", false, "print the column names first")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", flag.Arg(0))
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", *addr, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: only loopback addresses (127.0.0.0/8, ::1) are load-tested", *addr)
	}
	if *dur <= 0 || *dur > time.Minute {
		return fmt.Errorf("-duration %s: want more than 0 and at most 1m", *dur)
	}
	c := regload.Config{Transport: strings.ToUpper(*transport), Addr: *addr, Domain: *domain, Clients: *clients,
		First: *first, Users: *users, Duration: *dur, Timeout: *timeout,
		Password: func(u int) string { return *prefix + strconv.Itoa(u) }}
	if c.Transport == "TLS" {
		pool := x509.NewCertPool()
		if *caFile != "" {
			b, err := os.ReadFile(*caFile)
			if err != nil {
				return fmt.Errorf("-ca: %w", err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return fmt.Errorf("-ca %s: no PEM certificate in it", *caFile)
			}
		} else if pool, err = x509.SystemCertPool(); err != nil {
			return fmt.Errorf("system certificates: %w (give -ca)", err)
		}
		c.TLS = &tls.Config{RootCAs: pool, ServerName: *name, MinVersion: tls.VersionTLS12}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur+2**timeout+30*time.Second)
	defer cancel()
	r, err := regload.Run(ctx, c)
	if err != nil {
		return err
	}
	if *header {
		fmt.Println("label\ttransport\tclients\tok\tfailed\telapsed_s\tper_s\texhausted\tfirst_error")
	}
	fe := r.FirstError
	if fe == "" {
		fe = "-"
	}
	fmt.Printf("%s\t%s\t%d\t%d\t%d\t%.2f\t%.0f\t%d\t%s\n", *label, c.Transport, c.Clients, r.OK, r.Failed,
		r.Elapsed.Seconds(), r.PerSecond(), r.Exhausted, strings.ReplaceAll(fe, "\t", " "))
	return nil
}

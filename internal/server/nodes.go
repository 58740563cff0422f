package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cluster"
	"github.com/switchboard-pbx/switchboard/internal/config"
	"github.com/switchboard-pbx/switchboard/internal/proxy"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/store/sqlite"
)

// MetaNodeLease is the setting where serve records its --node-lease, for
// the commands that judge the nodes' leases (status, doctor).
const MetaNodeLease = "node_lease"

// callIDRange is the counter of call record id ranges on a shared
// database; each node's run reserves callIDRangeSize ids of it (a billion:
// never used up by one run; nine billion runs fit an int64).
const (
	callIDRange     = "call_id_ranges"
	callIDRangeSize = 1_000_000_000
)

// nodeBacklog bounds the binding changes a node on a shared database
// answers from memory while the database cannot write (location.SetBacklog).
const nodeBacklog = 10000

// defaultNode is the node name when --node is not given: the host name
// (its first label), or "node" when it has none usable.
func defaultNode() string {
	hn, err := os.Hostname()
	if err != nil {
		return "node"
	}
	hn, _, _ = strings.Cut(hn, ".")
	var b strings.Builder
	for _, r := range hn {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 || b.Len() > 64 {
		return "node"
	}
	return b.String()
}

// nodeAddress is the internal SIP address the other nodes reach this one
// at: --node-address, else the UDP listener (its unspecified host replaced
// by the primary IPv4).
func nodeAddress(cfg config.Config, udpAddr string) string {
	if cfg.NodeAddress != "" {
		return cfg.NodeAddress
	}
	host, port, err := net.SplitHostPort(udpAddr)
	if err != nil {
		return udpAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = config.PrimaryIPv4()
	}
	return net.JoinHostPort(host, port)
}

// joinNodes makes this server a node of its database: the bindings carry
// its name and Path, its lease row is written (and renewed by Run), the
// nodes' shared secret is loaded (created by the first node; only on a
// shared database) and the lease time recorded for status and the doctor.
func (s *Server) joinNodes(ctx context.Context, udpAddr string) error {
	addr := nodeAddress(s.Cfg, udpAddr)
	s.Loc.SetNode(s.Node, "<sip:"+addr+";lr>")
	if s.shared() { // one SQLite server has no other node to trust
		var err error
		if s.Signer, err = cluster.NewSigner(ctx, s.Node, s.DB); err != nil {
			return err
		}
	}
	if nodes, err := s.DB.ListNodes(ctx); err == nil {
		for _, n := range nodes {
			if n.Name == s.Node && time.Since(n.RenewedAt) < s.Cfg.NodeLease && n.Address != addr {
				s.Log.Warn("another node with this name renewed its lease moments ago: unless it is this node's previous run, give each node its own --node",
					"node", s.Node, "other_address", n.Address, "renewed", n.RenewedAt.Format(time.RFC3339))
			}
		}
	}
	s.Lease = cluster.NewLease(s.DB, store.Node{Name: s.Node, Address: addr, StartedAt: time.Now()}, s.Cfg.NodeLease, s.Log)
	if err := s.Lease.Renew(ctx); err != nil {
		return fmt.Errorf("node %s: %w", s.Node, err)
	}
	if err := s.DB.SetMeta(ctx, MetaNodeLease, s.Cfg.NodeLease.String()); err != nil {
		return fmt.Errorf("node %s: %w", s.Node, err)
	}
	return nil
}

// shared reports whether other nodes may share the database: not an
// SQLite file, which one server holds locked.
func (s *Server) shared() bool {
	var db any = s.DB
	_, single := db.(*sqlite.DB)
	return !single
}

// listenChanges makes the directory watcher poll the change feed as soon
// as another node (or a command) appends to it, when the database can say
// so (PostgreSQL's LISTEN/NOTIFY); the watcher's 250 ms poll stays as the
// fallback.
func (s *Server) listenChanges(ctx context.Context) {
	l, ok := any(s.DB).(interface {
		ListenChanges(ctx context.Context, notify func(), onErr func(error))
	})
	if !ok {
		return
	}
	s.Go(func() {
		l.ListenChanges(ctx, func() {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}, func(err error) { s.Log.Debug("listen for directory changes", "error", err) })
	})
}

// nodesSeam is the proxy's seam to the other nodes: nil (a single node)
// without a Signer. (A nil *cluster.Signer in the interface would not be
// nil.)
func (s *Server) nodesSeam() proxy.Nodes {
	if s.Signer == nil {
		return nil
	}
	return s.Signer
}

package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// nodeView is one node sharing the database, in `status` and `profile
// show` (JSON field "nodes").
type nodeView struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	State     string `json:"state"` // "up" or "down" (lease ran out)
	StartedAt string `json:"started_at"`
	RenewedAt string `json:"renewed_at"`
	// LeaseS is how long a lease lasts after a renewal (serve --node-lease).
	LeaseS float64 `json:"lease_s"`
}

// nodeLease is the lease time serve recorded (serve --node-lease), 15 s
// when none did.
func nodeLease(ctx context.Context, meta store.Meta) time.Duration {
	if v, ok, _ := meta.Meta(ctx, "node_lease"); ok {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return 15 * time.Second
}

// nodeViews lists the nodes of the database with their state now.
func nodeViews(ctx context.Context, db interface {
	store.Nodes
	store.Meta
}) ([]nodeView, error) {
	nodes, err := db.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	lease := nodeLease(ctx, db)
	now := time.Now()
	out := []nodeView{}
	for _, n := range nodes {
		st := "up"
		if now.Sub(n.RenewedAt) >= lease {
			st = "down"
		}
		out = append(out, nodeView{Name: n.Name, Address: n.Address, State: st,
			StartedAt: n.StartedAt.UTC().Format(time.RFC3339), RenewedAt: n.RenewedAt.UTC().Format(time.RFC3339),
			LeaseS: lease.Seconds()})
	}
	return out, nil
}

// printNodes writes the nodes as a table (nothing when there are none).
func printNodes(w io.Writer, nodes []nodeView) error {
	if len(nodes) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE\tLEASE RENEWED")
	for _, n := range nodes {
		renewed, _ := time.Parse(time.RFC3339, n.RenewedAt)
		state := n.State
		if state == "down" {
			state = "DOWN (lease ran out)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s ago)\n", n.Name, n.Address, state, localTime(renewed),
			ago(time.Since(renewed)))
	}
	return tw.Flush()
}

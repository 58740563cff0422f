package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/view"
)

// nodeView is one node sharing the database, in `status` and `profile
// show` (JSON field "nodes").
type nodeView = view.Node

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

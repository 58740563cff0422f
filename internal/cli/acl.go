package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/security"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/view"
)

const aclUsage = `Usage: switchboard acl COMMAND [ARGS] [--json]

Access control lists, like FusionPBX's access controls: a name, a default
action (allow or deny) and ordered allow/deny nodes (IPv4 or IPv6 CIDRs).
The most specific node matching an address decides; when none matches, the
default does. Apply a list with
  switchboard profile set internal --register-acl NAME   (who may register)
  switchboard profile set internal --inbound-acl NAME    (who may call)
  switchboard profile set internal --trusted-acl NAME    (no rate limit, no bans)
  switchboard ext set 2002 --acl NAME                    (where 2002 may be)
Changes apply to a running server at once.

Commands:
  list                      every list, its default and where it is used
  show NAME                 one list's nodes in order
  add NAME [--default deny|allow]
  set NAME --default deny|allow
  allow NAME CIDR...        add allow nodes (e.g. 192.168.1.0/24, 2001:db8::/32)
  deny NAME CIDR...         add deny nodes (e.g. 192.168.1.66/32)
  rm NAME [CIDR...]         remove a list (when unused) or some of its nodes
  test NAME IP              which node decides for an address

Example:
  switchboard acl add office --default deny
  switchboard acl allow office 192.168.1.0/24
  switchboard acl deny office 192.168.1.66/32`

// aclNodeView is the JSON shape of one node.
type (
	aclNodeView = view.ACLNode
	aclView     = view.ACL
)

func action(allow bool) string { return view.Action(allow) }

func viewACL(l acl.List, usedBy []string) aclView { return view.ACLOf(l, usedBy) }

// parseDefault reads --default.
func parseDefault(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "allow":
		return true, nil
	case "deny":
		return false, nil
	}
	return false, usagef("--default %q: use allow or deny", s)
}

// checkACLName refuses invalid list names with the rule.
func checkACLName(name string) error {
	if err := acl.ValidName(name); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "acl: "))
	}
	return nil
}

// checkACLRef fails with a clear message when name ("" = none) is not an
// existing list. Commands that refer to a list (profile set, ext set) use it.
func checkACLRef(ctx context.Context, db storeopen.Backend, flagName, name string) error {
	if name == "" {
		return nil
	}
	if err := acl.ValidName(name); err != nil {
		return usagef("%s %q: %s", flagName, name, strings.TrimPrefix(err.Error(), "acl: "))
	}
	ok, err := security.NewStore(db).HasACL(ctx, name)
	if err == nil && !ok {
		return usagef("%s %s: there is no acl %s: list them with `switchboard acl list`, or create it with `switchboard acl add %s --default deny`",
			flagName, name, name, name)
	}
	return err
}

// unknownACL is the error for commands on a list that does not exist.
func unknownACL(name string) error {
	return usagef("there is no acl %s: list them with `switchboard acl list`, or create it with `switchboard acl add %s --default deny`", name, name)
}

// ACL runs `switchboard acl ...`.
func ACL(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("acl", flag.ContinueOnError)
	data := fs.String("data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	dbURL := dbFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	def := fs.String("default", "", "default action of the list: allow or deny (acl add, acl set)")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) == 0) {
		helpText(env.Stdout, fs, aclUsage)
		return nil
	}
	if err != nil {
		return err
	}
	cmd, err := subcommand("acl", pos[0], "list", "show", "add", "set", "allow", "deny", "rm", "test")
	if err != nil {
		return err
	}
	rest := pos[1:]
	if *def != "" && cmd != "add" && cmd != "set" {
		return usagef("--default applies to `acl add` and `acl set` only")
	}
	db, err := openFor(ctx, env, *data, *dbURL, cmd != "list" && cmd != "show" && cmd != "test")
	if err != nil {
		return err
	}
	defer db.Close()
	st := security.NewStore(db)
	switch cmd {
	case "list":
		if len(rest) > 0 {
			return usagef("`switchboard acl list` takes no arguments; see one list with `switchboard acl show NAME`")
		}
		return aclList(ctx, env, st, *asJSON)
	case "show":
		if len(rest) != 1 {
			return usagef("usage: switchboard acl show NAME, e.g. switchboard acl show office")
		}
		return aclShow(ctx, env, st, rest[0], *asJSON)
	case "add":
		if len(rest) != 1 {
			return usagef("usage: switchboard acl add NAME [--default deny|allow], e.g. switchboard acl add office --default deny")
		}
		name := rest[0]
		if err := checkACLName(name); err != nil {
			return err
		}
		allow := false
		if *def != "" {
			if allow, err = parseDefault(*def); err != nil {
				return err
			}
		}
		if err := st.AddACL(ctx, name, allow); errors.Is(err, security.ErrACLExists) {
			return usagef("acl %s already exists: see it with `switchboard acl show %s`, change its default with `switchboard acl set %s --default allow|deny`", name, name, name)
		} else if err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.ACLChanged, "", fmt.Sprintf("acl %s: added (default %s)", name, action(allow)))
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return aclShow(ctx, env, st, name, true)
		}
		fmt.Fprintf(env.Stdout, "added acl %s (default %s); add nodes with `switchboard acl allow %s CIDR`\n", name, action(allow), name)
		return nil
	case "set":
		if len(rest) != 1 || *def == "" {
			return usagef("usage: switchboard acl set NAME --default deny|allow")
		}
		allow, err := parseDefault(*def)
		if err != nil {
			return err
		}
		if err := st.SetDefault(ctx, rest[0], allow); errors.Is(err, security.ErrNoACL) {
			return unknownACL(rest[0])
		} else if err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.ACLChanged, "", fmt.Sprintf("acl %s: default %s", rest[0], action(allow)))
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return aclShow(ctx, env, st, rest[0], true)
		}
		fmt.Fprintf(env.Stdout, "acl %s: default %s\n", rest[0], action(allow))
		return nil
	case "allow", "deny":
		if len(rest) < 2 {
			return usagef("usage: switchboard acl %s NAME CIDR..., e.g. switchboard acl %s office 192.168.1.0/24", cmd, cmd)
		}
		name := rest[0]
		var nodes []acl.Node
		for _, c := range rest[1:] {
			n, err := acl.ParseNode(cmd == "allow", c)
			if err != nil {
				return usagef("%s (give an address or CIDR such as 192.168.1.0/24 or 2001:db8::/32)", strings.TrimPrefix(err.Error(), "acl: "))
			}
			nodes = append(nodes, n)
		}
		if _, err := st.ACL(ctx, name); errors.Is(err, security.ErrNoACL) {
			return unknownACL(name)
		} else if err != nil {
			return err
		}
		var msgs, changed []string
		for _, n := range nodes {
			added, err := st.AddNode(ctx, name, n)
			if err != nil {
				return err
			}
			changed = append(changed, n.String())
			switch {
			case added:
				msgs = append(msgs, fmt.Sprintf("acl %s: %s", name, n))
			default:
				msgs = append(msgs, fmt.Sprintf("acl %s: %s (node already present; its action is now %s)", name, n, action(n.Allow)))
			}
		}
		journalAdmin(ctx, env, db, cause.ACLChanged, "", fmt.Sprintf("acl %s: %s", name, strings.Join(changed, ", ")))
		syncServer(ctx, env, *data, db)
		if *asJSON {
			return aclShow(ctx, env, st, name, true)
		}
		fmt.Fprintln(env.Stdout, strings.Join(msgs, "\n"))
		return nil
	case "rm":
		if len(rest) < 1 {
			return usagef("usage: switchboard acl rm NAME (the whole list) or switchboard acl rm NAME CIDR... (some nodes)")
		}
		name := rest[0]
		if _, err := st.ACL(ctx, name); errors.Is(err, security.ErrNoACL) {
			return unknownACL(name)
		} else if err != nil {
			return err
		}
		if len(rest) > 1 {
			for _, c := range rest[1:] {
				n, err := acl.ParseNode(true, c)
				if err != nil {
					return usagef("%s (give the node's CIDR as `switchboard acl show %s` lists it)", strings.TrimPrefix(err.Error(), "acl: "), name)
				}
				if err := st.RemoveNode(ctx, name, n.Prefix); errors.Is(err, security.ErrNoNode) {
					return usagef("acl %s has no node %s: see its nodes with `switchboard acl show %s`", name, n.Prefix, name)
				} else if err != nil {
					return err
				}
			}
			journalAdmin(ctx, env, db, cause.ACLChanged, "", fmt.Sprintf("acl %s: removed %s", name, strings.Join(rest[1:], ", ")))
			syncServer(ctx, env, *data, db)
			fmt.Fprintf(env.Stdout, "acl %s: removed %s\n", name, strings.Join(rest[1:], ", "))
			return nil
		}
		users, err := st.UsedBy(ctx, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return usagef("acl %s is in use by %s: point those elsewhere first (e.g. `switchboard profile set internal --register-acl \"\"`, `switchboard ext set 2002 --acl \"\"`)",
				name, strings.Join(users, ", "))
		}
		if err := st.RemoveACL(ctx, name); err != nil {
			return err
		}
		journalAdmin(ctx, env, db, cause.ACLChanged, "", fmt.Sprintf("acl %s: removed (the whole list)", name))
		syncServer(ctx, env, *data, db)
		fmt.Fprintf(env.Stdout, "removed acl %s\n", name)
		return nil
	case "test":
		if len(rest) != 2 {
			return usagef("usage: switchboard acl test NAME IP, e.g. switchboard acl test office 192.168.1.66")
		}
		l, err := st.ACL(ctx, rest[0])
		if errors.Is(err, security.ErrNoACL) {
			return unknownACL(rest[0])
		} else if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(strings.TrimSpace(rest[1]))
		if err != nil {
			return usagef("%q is not an IP address (e.g. 192.168.1.66 or 2001:db8::1)", rest[1])
		}
		allowed, by := l.Decide(ip)
		type testView struct {
			ACL      string `json:"acl"`
			IP       string `json:"ip"`
			Allowed  bool   `json:"allowed"`
			Position int    `json:"position"` // 0: the default decided
			Node     string `json:"node"`
		}
		v := testView{ACL: l.Name, IP: ip.Unmap().String(), Allowed: allowed, Node: "default " + action(l.DefaultAllow)}
		for i := range l.Nodes {
			if &l.Nodes[i] == by {
				v.Position, v.Node = i+1, by.String()
			}
		}
		if *asJSON {
			return writeJSON(env.Stdout, v)
		}
		how := "by its default (" + action(l.DefaultAllow) + ")"
		if v.Position > 0 {
			how = "by node " + strconv.Itoa(v.Position) + " (" + v.Node + ")"
		}
		fmt.Fprintf(env.Stdout, "%s is %s by acl %s, %s\n", v.IP, map[bool]string{true: "allowed", false: "denied"}[allowed], l.Name, how)
		return nil
	}
	return usagef("unknown command `acl %s`: use list, show, add, set, allow, deny, rm or test (see switchboard acl --help)", cmd)
}

func aclList(ctx context.Context, env Env, st *security.Store, asJSON bool) error {
	lists, err := st.ACLs(ctx)
	if err != nil {
		return err
	}
	vs := []aclView{}
	for _, l := range lists {
		users, err := st.UsedBy(ctx, l.Name)
		if err != nil {
			return err
		}
		vs = append(vs, viewACL(l, users))
	}
	if asJSON {
		return writeJSON(env.Stdout, vs)
	}
	tw := table(env.Stdout)
	fmt.Fprintln(tw, "NAME\tDEFAULT\tNODES\tUSED BY")
	for _, v := range vs {
		used := "-"
		if len(v.UsedBy) > 0 {
			used = strings.Join(v.UsedBy, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", v.Name, v.Default, len(v.Nodes), used)
	}
	return tw.Flush()
}

func aclShow(ctx context.Context, env Env, st *security.Store, name string, asJSON bool) error {
	l, err := st.ACL(ctx, name)
	if errors.Is(err, security.ErrNoACL) {
		return unknownACL(name)
	} else if err != nil {
		return err
	}
	users, err := st.UsedBy(ctx, name)
	if err != nil {
		return err
	}
	v := viewACL(l, users)
	if asJSON {
		return writeJSON(env.Stdout, v)
	}
	tw := table(env.Stdout)
	used := "-"
	if len(v.UsedBy) > 0 {
		used = strings.Join(v.UsedBy, ", ")
	}
	fmt.Fprintf(tw, "ACL\t%s\nDefault\t%s\nUsed by\t%s\n", v.Name, v.Default, used)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout)
	if len(v.Nodes) == 0 {
		fmt.Fprintf(env.Stdout, "no nodes: every address gets the default (%s); add some with `switchboard acl allow %s CIDR`\n", v.Default, name)
		return nil
	}
	tw = table(env.Stdout)
	fmt.Fprintln(tw, "POS\tACTION\tCIDR")
	for _, n := range v.Nodes {
		fmt.Fprintf(tw, "%d\t%s\t%s\n", n.Position, n.Action, n.CIDR)
	}
	return tw.Flush()
}

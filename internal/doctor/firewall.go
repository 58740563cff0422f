package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Port is one SIP port of the profile: proto "udp" or "tcp".
type Port struct {
	Proto string
	Num   int
}

func (p Port) String() string { return p.Proto + " " + strconv.Itoa(p.Num) }

// ReadFirewall asks the host firewall tools that are installed (nft,
// iptables-save, ufw) whether they drop the given ports, each bounded by a
// 2 s timeout. It never fails: what it could not read lands in Errors.
// Reading rulesets usually needs root; the error then says so.
func ReadFirewall(ctx context.Context, ports []Port) Firewall {
	var fw Firewall
	tools := []struct {
		name, bin string
		args      []string
		parse     func(string, []Port) []string
	}{
		{"nft", "nft", []string{"list", "ruleset"}, ParseNft},
		{"iptables", "iptables-save", nil, ParseIptables},
		{"ufw", "ufw", []string{"status", "verbose"}, ParseUfw},
	}
	var missing []string
	for _, t := range tools {
		path, err := exec.LookPath(t.bin)
		if err != nil {
			missing = append(missing, t.bin)
			continue
		}
		out, err := runTool(ctx, path, t.args...)
		if err != nil {
			fw.Errors = append(fw.Errors, fmt.Sprintf("%s: %v", t.bin, err))
			continue
		}
		fw.Checked = append(fw.Checked, t.name)
		for _, b := range t.parse(out, ports) {
			fw.Blocks = append(fw.Blocks, t.name+": "+b)
		}
	}
	if len(missing) > 0 && len(fw.Checked) == 0 {
		fw.Errors = append(fw.Errors, strings.Join(missing, ", ")+" not installed")
	}
	return fw
}

func runTool(ctx context.Context, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(firstLine(errb.String()))
		if msg == "" {
			msg = err.Error()
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg = "timed out after 2 s"
		}
		if strings.Contains(strings.ToLower(msg), "permitted") || strings.Contains(strings.ToLower(msg), "permission") ||
			strings.Contains(msg, "root") {
			msg += " (run the doctor as root to check the firewall)"
		}
		return "", errors.New(msg)
	}
	return out.String(), nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// portSpec parses a port list as firewalls write it: "5060", "sip",
// "5060-5091", "5060:5091", "{ 5060, 5061 }", "5060,5061".
func portSpecMatches(spec string, port int) bool {
	spec = strings.Trim(strings.TrimSpace(spec), "{}")
	for _, part := range strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || r == ' ' }) {
		part = strings.TrimSpace(part)
		if part == "sip" && port == 5060 || part == "sips" && port == 5061 {
			return true
		}
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			lo, hi, isRange = strings.Cut(part, ":")
		}
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		if a <= port && port <= b {
			return true
		}
	}
	return false
}

var (
	nftDport  = regexp.MustCompile(`\b(udp|tcp|th)\s+dport\s+(\{[^}]*\}|\S+)`)
	nftChain  = regexp.MustCompile(`^\s*chain\s+(\S+)\s*\{`)
	nftHook   = regexp.MustCompile(`hook\s+(\w+)`)
	nftPolicy = regexp.MustCompile(`policy\s+(\w+)`)
	nftTable  = regexp.MustCompile(`^\s*table\s+(\S+)\s+(\S+)\s*\{`)
)

// ParseNft reads `nft list ruleset` and returns the rules (and input
// policies) that drop or reject one of ports for every source. Rules
// limited to a source address or to loopback are ignored: they do not stop
// phones in general.
func ParseNft(ruleset string, ports []Port) []string {
	type chain struct {
		name, table, hook, policy string
		accepts                   map[Port]bool
		rules                     []string
	}
	var out []string
	var cur *chain
	table := ""
	finish := func() {
		if cur == nil {
			return
		}
		if cur.hook == "input" && (cur.policy == "drop" || cur.policy == "reject") {
			for _, p := range ports {
				if !cur.accepts[p] {
					out = append(out, fmt.Sprintf("chain %s (table %s) has policy %s and no rule accepts %s", cur.name, cur.table, cur.policy, p))
				}
			}
		}
		if cur.hook == "" || cur.hook == "input" {
			out = append(out, cur.rules...)
		}
		cur = nil
	}
	for _, line := range strings.Split(ruleset, "\n") {
		if m := nftTable.FindStringSubmatch(line); m != nil {
			finish()
			table = m[1] + " " + m[2]
			continue
		}
		if m := nftChain.FindStringSubmatch(line); m != nil {
			finish()
			cur = &chain{name: m[1], table: table, accepts: map[Port]bool{}}
			continue
		}
		if cur == nil {
			continue
		}
		t := strings.TrimSpace(line)
		if t == "}" {
			finish()
			continue
		}
		if strings.HasPrefix(t, "type ") {
			if m := nftHook.FindStringSubmatch(t); m != nil {
				cur.hook = m[1]
			}
			if m := nftPolicy.FindStringSubmatch(t); m != nil {
				cur.policy = m[1]
			}
			continue
		}
		if strings.Contains(t, "saddr") || strings.Contains(t, `iif "lo"`) || strings.Contains(t, "iifname \"lo\"") {
			continue
		}
		words := strings.Fields(t)
		verdict := ""
		for _, w := range words {
			switch w {
			case "accept", "drop", "reject":
				verdict = w
			}
		}
		if verdict == "" {
			continue
		}
		ms := nftDport.FindAllStringSubmatch(t, -1)
		if len(ms) == 0 {
			if verdict != "accept" && bareVerdict(words) {
				// A bare "drop" / "counter drop": everything that got here.
				cur.rules = append(cur.rules, fmt.Sprintf("chain %s (table %s): %q drops all remaining traffic", cur.name, cur.table, t))
			}
			continue
		}
		for _, p := range ports {
			for _, m := range ms {
				if (m[1] == p.Proto || m[1] == "th") && portSpecMatches(m[2], p.Num) {
					if verdict == "accept" {
						cur.accepts[p] = true
					} else {
						cur.rules = append(cur.rules, fmt.Sprintf("chain %s (table %s): %q", cur.name, cur.table, t))
					}
				}
			}
		}
	}
	finish()
	return dedupe(out)
}

// bareVerdict reports whether an nft rule matches everything: nothing but
// counters, logging and the verdict.
func bareVerdict(words []string) bool {
	for i := 0; i < len(words); i++ {
		switch w := words[i]; w {
		case "counter", "packets", "bytes", "log", "accept", "drop", "reject":
		case "prefix":
			i++
		default:
			if _, err := strconv.Atoi(w); err != nil {
				return false
			}
		}
	}
	return true
}

var iptDport = regexp.MustCompile(`--dports?\s+(\S+)`)

// ParseIptables reads `iptables-save` and returns the rules of INPUT (and
// user chains) that drop or reject one of ports for every source, and an
// INPUT policy DROP without a rule accepting the port.
func ParseIptables(save string, ports []Port) []string {
	var out []string
	policy := map[string]string{}
	accepts := map[Port]bool{}
	for _, line := range strings.Split(save, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, ":") {
			f := strings.Fields(t[1:])
			if len(f) >= 2 {
				policy[f[0]] = f[1]
			}
			continue
		}
		if !strings.HasPrefix(t, "-A ") {
			continue
		}
		f := strings.Fields(t)
		chainName := f[1]
		if chainName == "OUTPUT" || chainName == "FORWARD" || chainName == "POSTROUTING" || chainName == "PREROUTING" {
			continue
		}
		if hasFlag(f, "-s") || hasFlag(f, "--source") || hasFlag(f, "-i") && flagVal(f, "-i") == "lo" {
			continue
		}
		target := flagVal(f, "-j")
		proto := flagVal(f, "-p")
		m := iptDport.FindStringSubmatch(t)
		if m == nil {
			continue
		}
		for _, p := range ports {
			if (proto == p.Proto || proto == "" || proto == "all") && portSpecMatches(m[1], p.Num) {
				switch target {
				case "ACCEPT":
					accepts[p] = true
				case "DROP", "REJECT":
					out = append(out, fmt.Sprintf("%q", t))
				}
			}
		}
	}
	if pol := policy["INPUT"]; pol == "DROP" || pol == "REJECT" {
		for _, p := range ports {
			if !accepts[p] {
				out = append(out, fmt.Sprintf("INPUT policy %s and no rule accepts %s", pol, p))
			}
		}
	}
	return dedupe(out)
}

func hasFlag(f []string, name string) bool {
	for _, x := range f {
		if x == name {
			return true
		}
	}
	return false
}

func flagVal(f []string, name string) string {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == name {
			return f[i+1]
		}
	}
	return ""
}

// ParseUfw reads `ufw status verbose` and returns the rules that deny one
// of ports, and a default "deny (incoming)" without a rule allowing it.
func ParseUfw(status string, ports []Port) []string {
	if !strings.Contains(status, "Status: active") {
		return nil
	}
	var out []string
	allows := map[Port]bool{}
	defaultDeny := false
	for _, line := range strings.Split(status, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "Default:") {
			defaultDeny = strings.Contains(t, "deny (incoming)") || strings.Contains(t, "reject (incoming)")
			continue
		}
		f := strings.Fields(t)
		if len(f) < 3 {
			continue
		}
		to, action := f[0], strings.ToUpper(f[1])
		if len(f) > 3 && (f[1] == "(v6)") {
			action = strings.ToUpper(f[2])
		}
		spec, proto, _ := strings.Cut(to, "/")
		for _, p := range ports {
			if (proto == "" || proto == p.Proto) && portSpecMatches(spec, p.Num) {
				switch {
				case strings.HasPrefix(action, "ALLOW"):
					allows[p] = true
				case strings.HasPrefix(action, "DENY") || strings.HasPrefix(action, "REJECT"):
					if strings.Contains(t, "Anywhere") {
						out = append(out, fmt.Sprintf("%q", t))
					}
				}
			}
		}
	}
	if defaultDeny {
		for _, p := range ports {
			if !allows[p] {
				out = append(out, fmt.Sprintf("default deny (incoming) and no rule allows %s", p))
			}
		}
	}
	return dedupe(out)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

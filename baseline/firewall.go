package baseline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// A hook's default policy is judged across every rule set read, as the
// kernel applies them: a packet no rule decides is dropped if any base
// chain on that hook drops it, so the effective policy is drop when any
// filter chain for the family and hook has policy drop, or has a rule that
// drops or rejects everything (an unconditional "-j DROP"/"drop"). No
// filter chain at all means everything is accepted. iptables-save covers
// IPv4, ip6tables-save IPv6, and nft tables of family ip, ip6 or inet their
// families.

type chainPolicy struct {
	Family string // ipv4, ipv6
	Hook   string // input, forward, output
	Chain  string
	Policy string // drop, accept
	Source string
	// CatchAll locates a final rule that drops everything, if any.
	CatchAll string
}

func (p chainPolicy) effective() string {
	if p.CatchAll != "" {
		return "drop"
	}
	return p.Policy
}

func (p chainPolicy) describe() string {
	s := fmt.Sprintf("chain %s policy %s", p.Chain, p.Policy)
	if p.CatchAll != "" {
		s += ", then a rule drops everything left (" + p.CatchAll + ")"
	}
	return s
}

// splitRuleTokens splits an iptables-save rule, keeping double-quoted
// strings whole.
func splitRuleTokens(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (c == ' ' || c == '\t'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// iptablesDropsEverything reports whether rule tokens (after "-A CHAIN") match every
// packet and drop or reject it. Comments are ignored.
func iptablesDropsEverything(toks []string) bool {
	var rest []string
	for i := 0; i < len(toks); i++ {
		if toks[i] == "-m" && i+1 < len(toks) && toks[i+1] == "comment" {
			i++
			continue
		}
		if toks[i] == "--comment" && i+1 < len(toks) {
			i++
			continue
		}
		rest = append(rest, toks[i])
	}
	if len(rest) < 2 || rest[0] != "-j" {
		return false
	}
	switch rest[1] {
	case "DROP":
		return len(rest) == 2
	case "REJECT":
		return len(rest) == 2 || (len(rest) == 4 && rest[2] == "--reject-with")
	}
	return false
}

func parseIPTablesSave(text, source, family string) []chainPolicy {
	var out []chainPolicy
	index := map[string]int{}
	table := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' { // -c counters
			if _, after, ok := strings.Cut(line, "] "); ok {
				line = after
			}
		}
		switch {
		case line[0] == '*':
			table = line[1:]
		case table != "filter":
		case line[0] == ':':
			f := strings.Fields(line[1:])
			if len(f) < 2 || f[1] == "-" {
				continue
			}
			hook := strings.ToLower(f[0])
			if hook != "input" && hook != "forward" && hook != "output" {
				continue
			}
			index[f[0]] = len(out)
			out = append(out, chainPolicy{Family: family, Hook: hook, Chain: f[0], Policy: strings.ToLower(f[1]), Source: fmt.Sprintf("%s:%d", source, i+1)})
		case strings.HasPrefix(line, "-A "):
			toks := splitRuleTokens(line)
			if len(toks) < 2 {
				continue
			}
			j, ok := index[toks[1]]
			if !ok {
				continue
			}
			// Rules after an unconditional drop are never reached, so the
			// chain drops whatever earlier rules did not decide.
			if out[j].CatchAll == "" && iptablesDropsEverything(toks[2:]) {
				out[j].CatchAll = fmt.Sprintf("%s:%d", source, i+1)
			}
		}
	}
	return out
}

// nftDropsEverything reports whether an nft rule line matches every packet
// and drops or rejects it ("drop", "counter packets 0 bytes 0 drop",
// "reject with icmpx type admin-prohibited").
func nftDropsEverything(line string) bool {
	f := strings.Fields(line)
	var rest []string
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case "counter":
			if i+4 < len(f) && f[i+1] == "packets" && f[i+3] == "bytes" {
				i += 4
			}
			continue
		case "comment":
			// Comments are one quoted token in nft output; skip to its end.
			i++
			for i < len(f) && !strings.HasSuffix(f[i], `"`) {
				i++
			}
			continue
		}
		rest = append(rest, f[i])
	}
	if len(rest) == 1 && rest[0] == "drop" {
		return true
	}
	return len(rest) >= 1 && rest[0] == "reject"
}

func parseNFT(text, source string) []chainPolicy {
	type block struct {
		kind    string // table, chain, other
		family  string
		name    string
		first   int // index into out of a base chain's entries, -1 otherwise
		entries int
	}
	var out []chainPolicy
	var stack []block
	families := func(f string) []string {
		switch f {
		case "ip":
			return []string{"ipv4"}
		case "ip6":
			return []string{"ipv6"}
		case "inet":
			return []string{"ipv4", "ipv6"}
		}
		return nil
	}
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		opens, closes := strings.Count(line, "{"), strings.Count(line, "}")
		f := strings.Fields(line)
		top := len(stack) - 1
		switch {
		case opens > 0 && f[0] == "table" && len(f) >= 3:
			stack = append(stack, block{kind: "table", family: f[1], first: -1})
			opens--
		case opens > 0 && f[0] == "chain" && len(f) >= 2 && top >= 0 && stack[top].kind == "table":
			stack = append(stack, block{kind: "chain", family: stack[top].family, name: f[1], first: -1})
			opens--
		case top >= 0 && stack[top].kind == "chain" && strings.HasPrefix(line, "type "):
			b := &stack[top]
			typ, hook, policy := "", "", "accept"
			for _, stmt := range strings.Split(line, ";") {
				sf := strings.Fields(stmt)
				for k := 0; k+1 < len(sf); k++ {
					switch sf[k] {
					case "type":
						typ = sf[k+1]
					case "hook":
						hook = sf[k+1]
					case "policy":
						policy = sf[k+1]
					}
				}
			}
			if typ != "filter" || (hook != "input" && hook != "forward" && hook != "output") {
				continue
			}
			b.first = len(out)
			for _, fam := range families(b.family) {
				out = append(out, chainPolicy{Family: fam, Hook: hook, Chain: b.name, Policy: policy, Source: fmt.Sprintf("%s:%d", source, i+1)})
				b.entries++
			}
			continue
		case top >= 0 && stack[top].kind == "chain" && stack[top].first >= 0 && nftDropsEverything(line):
			// Rules after an unconditional drop are never reached, so the
			// chain drops whatever earlier rules did not decide.
			b := stack[top]
			for j := b.first; j < b.first+b.entries; j++ {
				if out[j].CatchAll == "" {
					out[j].CatchAll = fmt.Sprintf("%s:%d", source, i+1)
				}
			}
		}
		for range opens {
			stack = append(stack, block{kind: "other", first: -1})
		}
		for range closes {
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	return out
}

func (ev *evaluation) readRulesets(ctx context.Context) ([]Ruleset, error) {
	return ev.rulesets.get(func() ([]Ruleset, error) {
		if ev.env.Firewall == nil {
			return nil, fmt.Errorf("no firewall reader configured for root %s", ev.env.Root)
		}
		return ev.env.Firewall.Rulesets(ctx)
	})
}

func (ev *evaluation) checkFirewallPolicies(ctx context.Context, c *Check) Result {
	sets, err := ev.readRulesets(ctx)
	if errors.Is(err, ErrOffline) {
		return c.result(StatusSkip, "not applicable offline: default policies are read from the loaded firewall of a running system (boot-time rule files are not interpreted)")
	}
	if err != nil {
		return c.result(StatusError, err.Error())
	}
	var chains []chainPolicy
	covered := map[string][]string{}
	for _, rs := range sets {
		src := rs.Source
		if src == "" {
			src = string(rs.Format)
		}
		switch rs.Format {
		case FormatIPTables:
			chains = append(chains, parseIPTablesSave(rs.Text, src, "ipv4")...)
			covered["ipv4"] = append(covered["ipv4"], src)
		case FormatIP6Tables:
			chains = append(chains, parseIPTablesSave(rs.Text, src, "ipv6")...)
			covered["ipv6"] = append(covered["ipv6"], src)
		case FormatNFT:
			chains = append(chains, parseNFT(rs.Text, src)...)
			covered["ipv4"] = append(covered["ipv4"], src)
			covered["ipv6"] = append(covered["ipv6"], src)
		}
	}
	families := c.Families
	if len(families) == 0 {
		families = []string{"ipv4", "ipv6"}
	}
	hooks := slices.Sorted(maps.Keys(c.DefaultPolicies))
	r := c.result(StatusPass, "")
	var problems []string
	for _, fam := range families {
		for _, hook := range hooks {
			want := c.DefaultPolicies[hook]
			expected := fmt.Sprintf("%s %s policy %s", fam, hook, want)
			if len(covered[fam]) == 0 {
				r.Status = worse(r.Status, StatusError)
				r.Evidence = append(r.Evidence, Evidence{Source: "firewall reader", Value: "no " + fam + " rule set read", Expected: expected})
				problems = append(problems, fmt.Sprintf("no %s rule set could be read", fam))
				continue
			}
			effective := "accept"
			n := 0
			for _, ch := range chains {
				if ch.Family != fam || ch.Hook != hook {
					continue
				}
				n++
				r.Evidence = append(r.Evidence, Evidence{Source: ch.Source, Value: ch.describe(), Expected: expected})
				if ch.effective() == "drop" {
					effective = "drop"
				}
			}
			if n == 0 {
				r.Evidence = append(r.Evidence, Evidence{Source: strings.Join(covered[fam], ", "), Value: "no filter chain on this hook: everything is accepted", Expected: expected})
			}
			if effective != want {
				r.Status = worse(r.Status, StatusFail)
				problems = append(problems, fmt.Sprintf("%s %s effectively %ss unmatched packets, want %s", fam, hook, effective, want))
			}
		}
	}
	if len(problems) > 0 {
		r.Message = strings.Join(problems, "; ")
	} else {
		r.Message = "default policies are as required"
	}
	return r
}

func (l ListenerRule) describe() string {
	ports := make([]string, len(l.Ports))
	for i, p := range l.Ports {
		ports[i] = strconv.Itoa(p)
	}
	addrs := l.Addresses
	if len(addrs) == 0 {
		addrs = []string{"any"}
	}
	return fmt.Sprintf("%s %s on %s", l.Proto, strings.Join(ports, ","), strings.Join(addrs, ","))
}

func (l ListenerRule) allows(ln Listener, mgmt []netip.Prefix) bool {
	if l.Proto != ln.Proto || !slices.Contains(l.Ports, int(ln.Addr.Port())) {
		return false
	}
	addrs := l.Addresses
	if len(addrs) == 0 {
		addrs = []string{"any"}
	}
	a := ln.Addr.Addr().Unmap()
	for _, spec := range addrs {
		switch spec {
		case "any":
			return true
		case "management":
			if a.IsUnspecified() {
				continue
			}
			for _, p := range mgmt {
				if p.Contains(a) {
					return true
				}
			}
		default:
			if p, err := parsePrefixOrAddr(spec); err == nil && !a.IsUnspecified() && p.Contains(a) {
				return true
			}
		}
	}
	return false
}

func (ev *evaluation) checkListeners(ctx context.Context, c *Check) Result {
	ls, err := ev.listeners.get(func() ([]Listener, error) { return ev.env.Runtime.Listeners(ctx) })
	if errors.Is(err, ErrOffline) {
		return c.result(StatusSkip, "not applicable offline: listening sockets exist only on a running system")
	}
	if err != nil {
		return c.result(StatusError, err.Error())
	}
	slices.SortStableFunc(ls, func(a, b Listener) int {
		if a.Proto != b.Proto {
			return strings.Compare(a.Proto, b.Proto)
		}
		return a.Addr.Compare(b.Addr)
	})
	r := c.result(StatusPass, "")
	var bad []string
	seen := map[string]bool{}
	for _, ln := range ls {
		name := fmt.Sprintf("%s %s", ln.Proto, netip.AddrPortFrom(ln.Addr.Addr().Unmap(), ln.Addr.Port()))
		if seen[name] {
			continue
		}
		seen[name] = true
		if c.AllowLoopback && ln.Addr.Addr().Unmap().IsLoopback() {
			r.Evidence = append(r.Evidence, Evidence{Source: ln.Source, Value: name, Expected: "loopback only"})
			continue
		}
		var rule *ListenerRule
		for i := range c.AllowedListeners {
			if c.AllowedListeners[i].allows(ln, ev.env.ManagementNetworks) {
				rule = &c.AllowedListeners[i]
				break
			}
		}
		if rule != nil {
			r.Evidence = append(r.Evidence, Evidence{Source: ln.Source, Value: name, Expected: rule.describe()})
			continue
		}
		r.Evidence = append(r.Evidence, Evidence{Source: ln.Source, Value: name, Expected: "not allowed"})
		bad = append(bad, name)
	}
	if len(bad) > 0 {
		r.Status = StatusFail
		r.Message = "listening where the baseline does not allow it: " + strings.Join(bad, ", ")
		for _, l := range c.AllowedListeners {
			if slices.Contains(l.Addresses, "management") && len(ev.env.ManagementNetworks) == 0 {
				r.Message += " (no management networks are configured, so no address counts as management)"
				break
			}
		}
		return r
	}
	r.Message = fmt.Sprintf("%d listening sockets, all allowed", len(seen))
	return r
}

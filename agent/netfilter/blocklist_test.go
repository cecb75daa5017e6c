package netfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// blockBackend describes one Blocklist implementation to the conformance
// suite (see backend): how to build it, and how a person would tamper
// with it by hand.
type blockBackend struct {
	name  string
	names blocklistNames // which blocklist: the peers' or the IoC one
	tools []string
	// newBL is called on a thread inside the test's namespace.
	newBL func(t testing.TB, log *slog.Logger) Blocklist
	// Hand edits, run inside the namespace against the blocklist of
	// blockedSet().
	unhookOutput     func(t *testing.T, ns string) // output no longer dropped
	acceptAbove      func(t *testing.T, ns string) // an accept evaluated before the drops
	oneWay           func(t *testing.T, ns string) // 198.51.100.7 no longer dropped as destination
	elementRemoved   func(t *testing.T, ns string) // 2001:db8:66::/48 no longer blocked at all
	deleteEverything func(t *testing.T, ns string)
}

// blockedSet is the blocklist of the namespace conformance cases.
func blockedSet() []netip.Prefix {
	return mustPrefixes("198.51.100.7/32", "203.0.113.0/24", "2001:db8:66::/48", "fd00:18::a/128")
}

func runArgv(cmds ...[]string) func(t *testing.T, ns string) {
	return func(t *testing.T, ns string) {
		t.Helper()
		for _, argv := range cmds {
			if _, err := netlab.Run(t.Context(), ns, argv...); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// nftBlockBackend is the nftables backend of the blocklist n names.
func nftBlockBackend(n blocklistNames) blockBackend {
	nft := func(args ...string) []string { return append([]string{"nft"}, args...) }
	table := n.nftTable
	return blockBackend{
		name:  BackendNFTables,
		names: n,
		tools: []string{"nft", "iptables", "ip6tables", "iptables-save", "ip6tables-save"},
		newBL: func(t testing.TB, log *slog.Logger) Blocklist {
			return openForTest(t, log, func(log *slog.Logger) (*NFTBlocklist, error) { return newNFTBlocklist(n, log) })
		},
		unhookOutput: runArgv(nft("flush", "chain", "inet", table, "output")),
		acceptAbove:  runArgv(nft("insert", "rule", "inet", table, "prerouting", "ip", "saddr", "198.51.100.7", "accept")),
		oneWay: func(t *testing.T, ns string) {
			t.Helper()
			for _, chain := range []string{"prerouting", "output"} {
				h := nftRuleHandle(t, ns, table, chain, "ip daddr @"+nftBlock4)
				runArgv(nft("delete", "rule", "inet", table, chain, "handle", h))(t, ns)
			}
		},
		elementRemoved:   runArgv(nft("delete", "element", "inet", table, nftBlock6, "{", "2001:db8:66::/48", "}")),
		deleteEverything: runArgv(nft("delete", "table", "inet", table)),
	}
}

// nftRuleHandle finds the handle of the rule of a blocklist chain whose
// listing contains match.
func nftRuleHandle(t *testing.T, ns, table, chain, match string) string {
	t.Helper()
	out, err := netlab.Run(t.Context(), ns, "nft", "-a", "list", "chain", "inet", table, chain)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "# handle "); i >= 0 && strings.Contains(line, match) {
			return strings.TrimSpace(line[i+len("# handle "):])
		}
	}
	t.Fatalf("no rule %q in chain %s:\n%s", match, chain, out)
	return ""
}

// iptBlockBackend is the iptables backend of the blocklist n names.
func iptBlockBackend(n blocklistNames) blockBackend {
	raw := func(cmd string, args ...string) []string { return append([]string{cmd, "-t", "raw"}, args...) }
	chain := n.iptChain
	var everything [][]string
	for _, cmd := range []string{"iptables", "ip6tables"} {
		everything = append(everything,
			raw(cmd, "-D", "PREROUTING", "-j", chain), raw(cmd, "-D", "OUTPUT", "-j", chain),
			raw(cmd, "-F", chain), raw(cmd, "-X", chain))
	}
	return blockBackend{
		name:  BackendIPTables,
		names: n,
		tools: []string{"iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "nft"},
		newBL: func(t testing.TB, log *slog.Logger) Blocklist {
			return openForTest(t, log, func(log *slog.Logger) (*IPTablesBlocklist, error) { return newIPTablesBlocklist(n, log) })
		},
		unhookOutput: runArgv(raw("iptables", "-D", "OUTPUT", "-j", chain)),
		acceptAbove:  runArgv(raw("iptables", "-I", "PREROUTING", "1", "-s", "198.51.100.7", "-j", "ACCEPT")),
		oneWay:       runArgv(raw("iptables", "-D", chain, "-d", "198.51.100.7/32", "-j", "DROP")),
		elementRemoved: runArgv(
			raw("ip6tables", "-D", chain, "-s", "2001:db8:66::/48", "-j", "DROP"),
			raw("ip6tables", "-D", chain, "-d", "2001:db8:66::/48", "-j", "DROP")),
		deleteEverything: runArgv(everything...),
	}
}

// foreignBlockRules are other people's rules in every table the blocklist
// backends write to (and in filter), each accepting what the blocklist
// drops: they must survive every Set, and never let a blocked packet pass.
func foreignBlockRules(blocked4, blocked6 string) [][]string {
	var out [][]string
	for _, f := range []struct{ cmd, addr string }{{"iptables", blocked4}, {"ip6tables", blocked6}} {
		out = append(out,
			[]string{f.cmd, "-t", "raw", "-A", "PREROUTING", "-s", f.addr, "-j", "ACCEPT"},
			[]string{f.cmd, "-t", "raw", "-A", "OUTPUT", "-d", f.addr, "-j", "ACCEPT"},
			[]string{f.cmd, "-I", "INPUT", "1", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			[]string{f.cmd, "-I", "OUTPUT", "1", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			[]string{f.cmd, "-I", "FORWARD", "1", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			[]string{f.cmd, "-A", "INPUT", "-s", f.addr, "-j", "ACCEPT"},
		)
	}
	// An nftables table hooked even earlier than Warden's, accepting the
	// blocked addresses.
	out = append(out,
		[]string{"nft", "add", "table", "inet", "site"},
		[]string{"nft", "add", "chain", "inet", "site", "pre", "{", "type", "filter", "hook", "prerouting", "priority", "-400", ";", "}"},
		[]string{"nft", "add", "rule", "inet", "site", "pre", "ip", "saddr", blocked4, "accept"},
		[]string{"nft", "add", "rule", "inet", "site", "pre", "ip6", "saddr", blocked6, "accept"},
		[]string{"nft", "add", "chain", "inet", "site", "out", "{", "type", "filter", "hook", "output", "priority", "-400", ";", "}"},
		[]string{"nft", "add", "rule", "inet", "site", "out", "ip", "daddr", blocked4, "accept"},
		[]string{"nft", "add", "rule", "inet", "site", "out", "ip6", "daddr", blocked6, "accept"},
	)
	return out
}

// blEnv is one fresh namespace with one blocklist bound to it.
type blEnv struct {
	ns *netlab.Namespace
	bl Blocklist
}

func newBlockNamespace(t *testing.T, tools ...string) *netlab.Namespace {
	t.Helper()
	netlabtest.Skip(t, tools...)
	ns, err := netlab.NewNamespace(fmt.Sprintf("lxblk-%d", namespaceSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

func newBLEnv(t *testing.T, b blockBackend) blEnv {
	t.Helper()
	ns := newBlockNamespace(t, b.tools...)
	var bl Blocklist
	// Bound to the namespace of the building thread; any goroutine may
	// call it afterwards.
	if err := ns.Do(func() error { bl = b.newBL(t, testLogger(t)); return nil }); err != nil {
		t.Fatal(err)
	}
	return blEnv{ns: ns, bl: bl}
}

func mustSet(t *testing.T, bl Blocklist, ps []netip.Prefix, wantChanged bool) {
	t.Helper()
	changed, err := bl.Set(t.Context(), ps)
	if err != nil {
		t.Fatalf("Set(%v): %v", ps, err)
	}
	if changed != wantChanged {
		t.Fatalf("Set(%v) changed = %t, want %t", ps, changed, wantChanged)
	}
}

// requireBlocks fails unless the blocklist is enforced and holds exactly ps.
func requireBlocks(t *testing.T, bl Blocklist, ps []netip.Prefix) BlockState {
	t.Helper()
	st := mustObserve(t, bl)
	drift, err := st.Drift(ps)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Enforced || !st.Installed || len(st.Faults) > 0 || len(drift) > 0 {
		t.Fatalf("blocklist not exactly %v: drift=%q\n%+v", ps, drift, st)
	}
	return st
}

// handleDump is the namespace's whole nftables ruleset (iptables-nft's
// tables included) with rule handles and without counters: a rewrite of
// any rule, even an identical one, changes its handle.
func handleDump(t *testing.T, ns string) string {
	t.Helper()
	out, err := netlab.Run(t.Context(), ns, "nft", "-a", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return nftCounters.ReplaceAllString(string(out), "counter")
}

var (
	nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	// Tables with no rule left: iptables-nft creates table raw on first use
	// and leaves it, with empty built-in chains that do nothing, when the
	// last rule goes; iptables has no command to delete it.
	emptyIPTTable = regexp.MustCompile(`(?m)^\*\w+\n(?::[^\n]*\n)*COMMIT\n`)
	emptyNFTTable = regexp.MustCompile(`(?m)^table \S+ \S+ \{\n\}\n`)
)

// ruleDump is dumpRules without empty tables.
func ruleDump(t *testing.T, ns string) string {
	t.Helper()
	d := dumpRules(t, t.Context(), ns)
	return emptyNFTTable.ReplaceAllString(emptyIPTTable.ReplaceAllString(d, ""), "")
}

func TestNormalizeBlocklist(t *testing.T) {
	tests := map[string]struct {
		in      []netip.Prefix
		want    string
		errWant string
	}{
		"empty":                 {nil, "[]", ""},
		"host bits and dupes":   {mustPrefixes("198.51.100.7/24", "198.51.100.0/24", "fd00:18::a/64"), "[198.51.100.0/24 fd00:18::/64]", ""},
		"adjacent merged":       {mustPrefixes("10.0.0.128/25", "10.0.0.0/25"), "[10.0.0.0/24]", ""},
		"mapped becomes ipv4":   {mustPrefixes("::ffff:192.0.2.9/128"), "[192.0.2.9/32]", ""},
		"sorted ipv4 first":     {mustPrefixes("fd00::/16", "203.0.113.0/24", "10.0.0.0/8"), "[10.0.0.0/8 203.0.113.0/24 fd00::/16]", ""},
		"invalid":               {[]netip.Prefix{{}}, "", "not valid"},
		"everything ipv4":       {mustPrefixes("0.0.0.0/0"), "", "block everything"},
		"everything ipv6":       {mustPrefixes("10.0.0.0/8", "::/0"), "", "block everything"},
		"everything mapped":     {mustPrefixes("::ffff:0.0.0.0/96"), "", "block everything"},
		"loopback":              {mustPrefixes("127.0.0.1/32"), "", "loopback"},
		"wider than loopback":   {mustPrefixes("64.0.0.0/2"), "", "loopback"},
		"ipv6 loopback":         {mustPrefixes("::/127"), "", "loopback"},
		"ipv6 loopback exactly": {mustPrefixes("::1/128"), "", "loopback"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := NormalizeBlock(tc.in)
			if tc.errWant != "" {
				if !errors.Is(err, ErrInvalidBlock) || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("NormalizeBlock error = %v, want ErrInvalidBlock (and ErrInvalidSpec) mentioning %q", err, tc.errWant)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := sprint(got); s != tc.want {
				t.Errorf("NormalizeBlock = %s, want %s", s, tc.want)
			}
		})
	}
	if errors.Is(ErrInvalidSpec, ErrInvalidBlock) {
		t.Error("a refused quarantine spec must not read as a refused blocklist")
	}
}

func TestBlocklistStateDrift(t *testing.T) {
	want := mustPrefixes("198.51.100.7/32", "fd00:18::a/128")
	tests := map[string]struct {
		st    BlockState
		want  []netip.Prefix
		drift []string
	}{
		"exact":             {BlockState{Installed: true, Enforced: true, Prefixes: want}, want, nil},
		"absent, want none": {BlockState{}, nil, nil},
		"absent":            {BlockState{}, want, []string{"blocklist missing", "blocks [], want [198.51.100.7/32 fd00:18::a/128]"}},
		"present, want none": {BlockState{Installed: true, Enforced: true, Prefixes: want}, nil,
			[]string{"blocklist installed (blocking [198.51.100.7/32 fd00:18::a/128]), want none"}},
		"fault": {BlockState{Installed: true, Prefixes: want, Faults: []string{"ipv4: OUTPUT does not jump to WARDEN-BLOCK"}}, want,
			[]string{"ipv4: OUTPUT does not jump to WARDEN-BLOCK"}},
		"prefix missing": {BlockState{Installed: true, Enforced: true, Prefixes: want[:1]}, want,
			[]string{"blocks [198.51.100.7/32], want [198.51.100.7/32 fd00:18::a/128]"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.st.Drift(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.drift) {
				t.Errorf("Drift = %q, want %q", got, tc.drift)
			}
		})
	}
	if _, err := (BlockState{}).Drift(mustPrefixes("::/0")); !errors.Is(err, ErrInvalidBlock) {
		t.Errorf("Drift with a /0 = %v, want ErrInvalidBlock", err)
	}
}

func TestBlocklistIPTablesParse(t *testing.T) {
	const table = `-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N WARDEN-BLOCK
-A PREROUTING -s 10.1.1.1/32 -j ACCEPT
-A PREROUTING -j WARDEN-BLOCK
-A OUTPUT -j WARDEN-BLOCK
-A OUTPUT -j WARDEN-BLOCK
-A WARDEN-BLOCK -s 198.51.100.7/32 -j DROP
-A WARDEN-BLOCK -d 198.51.100.7/32 -j DROP
-A WARDEN-BLOCK -s 203.0.113.0/24 -j DROP
-A WARDEN-BLOCK -d 10.9.0.0/16 -j DROP
-A WARDEN-BLOCK -p udp -j ACCEPT
`
	rt := blockChain.parse(table)
	fs := rt.observeBlock()
	if got := fmt.Sprint(fs.prefixes); got != "[198.51.100.7/32]" {
		t.Errorf("prefixes = %s", got)
	}
	wantFaults := []string{
		"10.9.0.0/16 dropped as destination only",
		"203.0.113.0/24 dropped as source only",
		"OUTPUT jumps to WARDEN-BLOCK 2 times",
		"PREROUTING: another rule is evaluated before WARDEN-BLOCK",
		"foreign rule -p udp -j ACCEPT",
	}
	if !slices.Equal(fs.faults, wantFaults) {
		t.Errorf("faults = %q\nwant %q", fs.faults, wantFaults)
	}
	if fs.enforced() {
		t.Error("a drifted table reported as enforced")
	}
	want := `*raw
:WARDEN-BLOCK - [0:0]
-A WARDEN-BLOCK -s 198.51.100.7/32 -j DROP
-A WARDEN-BLOCK -d 198.51.100.7/32 -j DROP
-D PREROUTING -j WARDEN-BLOCK
-I PREROUTING 1 -j WARDEN-BLOCK
-D OUTPUT -j WARDEN-BLOCK
-D OUTPUT -j WARDEN-BLOCK
-I OUTPUT 1 -j WARDEN-BLOCK
COMMIT
`
	if got := string(rt.applyScript(blockRules(BlockChain, mustPrefixes("198.51.100.7/32")))); got != want {
		t.Errorf("applyScript:\n%s\nwant:\n%s", got, want)
	}
	wantRemove := "*raw\n-D PREROUTING -j WARDEN-BLOCK\n-D OUTPUT -j WARDEN-BLOCK\n-D OUTPUT -j WARDEN-BLOCK\n-F WARDEN-BLOCK\n-X WARDEN-BLOCK\nCOMMIT\n"
	if got := string(rt.removeScript()); got != wantRemove {
		t.Errorf("removeScript:\n%s\nwant:\n%s", got, wantRemove)
	}
	if s := blockChain.parse("-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n").removeScript(); s != nil {
		t.Errorf("removeScript of a clean table = %q, want nil", s)
	}
}

func TestBlocklistDesiredNFTObservesAsEnforced(t *testing.T) {
	bl, err := newBlockList(blockedSet())
	if err != nil {
		t.Fatal(err)
	}
	m := desiredBlockNFT(&nftables.Table{Family: nftables.TableFamilyINet, Name: NFTBlockTable}, bl)
	st := blockStateNFT(m)
	if !st.Enforced || len(st.Faults) > 0 || !slices.Equal(st.Prefixes, bl.all()) {
		t.Fatalf("desired table observed as %+v", st)
	}
	for _, rules := range m.rules {
		for _, r := range rules {
			for _, e := range r.Exprs {
				if s := exprText(e); strings.HasPrefix(s, "*expr.") {
					t.Errorf("expression %T has no canonical text: %s", e, s)
				}
			}
		}
	}
	// The same drop twice in one chain, and nothing in the other.
	m.rules["prerouting"] = append(m.rules["prerouting"], m.rules["prerouting"][0])
	m.rules["output"] = nil
	st = blockStateNFT(m)
	if st.Enforced || len(st.Faults) != 5 {
		t.Errorf("tampered table observed as %+v", st)
	}
}

// runBlocklistConformance is the blocklist half of the conformance suite
// (TestConformance), each case in a fresh network namespace.
func runBlocklistConformance(t *testing.T, b blockBackend) {
	t.Run("set installs both families and observe reads them back", func(t *testing.T) {
		e := newBLEnv(t, b)
		if st := mustObserve(t, e.bl); !st.Absent() || st.Enforced || st.Backend != b.name {
			t.Fatalf("fresh namespace: %+v", st)
		}
		mustSet(t, e.bl, blockedSet(), true)
		st := requireBlocks(t, e.bl, blockedSet())
		if got, want := fmt.Sprint(st.Prefixes), "[198.51.100.7/32 203.0.113.0/24 2001:db8:66::/48 fd00:18::a/128]"; got != want {
			t.Errorf("prefixes = %s, want %s", got, want)
		}
	})

	t.Run("set twice writes nothing", func(t *testing.T) {
		e := newBLEnv(t, b)
		mustSet(t, e.bl, blockedSet(), true)
		before := handleDump(t, e.ns.Name)
		mustSet(t, e.bl, blockedSet(), false)
		// The same blocklist written differently.
		same := mustPrefixes("fd00:18::a/128", "203.0.113.0/25", "203.0.113.128/25", "::ffff:198.51.100.7/128", "2001:db8:66:1::/64", "2001:db8:66::/48")
		mustSet(t, e.bl, same, false)
		if after := handleDump(t, e.ns.Name); after != before {
			t.Fatalf("an unchanged Set rewrote rules:\n--- before\n%s\n--- after\n%s", before, after)
		}
	})

	t.Run("set replaces the prefixes", func(t *testing.T) {
		e := newBLEnv(t, b)
		mustSet(t, e.bl, blockedSet(), true)
		next := mustPrefixes("192.0.2.0/24", "2001:db8:77::/48")
		mustSet(t, e.bl, next, true)
		requireBlocks(t, e.bl, next)
		v6only := mustPrefixes("2001:db8:77::/48")
		mustSet(t, e.bl, v6only, true)
		requireBlocks(t, e.bl, v6only)
		mustSet(t, e.bl, v6only, false)
	})

	t.Run("empty set removes every trace and nothing else", func(t *testing.T) {
		e := newBLEnv(t, b)
		mustSet(t, e.bl, nil, false) // nothing there yet
		runArgv(foreignBlockRules("198.51.100.7", "fd00:18::a")...)(t, e.ns.Name)
		before := dumpRules(t, t.Context(), e.ns.Name)
		mustSet(t, e.bl, blockedSet(), true)
		if during := dumpRules(t, t.Context(), e.ns.Name); during == before {
			t.Fatal("Set did not change the rule dump")
		}
		mustSet(t, e.bl, []netip.Prefix{}, true)
		if after := dumpRules(t, t.Context(), e.ns.Name); after != before {
			t.Fatalf("Set(empty) did not restore the rules exactly:\n--- before\n%s\n--- after\n%s", before, after)
		}
		mustSet(t, e.bl, nil, false)
		if st := mustObserve(t, e.bl); !st.Absent() || st.Enforced || len(st.Prefixes) > 0 {
			t.Errorf("after Set(empty): %+v", st)
		}
	})

	t.Run("empty set on a fresh namespace leaves no name of ours", func(t *testing.T) {
		e := newBLEnv(t, b)
		mustSet(t, e.bl, blockedSet(), true)
		mustSet(t, e.bl, nil, true)
		d := dumpRules(t, t.Context(), e.ns.Name)
		if strings.Contains(d, b.names.nftTable) || strings.Contains(d, b.names.iptChain) {
			t.Fatalf("trace left after Set(empty):\n%s", d)
		}
		if got := ruleDump(t, e.ns.Name); strings.Count(got, "\n") != 3 {
			t.Fatalf("rules left after Set(empty):\n%s", got)
		}
	})

	t.Run("refused input changes nothing", func(t *testing.T) {
		e := newBLEnv(t, b)
		// An address of the namespace's own, on a veth pair inside it.
		runArgv(
			[]string{"ip", "link", "add", "own0", "type", "veth", "peer", "name", "own1"},
			[]string{"ip", "addr", "add", "192.0.2.1/24", "dev", "own0"},
			[]string{"ip", "addr", "add", "2001:db8:1::1/64", "dev", "own0", "nodad"},
			[]string{"ip", "link", "set", "own0", "up"},
		)(t, e.ns.Name)
		for name, ps := range map[string][]netip.Prefix{
			"invalid":        {{}},
			"everything v4":  mustPrefixes("0.0.0.0/0"),
			"everything v6":  mustPrefixes("198.51.100.7/32", "::/0"),
			"loopback":       mustPrefixes("127.0.0.0/8"),
			"own v4 address": mustPrefixes("198.51.100.7/32", "192.0.2.0/24"),
			"own v6 address": mustPrefixes("2001:db8::/32"),
		} {
			if changed, err := e.bl.Set(t.Context(), ps); changed || !errors.Is(err, ErrInvalidBlock) || !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("%s on a fresh namespace: Set = %t, %v; want ErrInvalidBlock", name, changed, err)
			}
		}
		if st := mustObserve(t, e.bl); !st.Absent() {
			t.Fatalf("refused Set left rules: %+v", st)
		}
		mustSet(t, e.bl, blockedSet(), true)
		before := handleDump(t, e.ns.Name)
		if changed, err := e.bl.Set(t.Context(), mustPrefixes("192.0.2.1/32")); changed || !errors.Is(err, ErrInvalidBlock) {
			t.Errorf("own address over an existing blocklist: Set = %t, %v", changed, err)
		}
		if after := handleDump(t, e.ns.Name); after != before {
			t.Fatalf("a refused Set changed rules:\n--- before\n%s\n--- after\n%s", before, after)
		}
		requireBlocks(t, e.bl, blockedSet())
	})

	drift := map[string]struct {
		tamper    func(b blockBackend) func(*testing.T, string)
		wantDrift string // a regular expression, matched case-insensitively
		// weakened: the structure is broken, so Enforced must turn false
		// (a prefix deleted with all its rules leaves an intact, smaller
		// blocklist).
		weakened bool
	}{
		"output unhooked by hand":        {func(b blockBackend) func(*testing.T, string) { return b.unhookOutput }, "output", true},
		"accept inserted above the drop": {func(b blockBackend) func(*testing.T, string) { return b.acceptAbove }, "prerouting", true},
		"one direction deleted by hand":  {func(b blockBackend) func(*testing.T, string) { return b.oneWay }, `198\.51\.100\.7/32 dropped as source only|"ip daddr @block4 drop" missing`, true},
		"prefix deleted by hand":         {func(b blockBackend) func(*testing.T, string) { return b.elementRemoved }, `want \[.*2001:db8:66::/48`, false},
		"everything deleted by hand":     {func(b blockBackend) func(*testing.T, string) { return b.deleteEverything }, "blocklist missing", true},
	}
	for name, tc := range drift {
		t.Run("drift/"+name, func(t *testing.T) {
			e := newBLEnv(t, b)
			mustSet(t, e.bl, blockedSet(), true)
			want := dumpRules(t, t.Context(), e.ns.Name)
			tc.tamper(b)(t, e.ns.Name)
			st := mustObserve(t, e.bl)
			if tc.weakened && st.Enforced {
				t.Errorf("Observe still reports an enforced blocklist after tampering: %+v", st)
			}
			got, err := st.Drift(blockedSet())
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile("(?i)" + tc.wantDrift).MatchString(strings.Join(got, "\n")) {
				t.Fatalf("Drift = %q, want a line mentioning %q", got, tc.wantDrift)
			}
			mustSet(t, e.bl, blockedSet(), true)
			requireBlocks(t, e.bl, blockedSet())
			after := dumpRules(t, t.Context(), e.ns.Name)
			if b.name == BackendIPTables && name == "accept inserted above the drop" {
				// The foreign accept is not ours: it stays, below the jump.
				if !strings.Contains(after, "-A PREROUTING -j "+b.names.iptChain+"\n-A PREROUTING -s 198.51.100.7/32 -j ACCEPT") {
					t.Fatalf("jump not moved above the foreign accept:\n%s", after)
				}
			} else if after != want {
				t.Fatalf("repaired rules differ from the original:\n--- original\n%s\n--- repaired\n%s", want, after)
			}
			mustSet(t, e.bl, blockedSet(), false)
		})
	}

	t.Run("concurrent sets are serialised", func(t *testing.T) {
		e := newBLEnv(t, b)
		requireOneConcurrentChange(t, 8, "Sets", func() (bool, error) { return e.bl.Set(t.Context(), blockedSet()) })
		requireBlocks(t, e.bl, blockedSet())
	})
}

func TestNewBlocklistChoosesBackend(t *testing.T) {
	ns := newBlockNamespace(t, "nft", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore")
	for name, tc := range map[string]struct {
		backend string
		want    string
		wantErr bool
	}{
		"automatic prefers nftables": {"", BackendNFTables, false},
		"nftables":                   {"nftables", BackendNFTables, false},
		"iptables":                   {"iptables", BackendIPTables, false},
		"unknown":                    {"pf", "", true},
	} {
		t.Run(name, func(t *testing.T) {
			var bl Blocklist
			var err error
			if derr := ns.Do(func() error { bl, err = NewBlocklist(tc.backend, testLogger(t)); return nil }); derr != nil {
				t.Fatal(derr)
			}
			if tc.wantErr {
				if err == nil || bl != nil {
					t.Fatalf("NewBlocklist(%q) = %v, %v; want a nil Blocklist and an error", tc.backend, bl, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer bl.Close()
			if st := mustObserve(t, bl); st.Backend != tc.want {
				t.Errorf("backend = %q, want %q", st.Backend, tc.want)
			}
		})
	}
}

// ruleSet is one of the rule sets a gateway holds side by side — the
// quarantine, the peer blocklist, the IoC blocklist — as TestRuleSetsCoexist
// drives it.
type ruleSet struct {
	name  string
	tools []string
	// open is called on a thread inside the test's namespace.
	open func(t *testing.T) ruleSetOps
}

// ruleSetOps installs, checks and removes one rule set; install and remove
// fail the test unless they report a change as wanted.
type ruleSetOps struct {
	install func(t *testing.T, wantChanged bool)
	remove  func(t *testing.T, wantChanged bool)
	// intact fails the test unless the rule set reads back exactly as
	// installed and installing it again changes nothing.
	intact func(t *testing.T)
	// installNow installs it, for calls from plain goroutines.
	installNow func(ctx context.Context) error
}

func quarantineRuleSet(b quarantineBackend) ruleSet {
	return ruleSet{name: "quarantine " + b.name, tools: b.tools, open: func(t *testing.T) ruleSetOps {
		fw := b.newFW(t, testLogger(t))
		return ruleSetOps{
			install: func(t *testing.T, changed bool) { t.Helper(); mustApply(t, fw, labSpec(), changed) },
			remove:  func(t *testing.T, changed bool) { t.Helper(); mustRemove(t, fw, changed) },
			intact: func(t *testing.T) {
				t.Helper()
				requireMatches(t, fw, labSpec())
				mustApply(t, fw, labSpec(), false)
			},
			installNow: func(ctx context.Context) error { _, err := fw.Apply(ctx, labSpec()); return err },
		}
	}}
}

func blocklistRuleSet(b blockBackend, set []netip.Prefix) ruleSet {
	return ruleSet{name: b.names.what + " " + b.name, tools: b.tools, open: func(t *testing.T) ruleSetOps {
		bl := b.newBL(t, testLogger(t))
		return ruleSetOps{
			install: func(t *testing.T, changed bool) { t.Helper(); mustSet(t, bl, set, changed) },
			remove:  func(t *testing.T, changed bool) { t.Helper(); mustSet(t, bl, nil, changed) },
			intact: func(t *testing.T) {
				t.Helper()
				requireBlocks(t, bl, set)
				mustSet(t, bl, set, false)
			},
			installNow: func(ctx context.Context) error { _, err := bl.Set(ctx, set); return err },
		}
	}}
}

// TestRuleSetsCoexist puts two of a gateway's rule sets — the quarantine,
// the peer blocklist and the IoC blocklist, each pair, every pairing of
// backends — in one namespace: neither disturbs the other, neither reports
// the other as drift, and removing either leaves the other exactly as it
// was. The two blocklists hold overlapping prefixes, each its own.
func TestRuleSetsCoexist(t *testing.T) {
	quarantine := func(b backend) ruleSet { return quarantineRuleSet(b.quarantine) }
	peers := func(b backend) ruleSet { return blocklistRuleSet(b.blocklist, blockedSet()) }
	iocs := func(b backend) ruleSet {
		return blocklistRuleSet(b.ioc, mustPrefixes("198.51.100.0/24", "192.0.2.99/32", "2001:db8:77::/48", "fd00:18::a/128"))
	}
	for _, pair := range []struct{ a, b func(backend) ruleSet }{{quarantine, peers}, {quarantine, iocs}, {peers, iocs}} {
		for _, x := range backends() {
			for _, y := range backends() {
				a, b := pair.a(x), pair.b(y)
				t.Run(a.name+"/"+b.name, func(t *testing.T) {
					t.Parallel()
					testCoexist(t, a, b)
				})
			}
		}
	}
}

func testCoexist(t *testing.T, rsA, rsB ruleSet) {
	ns := newBlockNamespace(t, append(slices.Clone(rsA.tools), rsB.tools...)...)
	var a, b ruleSetOps
	if err := ns.Do(func() error { a, b = rsA.open(t), rsB.open(t); return nil }); err != nil {
		t.Fatal(err)
	}
	both := func() {
		t.Helper()
		a.intact(t)
		b.intact(t)
	}
	for _, order := range []struct {
		first, second ruleSetOps
		what          string
	}{{a, b, rsB.name}, {b, a, rsA.name}} {
		// One first; the other comes and goes.
		order.first.install(t, true)
		firstOnly := ruleDump(t, ns.Name)
		order.second.install(t, true)
		both()
		order.second.remove(t, true)
		order.first.intact(t)
		if got := ruleDump(t, ns.Name); got != firstOnly {
			t.Fatalf("removing the %s changed the other rule set:\n--- before\n%s\n--- after\n%s", order.what, firstOnly, got)
		}
		order.first.remove(t, true)
	}

	// Both at once, from two goroutines.
	var wg sync.WaitGroup
	var errA, errB error
	wg.Go(func() { errA = a.installNow(t.Context()) })
	wg.Go(func() { errB = b.installNow(t.Context()) })
	wg.Wait()
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
	both()
}

// udpSockets opens a socket listening on a in to's namespace and an unbound
// one in from's, and returns them with the address a datagram from out
// must be sent to to reach in. On an error neither is left open.
func udpSockets(from, to netlab.Node, a netip.Addr) (in, out *net.UDPConn, dst netip.AddrPort, err error) {
	if err := netlab.Do(to.NS, func() error {
		var err error
		in, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		return err
	}); err != nil {
		return nil, nil, netip.AddrPort{}, err
	}
	if err := netlab.Do(from.NS, func() error {
		var err error
		out, err = net.ListenUDP("udp", nil)
		return err
	}); err != nil {
		in.Close()
		return nil, nil, netip.AddrPort{}, err
	}
	return in, out, netip.AddrPortFrom(a, in.LocalAddr().(*net.UDPAddr).AddrPort().Port()), nil
}

// oneWayUDP is a probe that succeeds when a datagram sent from one node
// arrives at another's address, with no reply needed. It resends every
// 100ms until wait is over, so a datagram queued behind neighbour
// resolution does not count as a loss.
func oneWayUDP(from, to netlab.Node, a netip.Addr, wait time.Duration) probe {
	name := fmt.Sprintf("one-way udp %s -> %s %s", from.Name, to.Name, a)
	return probe{name, func(ctx context.Context) error {
		in, out, dst, err := udpSockets(from, to, a)
		if err != nil {
			return err
		}
		defer in.Close()
		defer out.Close()
		msg := []byte(name)
		got := make(chan error, 1)
		go func() {
			buf := make([]byte, 2*len(msg))
			for {
				n, err := in.Read(buf)
				if err != nil {
					got <- err
					return
				}
				if string(buf[:n]) == name {
					got <- nil
					return
				}
			}
		}()
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := out.WriteToUDPAddrPort(msg, dst); err != nil {
				return err
			}
			select {
			case err := <-got:
				return err
			case <-tick.C:
			case <-deadline.C:
				return fmt.Errorf("%s: nothing arrived within %v", name, wait)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}}
}

// cutOff builds the probes that must all fail while gw drops everything
// from and to far: far to the gateway (input) and to the host behind it
// (forward, in), and both of them to far (output; forward, out).
func cutOff(lab *netlab.Lab, far, gw, behind netlab.Node, wait time.Duration) []probe {
	var ps []probe
	for _, pair := range []struct{ from, to netlab.Node }{{far, gw}, {gw, far}, {far, behind}, {behind, far}} {
		ps = append(ps, reach(lab, pair.from, pair.to, pair.to.Addrs(), wait)...)
		// A round trip fails if either direction is dropped; one-way
		// datagrams prove each direction is.
		for _, a := range pair.to.Addrs() {
			ps = append(ps, oneWayUDP(pair.from, pair.to, a, wait))
		}
	}
	return ps
}

// openInLab opens bb's blocklist on node, in its namespace.
func openInLab(t *testing.T, lab *netlab.Lab, node netlab.Node, bb blockBackend) Blocklist {
	t.Helper()
	var bl Blocklist
	if err := lab.Do(node.NS, func() error { bl = bb.newBL(t, testLogger(t)); return nil }); err != nil {
		t.Fatal(err)
	}
	return bl
}

// TestBlocklistInLab revokes the hq gateway on the osaka gateway of a
// three-site lab and proves with real packets, IPv4 and IPv6, TCP, UDP and
// ICMP, that nothing passes between osaka (gateway and LAN) and hq's
// gateway, in either direction, despite accepts in other tables and chains,
// while everyone else still gets through.
func TestBlocklistInLab(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testBlocklistInLab(t, b.blocklist)
		})
	}
}

func testBlocklistInLab(t *testing.T, bb blockBackend) {
	netlabtest.Skip(t, bb.tools...)
	ctx := t.Context()
	lab, hq, osaka, dc := threeSiteLab(t, "lxbl"+bb.name[:3])
	bad, peer := hq.Gateway, osaka.Gateway
	serveEcho(t, lab, bad, peer, osaka.LAN, dc.Gateway, dc.LAN, lab.C2())
	// The peer's own firewall already accepts the compromised gateway
	// everywhere it could: raw, filter (ESTABLISHED first) and an nftables
	// table hooked before Warden's.
	runArgv(foreignBlockRules(bad.V4.String(), bad.V6.String())...)(t, peer.NS)
	rulesBefore := ruleDump(t, peer.NS)

	// Sessions established before the block, one terminating on the peer,
	// one forwarded through it.
	type session struct {
		name string
		s    *netlab.Session
	}
	var sessions []session
	for _, a := range peer.Addrs() {
		s, err := lab.OpenSession(ctx, bad.NS, netip.AddrPortFrom(a, echoPort))
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, session{fmt.Sprintf("%s -> %s", bad.Name, a), s})
	}
	for _, a := range bad.Addrs() {
		s, err := lab.OpenSession(ctx, osaka.LAN.NS, netip.AddrPortFrom(a, echoPort))
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, session{fmt.Sprintf("%s -> %s", osaka.LAN.Name, a), s})
	}

	cut := func(wait time.Duration) []probe { return cutOff(lab, bad, peer, osaka.LAN, wait) }
	kept := func() []probe {
		var ps []probe
		ps = append(ps, reach(lab, dc.Gateway, peer, peer.Addrs(), okWait)...)
		ps = append(ps, reach(lab, peer, dc.Gateway, dc.Gateway.Addrs(), okWait)...)
		ps = append(ps, reach(lab, dc.LAN, osaka.LAN, osaka.LAN.Addrs(), okWait)...)
		ps = append(ps, reach(lab, lab.Mgmt(), peer, peer.Addrs(), okWait)...)
		ps = append(ps, reach(lab, lab.C2(), peer, peer.Addrs(), okWait)...)
		// Through the compromised gateway but from another address (its
		// LAN): only the gateway's own addresses are blocked.
		ps = append(ps, reach(lab, hq.LAN, osaka.LAN, osaka.LAN.Addrs(), okWait)...)
		// Blocking is the peer's decision: the compromised gateway still
		// reaches sites that have not blocked it.
		ps = append(ps, reach(lab, bad, dc.Gateway, dc.Gateway.Addrs(), okWait)...)
		return ps
	}
	expectProbes(t, true, append(cut(okWait), kept()...))

	bl := openInLab(t, lab, peer, bb)
	block := []netip.Prefix{netip.PrefixFrom(bad.V4, 32), netip.PrefixFrom(bad.V6, 128)}
	start := time.Now()
	mustSet(t, bl, block, true)
	t.Logf("%s: Set took %v", bb.name, time.Since(start))
	requireBlocks(t, bl, block)

	for _, s := range sessions {
		if err := s.s.Alive(cutWait); err == nil {
			t.Errorf("session %s survived the block", s.name)
		}
	}
	expectProbes(t, false, cut(cutWait))
	expectProbes(t, true, kept())
	mustSet(t, bl, block, false)

	// Someone deletes the blocklist by hand: traffic flows again, Observe
	// sees it, and Set puts it back.
	bb.deleteEverything(t, peer.NS)
	expectProbes(t, true, reach(lab, bad, peer, peer.Addrs(), okWait))
	if st := mustObserve(t, bl); st.Enforced || !st.Absent() {
		t.Fatalf("Observe after hand deletion: %+v", st)
	}
	mustSet(t, bl, block, true)
	expectProbes(t, false, cut(cutWait))

	// Unblock: exactly the peer's own rules remain, and traffic flows.
	mustSet(t, bl, nil, true)
	if after := ruleDump(t, peer.NS); after != rulesBefore {
		t.Errorf("rules after unblocking differ from before:\n--- before\n%s\n--- after\n%s", rulesBefore, after)
	}
	expectProbes(t, true, append(cut(okWait), kept()...))
	mustSet(t, bl, nil, false)
}

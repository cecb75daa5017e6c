package netfilter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// backend is one netfilter implementation of both rule sets, as the
// conformance suite sees it. A new backend is added here, once, and must
// pass every case of both halves of the suite.
type backend struct {
	name       string
	quarantine quarantineBackend
	blocklist  blockBackend // the peer blocklist
	ioc        blockBackend // the IoC blocklist: the same suite over its own names
}

func backends() []backend {
	return []backend{
		{name: "iptables", quarantine: iptablesBackend(), blocklist: iptBlockBackend(peerBlocklist), ioc: iptBlockBackend(iocBlocklist)},
		{name: "nftables", quarantine: nftablesBackend(), blocklist: nftBlockBackend(peerBlocklist), ioc: nftBlockBackend(iocBlocklist)},
	}
}

// quarantineBackend describes one Quarantine implementation to the
// conformance suite: how to build it, and how a person would tamper with
// its rules by hand.
type quarantineBackend struct {
	name  string
	tools []string
	// newFW is called on a thread inside the test's namespace.
	newFW func(t testing.TB, log *slog.Logger) Quarantine
	// Hand edits, as argument arrays run inside the namespace.
	unhookInput        [][]string // delete the IPv4 (or both families') input hook
	acceptAboveOutput  [][]string // an ESTABLISHED accept before the quarantine
	foreignAllow       [][]string // an extra IPv6 allow nobody asked for
	deleteEverything   [][]string // remove all of Warden's rules
	foreignRules       [][]string // unrelated rules that must survive Remove
	foreignAfterRemove []string   // a line from foreignRules visible in dumpRules
}

func iptablesBackend() quarantineBackend {
	return quarantineBackend{
		name:              "iptables",
		tools:             []string{"iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "nft"},
		newFW:             func(t testing.TB, log *slog.Logger) Quarantine { return openForTest(t, log, NewIPTables) },
		unhookInput:       [][]string{{"iptables", "-D", "INPUT", "-j", QuarantineChain}},
		acceptAboveOutput: [][]string{{"ip6tables", "-I", "OUTPUT", "1", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}},
		foreignAllow:      [][]string{{"ip6tables", "-I", QuarantineChain, "1", "-s", "fd66::/16", "-j", "ACCEPT"}},
		deleteEverything: [][]string{
			{"iptables", "-D", "INPUT", "-j", QuarantineChain}, {"iptables", "-D", "OUTPUT", "-j", QuarantineChain},
			{"iptables", "-D", "FORWARD", "-j", QuarantineChain}, {"iptables", "-F", QuarantineChain}, {"iptables", "-X", QuarantineChain},
			{"ip6tables", "-D", "INPUT", "-j", QuarantineChain}, {"ip6tables", "-D", "OUTPUT", "-j", QuarantineChain},
			{"ip6tables", "-D", "FORWARD", "-j", QuarantineChain}, {"ip6tables", "-F", QuarantineChain}, {"ip6tables", "-X", QuarantineChain},
		},
		foreignRules: [][]string{
			{"iptables", "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT"},
			{"iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"ip6tables", "-A", "FORWARD", "-p", "udp", "--dport", "53", "-j", "DROP"},
			{"iptables", "-N", "SITE-LOCAL"},
		},
		foreignAfterRemove: []string{"-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT"},
	}
}

func nftablesBackend() quarantineBackend {
	return quarantineBackend{
		name:              "nftables",
		tools:             []string{"nft", "iptables-save", "ip6tables-save", "iptables", "ip6tables"},
		newFW:             func(t testing.TB, log *slog.Logger) Quarantine { return openForTest(t, log, NewNFTables) },
		unhookInput:       [][]string{{"nft", "flush", "chain", "inet", NFTTable, "input"}},
		acceptAboveOutput: [][]string{{"nft", "insert", "rule", "inet", NFTTable, "output", "ct", "state", "established,related", "accept"}},
		foreignAllow:      [][]string{{"nft", "add", "element", "inet", NFTTable, nftAllow6, "{", "fd66::/16", "}"}},
		deleteEverything:  [][]string{{"nft", "delete", "table", "inet", NFTTable}},
		foreignRules: [][]string{
			{"nft", "add", "table", "inet", "site"},
			{"nft", "add", "chain", "inet", "site", "in", "{", "type", "filter", "hook", "input", "priority", "0", ";", "}"},
			{"nft", "add", "rule", "inet", "site", "in", "tcp", "dport", "2222", "accept"},
			{"iptables", "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT"},
		},
		foreignAfterRemove: []string{"tcp dport 2222 accept"},
	}
}

// TestConformance is the one conformance suite, run against every
// backend: the quarantine's cases and the blocklists' (the peer blocklist
// and the IoC blocklist, one suite over each one's names), each case in a
// fresh network namespace.
func TestConformance(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Run("quarantine", func(t *testing.T) { runQuarantineConformance(t, b.quarantine) })
			t.Run("blocklist", func(t *testing.T) { runBlocklistConformance(t, b.blocklist) })
			t.Run("ioc blocklist", func(t *testing.T) { runBlocklistConformance(t, b.ioc) })
		})
	}
}

// namespaceSeq keeps namespace names unique within this test binary; the
// "lx" prefix keeps them apart from other packages' tests.
var namespaceSeq atomic.Int32

// fwEnv is one fresh namespace with one firewall bound to it.
type fwEnv struct {
	ns *netlab.Namespace
	fw Quarantine
}

func newFWEnv(t *testing.T, b quarantineBackend) fwEnv {
	t.Helper()
	netlabtest.Skip(t, b.tools...)
	ns, err := netlab.NewNamespace(fmt.Sprintf("lxfw-%s-%d", b.name[:3], namespaceSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	var fw Quarantine
	// The backend binds to the namespace of the thread that builds it; from
	// then on any goroutine may call it.
	if err := ns.Do(func() error { fw = b.newFW(t, testLogger(t)); return nil }); err != nil {
		t.Fatal(err)
	}
	return fwEnv{ns: ns, fw: fw}
}

func (e fwEnv) run(t *testing.T, cmds ...[]string) {
	t.Helper()
	for _, argv := range cmds {
		if _, err := e.ns.Run(t.Context(), argv...); err != nil {
			t.Fatal(err)
		}
	}
}

// dumpRules prints every rule of the namespace as text: both iptables
// families and the whole nftables ruleset, without counters or timestamps.
//
// iptables-nft creates a built-in chain (an nftables base chain) when a rule
// first goes into it and leaves it, empty with policy accept, when the last
// rule goes; such a chain does nothing, iptables-save does not show the
// difference, and the dump leaves it out.
func dumpRules(t testing.TB, ctx context.Context, ns string) string {
	t.Helper()
	var out strings.Builder
	for _, argv := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "-s", "list", "ruleset"}} {
		b, err := netlab.Run(ctx, ns, argv...)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "== %s\n", strings.Join(argv, " "))
		text := string(b)
		if argv[0] == "nft" {
			text = canonicalNFT(emptyBaseChain.ReplaceAllString(text, ""))
		}
		for _, line := range strings.Split(text, "\n") {
			if l := strings.TrimSpace(line); l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			out.WriteString(counters.ReplaceAllString(line, "[0:0]") + "\n")
		}
	}
	return out.String()
}

// canonicalNFT sorts the tables of an `nft list ruleset` listing, and the
// chains and sets inside each, by name: the kernel lists them in creation
// order, which says nothing about behaviour.
func canonicalNFT(text string) string {
	var tables []string
	var blocks []string // of the current table
	var head, cur []string
	flush := func() {
		slices.Sort(blocks)
		tables = append(tables, strings.Join(head, "\n")+"\n"+strings.Join(blocks, "")+"}\n")
		blocks, head = nil, nil
	}
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "table "):
			head = []string{line}
		case line == "}":
			flush()
		case strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t") && strings.HasSuffix(line, "{"):
			cur = []string{line}
		case line == "\t}":
			blocks = append(blocks, strings.Join(append(cur, line), "\n")+"\n")
			cur = nil
		case cur != nil:
			cur = append(cur, line)
		}
	}
	slices.Sort(tables)
	return strings.Join(tables, "")
}

var (
	counters       = regexp.MustCompile(`\[\d+:\d+\]`)
	emptyBaseChain = regexp.MustCompile(`(?m)^\tchain \S+ \{\n\t\ttype filter hook \w+ priority [^;]+; policy accept;\n\t\}\n`)
)

// openForTest opens a backend with open, failing the test if it cannot,
// and closes it when the test ends.
func openForTest[T io.Closer](t testing.TB, log *slog.Logger, open func(*slog.Logger) (T, error)) T {
	v, err := open(log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// testLogger writes the backend's logs into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustPrefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func labSpec() wire.QuarantineSpec {
	return wire.QuarantineSpec{
		Management: mustPrefixes("198.19.0.0/24", "fd00:19::/64"),
		Forensics:  mustPrefixes("203.0.113.7/32", "2001:db8:f::/48"),
	}
}

func mustApply(t *testing.T, fw Quarantine, spec wire.QuarantineSpec, wantChanged bool) {
	t.Helper()
	changed, err := fw.Apply(t.Context(), spec)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if changed != wantChanged {
		t.Fatalf("Apply changed = %t, want %t", changed, wantChanged)
	}
}

func mustRemove(t *testing.T, fw Quarantine, wantChanged bool) {
	t.Helper()
	changed, err := fw.Remove(t.Context())
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if changed != wantChanged {
		t.Fatalf("Remove changed = %t, want %t", changed, wantChanged)
	}
}

// mustObserve reads a rule set back (a Quarantine's State or a
// Blocklist's BlockState), failing the test if it cannot.
func mustObserve[S any](t *testing.T, rules interface {
	Observe(context.Context) (S, error)
}) S {
	t.Helper()
	st, err := rules.Observe(t.Context())
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	return st
}

// requireMatches fails unless the observed state is exactly Apply(spec).
func requireMatches(t *testing.T, fw Quarantine, spec wire.QuarantineSpec) State {
	t.Helper()
	st := mustObserve(t, fw)
	drift, err := st.Drift(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(drift) > 0 || !st.Quarantined() {
		t.Fatalf("state after Apply: quarantined=%t drift=%q\n%+v", st.Quarantined(), drift, st)
	}
	return st
}

// runQuarantineConformance is the quarantine half of the conformance
// suite, each case in a fresh network namespace.
func runQuarantineConformance(t *testing.T, b quarantineBackend) {
	t.Run("apply installs both families and observe reads them back", func(t *testing.T) {
		e := newFWEnv(t, b)
		if st := mustObserve(t, e.fw); !st.Absent() || st.Quarantined() {
			t.Fatalf("fresh namespace: %+v", st)
		}
		mustApply(t, e.fw, labSpec(), true)
		st := requireMatches(t, e.fw, labSpec())
		if got, want := fmt.Sprint(st.IPv4.Allowed, st.IPv6.Allowed), "[198.19.0.0/24 203.0.113.7/32] [2001:db8:f::/48 fd00:19::/64]"; got != want {
			t.Errorf("allowed = %s, want %s", got, want)
		}
		for _, fs := range []FamilyState{st.IPv4, st.IPv6} {
			if !fs.Loopback || !fs.DropsRest || !fs.First || !slices.Equal(fs.Hooked, allHooks()) {
				t.Errorf("family state incomplete: %+v", fs)
			}
		}
		if !st.IPv6.NeighborDiscovery {
			t.Error("IPv6 neighbour discovery not accepted")
		}
	})

	t.Run("apply twice changes nothing", func(t *testing.T) {
		e := newFWEnv(t, b)
		mustApply(t, e.fw, labSpec(), true)
		before := dumpRules(t, t.Context(), e.ns.Name)
		mustApply(t, e.fw, labSpec(), false)
		if after := dumpRules(t, t.Context(), e.ns.Name); after != before {
			t.Fatalf("second Apply changed the rules:\n--- after first\n%s\n--- after second\n%s", before, after)
		}
		// An equivalent spec written differently is the same quarantine.
		same := wire.QuarantineSpec{Management: mustPrefixes("198.19.0.0/25", "198.19.0.128/25", "fd00:19::/64", "fd00:19::1/128", "203.0.113.7/32"), Forensics: mustPrefixes("2001:db8:f::/48")}
		mustApply(t, e.fw, same, false)
	})

	t.Run("apply with a new spec rewrites the allowed prefixes", func(t *testing.T) {
		e := newFWEnv(t, b)
		mustApply(t, e.fw, labSpec(), true)
		next := wire.QuarantineSpec{Management: mustPrefixes("10.9.0.0/16", "::ffff:192.0.2.0/120", "fd00:99::/64")}
		mustApply(t, e.fw, next, true)
		st := requireMatches(t, e.fw, next)
		if got, want := fmt.Sprint(st.IPv4.Allowed, st.IPv6.Allowed), "[10.9.0.0/16 192.0.2.0/24] [fd00:99::/64]"; got != want {
			t.Errorf("allowed = %s, want %s", got, want)
		}
	})

	t.Run("invalid spec is refused and installs nothing", func(t *testing.T) {
		e := newFWEnv(t, b)
		for name, spec := range map[string]wire.QuarantineSpec{
			"no management":  {Forensics: mustPrefixes("203.0.113.7/32")},
			"allow all ipv4": {Management: mustPrefixes("0.0.0.0/0")},
			"allow all ipv6": {Management: mustPrefixes("198.19.0.0/24"), Forensics: mustPrefixes("::/0")},
			"zero prefix":    {Management: []netip.Prefix{{}}},
		} {
			changed, err := e.fw.Apply(t.Context(), spec)
			if !errors.Is(err, ErrInvalidSpec) || changed {
				t.Errorf("%s: Apply = %t, %v; want ErrInvalidSpec", name, changed, err)
			}
		}
		if st := mustObserve(t, e.fw); !st.Absent() {
			t.Errorf("refused spec left rules: %+v", st)
		}
	})

	t.Run("remove removes only warden's rules and is idempotent", func(t *testing.T) {
		e := newFWEnv(t, b)
		mustRemove(t, e.fw, false) // nothing there yet
		e.run(t, b.foreignRules...)
		before := dumpRules(t, t.Context(), e.ns.Name)
		mustApply(t, e.fw, labSpec(), true)
		if during := dumpRules(t, t.Context(), e.ns.Name); during == before {
			t.Fatal("Apply did not change the rule dump")
		}
		mustRemove(t, e.fw, true)
		after := dumpRules(t, t.Context(), e.ns.Name)
		if after != before {
			t.Fatalf("Remove did not restore the rules exactly:\n--- before Apply\n%s\n--- after Remove\n%s", before, after)
		}
		for _, line := range b.foreignAfterRemove {
			if !strings.Contains(after, line) {
				t.Errorf("foreign rule %q gone after Remove:\n%s", line, after)
			}
		}
		mustRemove(t, e.fw, false)
		if st := mustObserve(t, e.fw); !st.Absent() {
			t.Errorf("after Remove: %+v", st)
		}
	})

	drift := map[string]struct {
		tamper    func(b quarantineBackend) [][]string
		wantDrift string
		// weakened: the tampering breaks the quarantine's structure (not
		// just its allow list), so Quarantined must turn false.
		weakened bool
	}{
		"input hook deleted by hand":               {func(b quarantineBackend) [][]string { return b.unhookInput }, "input not hooked", true},
		"established accept inserted above":        {func(b quarantineBackend) [][]string { return b.acceptAboveOutput }, "evaluated before the quarantine", true},
		"extra allow added by hand":                {func(b quarantineBackend) [][]string { return b.foreignAllow }, "fd66::/16", false},
		"everything deleted by hand":               {func(b quarantineBackend) [][]string { return b.deleteEverything }, "quarantine chain missing", true},
		"remove after hand deletion is a no-op":    {func(b quarantineBackend) [][]string { return b.deleteEverything }, "", true},
		"hand edits do not survive a second apply": {func(b quarantineBackend) [][]string { return append(b.unhookInput, b.foreignAllow...) }, "input not hooked", true},
	}
	for name, tc := range drift {
		t.Run("drift/"+name, func(t *testing.T) {
			e := newFWEnv(t, b)
			mustApply(t, e.fw, labSpec(), true)
			want := dumpRules(t, t.Context(), e.ns.Name)
			e.run(t, tc.tamper(b)...)
			if tc.wantDrift == "" {
				mustRemove(t, e.fw, false)
				return
			}
			st := mustObserve(t, e.fw)
			got, err := st.Drift(labSpec())
			if err != nil {
				t.Fatal(err)
			}
			if tc.weakened && st.Quarantined() {
				t.Errorf("Observe still reports a full quarantine after tampering: %+v", st)
			}
			if !strings.Contains(strings.Join(got, "\n"), tc.wantDrift) {
				t.Fatalf("Drift = %q, want a line mentioning %q", got, tc.wantDrift)
			}
			mustApply(t, e.fw, labSpec(), true)
			requireMatches(t, e.fw, labSpec())
			after := dumpRules(t, t.Context(), e.ns.Name)
			if b.name == "nftables" || tc.wantDrift != "evaluated before the quarantine" {
				if after != want {
					t.Fatalf("repaired rules differ from the original:\n--- original\n%s\n--- repaired\n%s", want, after)
				}
			} else if !strings.Contains(after, "-A OUTPUT -j "+QuarantineChain+"\n-A OUTPUT -m conntrack") {
				// iptables: the foreign accept stays (not ours), below the jump.
				t.Fatalf("jump not moved above the foreign accept:\n%s", after)
			}
			mustApply(t, e.fw, labSpec(), false)
		})
	}

	t.Run("concurrent applies are serialised", func(t *testing.T) {
		e := newFWEnv(t, b)
		requireOneConcurrentChange(t, 8, "Applies", func() (bool, error) { return e.fw.Apply(t.Context(), labSpec()) })
		requireMatches(t, e.fw, labSpec())
	})
}

// requireOneConcurrentChange runs change n times at once, from plain
// goroutines (outside the namespace: a backend is bound to its own), and
// fails the test on any error or unless exactly one call (of the calls
// named by what) reported a change.
func requireOneConcurrentChange(t *testing.T, n int, what string, change func() (bool, error)) {
	t.Helper()
	var wg sync.WaitGroup
	var changed atomic.Int32
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			c, err := change()
			if c {
				changed.Add(1)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := changed.Load(); got != 1 {
		t.Errorf("%d concurrent %s reported a change, want exactly 1", got, what)
	}
}

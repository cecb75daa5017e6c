package netfilter

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

func TestDiffRanges(t *testing.T) {
	r := func(first, last string) wire.AddrRange {
		return wire.AddrRange{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}
	}
	a, b, c := r("10.0.0.0", "10.0.0.255"), r("10.0.2.0", "10.0.2.255"), r("10.0.4.0", "10.0.4.0")
	wider := r("10.0.2.0", "10.0.3.255")
	tests := map[string]struct {
		cur, want   []wire.AddrRange
		gone, added string
	}{
		"same":           {[]wire.AddrRange{a, b}, []wire.AddrRange{a, b}, "[]", "[]"},
		"one added":      {[]wire.AddrRange{a}, []wire.AddrRange{a, b}, "[]", "[{10.0.2.0 10.0.2.255}]"},
		"one gone":       {[]wire.AddrRange{a, b, c}, []wire.AddrRange{a, c}, "[{10.0.2.0 10.0.2.255}]", "[]"},
		"end moved":      {[]wire.AddrRange{a, b, c}, []wire.AddrRange{a, wider, c}, "[{10.0.2.0 10.0.2.255}]", "[{10.0.2.0 10.0.3.255}]"},
		"all new":        {[]wire.AddrRange{a}, []wire.AddrRange{b, c}, "[{10.0.0.0 10.0.0.255}]", "[{10.0.2.0 10.0.2.255} {10.0.4.0 10.0.4.0}]"},
		"from nothing":   {nil, []wire.AddrRange{a}, "[]", "[{10.0.0.0 10.0.0.255}]"},
		"to nothing":     {[]wire.AddrRange{a, c}, nil, "[{10.0.0.0 10.0.0.255} {10.0.4.0 10.0.4.0}]", "[]"},
		"interleaved":    {[]wire.AddrRange{a, c}, []wire.AddrRange{b}, "[{10.0.0.0 10.0.0.255} {10.0.4.0 10.0.4.0}]", "[{10.0.2.0 10.0.2.255}]"},
		"shorter at end": {[]wire.AddrRange{a, wider}, []wire.AddrRange{a, b}, "[{10.0.2.0 10.0.3.255}]", "[{10.0.2.0 10.0.2.255}]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			gone, added := diffRanges(tc.cur, tc.want)
			if g, a := fmt.Sprint(gone), fmt.Sprint(added); g != tc.gone || a != tc.added {
				t.Fatalf("diffRanges = gone %s, added %s; want gone %s, added %s", g, a, tc.gone, tc.added)
			}
		})
	}
}

func TestWellFormedIntervals(t *testing.T) {
	k := func(s string, end bool) setKey { return setKey{key: netip.MustParseAddr(s).AsSlice(), end: end} }
	tests := map[string]struct {
		elems []setKey
		want  bool
	}{
		"empty":                   {nil, true},
		"as written":              {setElements(wire.PrefixRanges(mustPrefixes("10.0.0.0/24", "10.0.2.0/24"))), true},
		"in the kernel's order":   {[]setKey{k("10.0.3.0", true), k("10.0.2.0", false), k("10.0.1.0", true), k("10.0.0.0", false)}, true},
		"open to the top":         {setElements(wire.PrefixRanges(mustPrefixes("10.0.0.0/24", "255.255.255.0/24"))), true},
		"start without end":       {[]setKey{k("10.0.0.0", false), k("10.0.2.0", false), k("10.0.3.0", true)}, false},
		"end first":               {[]setKey{k("10.0.0.0", true), k("10.0.2.0", false)}, false},
		"adjacent ranges by hand": {[]setKey{k("10.0.0.0", false), k("10.0.1.0", true), k("10.0.1.0", false), k("10.0.2.0", true)}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := wellFormedIntervals(tc.elems); got != tc.want {
				t.Fatalf("wellFormedIntervals = %t, want %t", got, tc.want)
			}
		})
	}
}

// nftHandles lists the handles of the IoC table and of its chains and
// rules: a table rewritten wholesale gets new ones, a patched one keeps
// them.
func nftHandles(t *testing.T, ns string) string {
	t.Helper()
	out, err := netlab.Run(t.Context(), ns, "nft", "-a", "list", "table", "inet", NFTIOCTable)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(handleComment.FindAllString(string(out), -1), " ")
}

var handleComment = regexp.MustCompile(`# handle \d+`)

// nftGeneration reads the namespace's ruleset generation through the
// blocklist's own connection.
func nftGeneration(t *testing.T, bl Blocklist) uint32 {
	t.Helper()
	gen, err := bl.(*NFTBlocklist).generation()
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

// TestIOCSetPatchesElements replaces the nftables IoC set through the
// awkward cases of an interval set — an end that moves, a start that moves,
// ranges that split and merge, a range open to the top of the address
// space, a family that empties — and checks that each is one transaction
// that patches the elements in place (the table, its chains and rules keep
// their handles) and reads back exactly as asked.
func TestIOCSetPatchesElements(t *testing.T) {
	e := newBLEnv(t, nftBlockBackend(iocBlocklist))
	steps := [][]netip.Prefix{
		mustPrefixes("10.0.0.0/24", "2001:db8:1::/48"),
		mustPrefixes("10.0.0.0/23"),                     // end moves; IPv6 empties
		mustPrefixes("10.0.1.0/24", "2001:db8:1::/128"), // start moves
		mustPrefixes("10.0.0.0/24", "10.0.2.0/24", "2001:db8:1::/128"),
		mustPrefixes("10.0.0.0/22", "2001:db8:1::/127"), // merged into one
		mustPrefixes("10.0.0.0/22", "255.255.255.0/24", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"),
		mustPrefixes("255.255.255.128/25", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff80/121"),
		mustPrefixes("0.0.0.0/32", "10.0.0.0/8", "::/128"),
	}
	mustSet(t, e.bl, steps[0], true)
	handles := nftHandles(t, e.ns.Name)
	for i, want := range steps[1:] {
		t.Run(fmt.Sprint(i+1), func(t *testing.T) {
			gen := nftGeneration(t, e.bl)
			mustSet(t, e.bl, want, true)
			if got := nftGeneration(t, e.bl); got != gen+1 {
				t.Errorf("Set moved the ruleset generation from %d to %d: want one transaction", gen, got)
			}
			requireBlocks(t, e.bl, want)
			if got := nftHandles(t, e.ns.Name); got != handles {
				t.Fatalf("the table was rewritten, not patched: handles %q, were %q", got, handles)
			}
			mustSet(t, e.bl, want, false)
		})
	}

	t.Run("a refused patch becomes a rewrite", func(t *testing.T) {
		want := mustPrefixes("192.0.2.0/24")
		// Make the blocklist believe in a range the kernel does not hold
		// (at the generation the kernel is at, so it trusts it): the patch
		// deletes it, the kernel refuses the batch, and Set rewrites.
		b := e.bl.(*NFTBlocklist)
		b.mu.Lock()
		k := b.known[NFTIOCTable]
		forged := k.model
		forged.elems = map[string][]setKey{}
		for name, elems := range k.model.elems {
			forged.elems[name] = elems
		}
		forged.elems[nftBlock4] = append(slices.Clone(forged.elems[nftBlock4]), setElements(wire.PrefixRanges(mustPrefixes("198.51.100.0/24")))...)
		b.known[NFTIOCTable] = knownTable{gen: k.gen, model: forged}
		b.mu.Unlock()

		mustSet(t, e.bl, want, true)
		requireBlocks(t, e.bl, want)
		if got := nftHandles(t, e.ns.Name); got == handles {
			t.Fatal("the table kept its handles: the refused patch was not followed by a rewrite")
		}
	})
}

// TestIOCBlocklistLargeSet applies a threat-intelligence-sized set and
// replaces 1% of it, reading each back exactly; on nftables each Set is
// one transaction.
func TestIOCBlocklistLargeSet(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			n := 100_000
			if b.name == BackendIPTables {
				n = 2_000 // two rules a prefix, evaluated one by one
			}
			e := newBLEnv(t, b.ioc)
			set := iocSet(t, 18, n)
			next := iocVariant(t, set, 19, 0.01)
			for _, want := range [][]netip.Prefix{set, next} {
				var gen uint32
				if b.name == BackendNFTables {
					gen = nftGeneration(t, e.bl)
				}
				start := time.Now()
				mustSet(t, e.bl, want, true)
				t.Logf("Set of %d prefixes took %v", len(want), time.Since(start))
				if b.name == BackendNFTables {
					if got := nftGeneration(t, e.bl); got != gen+1 {
						t.Errorf("Set moved the ruleset generation from %d to %d: want one transaction", gen, got)
					}
				}
				requireBlocks(t, e.bl, want)
			}
			mustSet(t, e.bl, next, false)
			mustSet(t, e.bl, nil, true)
			if st := mustObserve(t, e.bl); !st.Absent() {
				t.Fatalf("after Set(nil): %+v", st)
			}
		})
	}
}

// udpStream sends a datagram from one node to an address every
// millisecond until stop, which returns how many arrived.
func udpStream(t *testing.T, from, to netlab.Node, a netip.Addr) (stop func() int) {
	t.Helper()
	in, out, dst, err := udpSockets(from, to, a)
	if err != nil {
		t.Fatal(err)
	}
	var arrived atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			if _, err := in.Read(buf); err != nil {
				return
			}
			arrived.Add(1)
		}
	})
	done := make(chan struct{})
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_, _ = out.WriteToUDPAddrPort([]byte("beacon"), dst)
			}
		}
	})
	stopped := false
	stop = func() int {
		if !stopped {
			stopped = true
			close(done)
			time.Sleep(50 * time.Millisecond) // the last datagrams land
			_ = in.Close()
			_ = out.Close()
			wg.Wait()
		}
		return int(arrived.Load())
	}
	t.Cleanup(func() { stop() })
	return stop
}

// removeByHand deletes a blocked prefix the way a person would, with the
// backend's own tool.
func removeByHand(t *testing.T, bb blockBackend, ns string, p netip.Prefix) {
	t.Helper()
	set, cmd := nftBlock4, "iptables"
	if p.Addr().Is6() {
		set, cmd = nftBlock6, "ip6tables"
	}
	if bb.name == BackendNFTables {
		runArgv([]string{"nft", "delete", "element", "inet", bb.names.nftTable, set, "{", p.String(), "}"})(t, ns)
		return
	}
	runArgv(
		[]string{cmd, "-t", "raw", "-D", bb.names.iptChain, "-s", p.String(), "-j", "DROP"},
		[]string{cmd, "-t", "raw", "-D", bb.names.iptChain, "-d", p.String(), "-j", "DROP"},
	)(t, ns)
}

// TestIOCBlocklistInLab blocks a lab's C2 server, inside a large IoC set,
// on the osaka gateway of a three-site lab, and proves with real packets
// (IPv4 and IPv6, TCP, UDP and ICMP) that nothing passes between the C2
// and osaka (gateway and LAN) either way, despite accepts in other tables
// and chains, while everyone else still gets through; that replacing the
// set lets no packet through in between; that a prefix deleted by hand is
// seen and put back; and that emptying the set leaves the gateway's own
// rules exactly as they were.
func TestIOCBlocklistInLab(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testIOCBlocklistInLab(t, b.ioc)
		})
	}
}

func testIOCBlocklistInLab(t *testing.T, bb blockBackend) {
	netlabtest.Skip(t, bb.tools...)
	lab, hq, osaka, dc := threeSiteLab(t, "lxioc"+bb.name[:3])
	c2, gw := lab.C2(), osaka.Gateway
	serveEcho(t, lab, c2, gw, osaka.LAN, dc.Gateway, dc.LAN, hq.Gateway, lab.Mgmt())
	// The gateway's own firewall already accepts the C2 everywhere it
	// could: raw, filter (ESTABLISHED first) and an nftables table hooked
	// before Warden's.
	runArgv(foreignBlockRules(c2.V4.String(), c2.V6.String())...)(t, gw.NS)
	rulesBefore := ruleDump(t, gw.NS)

	size := 100_000
	if bb.name == BackendIPTables {
		size = 2_000
	}
	c2Prefixes := []netip.Prefix{netip.PrefixFrom(c2.V4, 32), netip.PrefixFrom(c2.V6, 128)}
	set := append(iocSet(t, 7, size-2), c2Prefixes...)
	next := append(iocVariant(t, set[:size-2], 8, 0.01), c2Prefixes...)

	cut := func(wait time.Duration) []probe { return cutOff(lab, c2, gw, osaka.LAN, wait) }
	kept := func() []probe {
		var ps []probe
		ps = append(ps, reach(lab, dc.LAN, osaka.LAN, osaka.LAN.Addrs(), okWait)...)
		ps = append(ps, reach(lab, osaka.LAN, dc.Gateway, dc.Gateway.Addrs(), okWait)...)
		ps = append(ps, reach(lab, hq.Gateway, gw, gw.Addrs(), okWait)...)
		ps = append(ps, reach(lab, lab.Mgmt(), gw, gw.Addrs(), okWait)...)
		// The block is osaka's: the C2 still reaches a site that has none.
		ps = append(ps, reach(lab, c2, dc.Gateway, dc.Gateway.Addrs(), okWait)...)
		return ps
	}
	expectProbes(t, true, append(cut(okWait), kept()...))

	bl := openInLab(t, lab, gw, bb)
	start := time.Now()
	mustSet(t, bl, set, true)
	t.Logf("%s: Set of %d prefixes took %v", bb.name, len(set), time.Since(start))
	requireBlocks(t, bl, set)
	expectProbes(t, false, cut(cutWait))
	expectProbes(t, true, kept())

	// Replacing the set, the C2 in both versions: not one datagram of a
	// steady stream gets through while the kernel changes over.
	stream := udpStream(t, osaka.LAN, c2, c2.V4)
	for _, want := range [][]netip.Prefix{next, set, next} {
		mustSet(t, bl, want, true)
	}
	if n := stream(); n > 0 {
		t.Fatalf("%d datagrams to the C2 got through while the set was replaced", n)
	}
	requireBlocks(t, bl, next)

	// A prefix deleted by hand: the C2 is reachable, Observe says which
	// prefix is missing, and Set puts it back.
	removeByHand(t, bb, gw.NS, c2Prefixes[0])
	expectProbes(t, true, reach(lab, osaka.LAN, c2, []netip.Addr{c2.V4}, okWait))
	drift, err := mustObserve(t, bl).Drift(next)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(drift, "\n"), c2Prefixes[0].String()) {
		t.Fatalf("Drift after deleting %s by hand = %.300q, want it named", c2Prefixes[0], drift)
	}
	mustSet(t, bl, next, true)
	expectProbes(t, false, cut(cutWait))

	// A set without the C2 lets it through again (and the stream that
	// showed nothing above does show traffic that passes).
	mustSet(t, bl, next[:len(next)-2], true)
	expectProbes(t, true, reach(lab, osaka.LAN, c2, c2.Addrs(), okWait))
	stream = udpStream(t, osaka.LAN, c2, c2.V4)
	time.Sleep(200 * time.Millisecond)
	if n := stream(); n == 0 {
		t.Fatal("no datagram of the stream arrived with the C2 unblocked")
	}

	mustSet(t, bl, nil, true)
	if after := ruleDump(t, gw.NS); after != rulesBefore {
		t.Errorf("rules after emptying the set differ from before:\n--- before\n%s\n--- after\n%s", rulesBefore, after)
	}
	expectProbes(t, true, append(cut(okWait), kept()...))
}

// TestIPTablesBlocklistsShareTheTop reads table raw holding both
// blocklists' chains: either may come first, as long as nothing but the
// other blocklist comes before it and that other holds only drops.
func TestIPTablesBlocklistsShareTheTop(t *testing.T) {
	const both = `-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N WARDEN-BLOCK
-N WARDEN-IOC
-A PREROUTING -j WARDEN-BLOCK
-A PREROUTING -j WARDEN-IOC
-A PREROUTING -s 10.1.1.1/32 -j ACCEPT
-A OUTPUT -j WARDEN-IOC
-A OUTPUT -j WARDEN-BLOCK
-A WARDEN-BLOCK -s 198.51.100.7/32 -j DROP
-A WARDEN-BLOCK -d 198.51.100.7/32 -j DROP
-A WARDEN-IOC -s 203.0.113.0/24 -j DROP
-A WARDEN-IOC -d 203.0.113.0/24 -j DROP
`
	tests := map[string]struct {
		table      string
		names      blocklistNames
		wantFaults []string
		wantScript string // "" when Set would leave the jumps alone
	}{
		"ioc behind the peers' chain": {both, iocBlocklist, nil, ""},
		"peers behind the ioc chain":  {both, peerBlocklist, nil, ""},
		"an accept in the chain before": {
			strings.Replace(both, "-A WARDEN-BLOCK -d 198.51.100.7/32 -j DROP", "-A WARDEN-BLOCK -d 198.51.100.7/32 -j ACCEPT", 1),
			iocBlocklist,
			[]string{"PREROUTING: WARDEN-BLOCK, evaluated before WARDEN-IOC, holds a rule that is not a drop: -d 198.51.100.7/32 -j ACCEPT"},
			"-D PREROUTING -j WARDEN-IOC\n-I PREROUTING 1 -j WARDEN-IOC\n",
		},
		"a foreign rule before": {
			strings.Replace(both, "-A PREROUTING -j WARDEN-BLOCK\n", "-A PREROUTING -j WARDEN-BLOCK\n-A PREROUTING -p udp -j ACCEPT\n", 1),
			iocBlocklist,
			[]string{"PREROUTING: another rule is evaluated before WARDEN-IOC"},
			"-D PREROUTING -j WARDEN-IOC\n-I PREROUTING 1 -j WARDEN-IOC\n",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ic := tc.names.rawChain().parse(tc.table)
			fs := ic.observeBlock()
			if !slices.Equal(fs.faults, tc.wantFaults) {
				t.Fatalf("faults = %q, want %q", fs.faults, tc.wantFaults)
			}
			script := string(ic.applyScript(nil))
			jumps := strings.TrimSuffix(script[strings.Index(script, "]\n")+2:], "COMMIT\n")
			if jumps != tc.wantScript {
				t.Fatalf("applyScript moves jumps with %q, want %q", jumps, tc.wantScript)
			}
		})
	}
}

package netfilter

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

const (
	echoPort = 7
	okWait   = 5 * time.Second        // a probe that must get through
	cutWait  = 500 * time.Millisecond // a probe that must be stopped
)

// probe is one attempt to reach a node, named for failure messages.
type probe struct {
	name string
	try  func(ctx context.Context) error
}

// reach builds TCP, UDP and ICMP probes from a namespace to each address.
func reach(lab *netlab.Lab, from netlab.Node, to netlab.Node, addrs []netip.Addr, wait time.Duration) []probe {
	var out []probe
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, echoPort)
		where := fmt.Sprintf("%s -> %s %s", from.Name, to.Name, a)
		out = append(out,
			probe{"tcp " + where, func(ctx context.Context) error { return lab.TCPConnect(ctx, from.NS, ap, wait) }},
			probe{"udp " + where, func(ctx context.Context) error { return lab.UDPEcho(ctx, from.NS, ap, wait) }},
			probe{"ping " + where, func(ctx context.Context) error { return lab.Ping(ctx, from.NS, a, wait) }},
		)
	}
	return out
}

// expectProbes runs probes concurrently; each must succeed (ok) or fail.
func expectProbes(t *testing.T, ok bool, probes []probe) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var bad []string
	for _, p := range probes {
		wg.Go(func() {
			err := p.try(t.Context())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ok && err != nil:
				bad = append(bad, fmt.Sprintf("%s: want reachable, got %v", p.name, err))
			case !ok && err == nil:
				bad = append(bad, fmt.Sprintf("%s: want cut off, but it got through", p.name))
			}
		})
	}
	wg.Wait()
	for _, b := range bad {
		t.Error(b)
	}
	if len(bad) > 0 {
		t.FailNow()
	}
}

// TestQuarantineInLab quarantines the hq gateway of a three-site lab with
// real traffic, over IPv4 and IPv6, with each backend.
func TestQuarantineInLab(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testQuarantineInLab(t, b.quarantine)
		})
	}
}

// threeSiteLab builds a lab of the sites hq, osaka and dc, closed when the
// test ends.
func threeSiteLab(t *testing.T, prefix string) (lab *netlab.Lab, hq, osaka, dc netlab.Site) {
	t.Helper()
	lab = netlabtest.New(t, netlab.Options{Prefix: prefix, Sites: []string{"hq", "osaka", "dc"}})
	hq, _ = lab.Site("hq")
	osaka, _ = lab.Site("osaka")
	dc, _ = lab.Site("dc")
	return lab, hq, osaka, dc
}

// serveEcho starts an echo server on echoPort (TCP, UDP, IPv4 and IPv6) in
// each node's namespace.
func serveEcho(t *testing.T, lab *netlab.Lab, nodes ...netlab.Node) {
	t.Helper()
	for _, n := range nodes {
		if _, err := lab.ServeEcho(n.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), echoPort)); err != nil {
			t.Fatal(err)
		}
	}
}

func testQuarantineInLab(t *testing.T, bk quarantineBackend) {
	netlabtest.Skip(t, bk.tools...)
	ctx := t.Context()
	lab, hq, osaka, dc := threeSiteLab(t, "lxq"+bk.name[:3])
	gw, c2, mgmt := hq.Gateway, lab.C2(), lab.Mgmt()
	serveEcho(t, lab, c2, mgmt, gw, hq.LAN, osaka.Gateway, osaka.LAN, dc.LAN)
	run := func(ns string, cmds ...[]string) {
		t.Helper()
		for _, argv := range cmds {
			if _, err := lab.Run(ctx, ns, argv...); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The gateway's own firewall, before Warden: ESTABLISHED accepted first
	// (the rule that would keep a C2 session alive under a naive
	// quarantine), and an unrelated rule that must survive release.
	var existing [][]string
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, chain := range []string{"INPUT", "OUTPUT", "FORWARD"} {
			existing = append(existing, []string{cmd, "-I", chain, "1", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"})
		}
		existing = append(existing, []string{cmd, "-A", "INPUT", "-p", "tcp", "--dport", "2222", "-j", "ACCEPT"})
	}
	run(gw.NS, existing...)
	rulesBefore := dumpRules(t, ctx, gw.NS)

	// Before: the compromised gateway beacons to C2 over established
	// sessions (its own and its LAN's, forwarded), and everything reaches
	// everything.
	type session struct {
		name string
		s    *netlab.Session
	}
	var c2Sessions, mgmtSessions []session
	for _, a := range c2.Addrs() {
		for _, from := range []netlab.Node{gw, hq.LAN} {
			s, err := lab.OpenSession(ctx, from.NS, netip.AddrPortFrom(a, echoPort))
			if err != nil {
				t.Fatal(err)
			}
			c2Sessions = append(c2Sessions, session{fmt.Sprintf("%s -> c2 %s", from.Name, a), s})
		}
	}
	for _, a := range gw.Addrs() {
		s, err := lab.OpenSession(ctx, mgmt.NS, netip.AddrPortFrom(a, echoPort))
		if err != nil {
			t.Fatal(err)
		}
		mgmtSessions = append(mgmtSessions, session{fmt.Sprintf("mgmt -> %s %s", gw.Name, a), s})
	}
	cut := func(wait time.Duration) []probe {
		var ps []probe
		ps = append(ps, reach(lab, gw, c2, c2.Addrs(), wait)...)
		ps = append(ps, reach(lab, hq.LAN, c2, c2.Addrs(), wait)...)
		ps = append(ps, reach(lab, c2, gw, gw.Addrs(), wait)...)
		ps = append(ps, reach(lab, osaka.Gateway, gw, gw.Addrs(), wait)...)
		ps = append(ps, reach(lab, osaka.LAN, gw, append(gw.Addrs(), hq.GatewayLAN.Addrs()...), wait)...)
		ps = append(ps, reach(lab, gw, osaka.Gateway, osaka.Gateway.Addrs(), wait)...)
		ps = append(ps, reach(lab, gw, dc.LAN, dc.LAN.Addrs(), wait)...)
		ps = append(ps, reach(lab, dc.LAN, hq.LAN, hq.LAN.Addrs(), wait)...)
		return ps
	}
	kept := func() []probe {
		var ps []probe
		ps = append(ps, reach(lab, mgmt, gw, gw.Addrs(), okWait)...)
		ps = append(ps, reach(lab, gw, mgmt, mgmt.Addrs(), okWait)...)
		ps = append(ps, reach(lab, osaka.LAN, dc.LAN, dc.LAN.Addrs(), okWait)...) // other sites unaffected
		return ps
	}
	expectProbes(t, true, append(cut(okWait), kept()...))

	// Quarantine, from inside the gateway's namespace.
	var fw Quarantine
	if err := lab.Do(gw.NS, func() error { fw = bk.newFW(t, testLogger(t)); return nil }); err != nil {
		t.Fatal(err)
	}
	spec := wire.QuarantineSpec{Management: lab.ManagementPrefixes()}
	start := time.Now()
	if changed, err := fw.Apply(ctx, spec); err != nil || !changed {
		t.Fatalf("Apply = %t, %v", changed, err)
	}
	applied := time.Since(start)
	var killed int
	if err := lab.Do(gw.NS, func() error {
		var err error
		killed, err = KillFlows(ctx, spec.Keep())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: Apply took %v, then KillFlows killed %d flows in %v", bk.name, applied, killed, time.Since(start)-applied)
	if killed < len(c2Sessions) {
		t.Errorf("KillFlows killed %d flows, want at least the %d C2 sessions", killed, len(c2Sessions))
	}
	if st, err := fw.Observe(ctx); err != nil || !st.Quarantined() {
		t.Fatalf("Observe after Apply = %+v, %v", st, err)
	}

	// Management must resolve its neighbours afresh under the quarantine
	// (IPv6 neighbour discovery through the wan router).
	run(gw.NS, []string{"ip", "neigh", "flush", "all"})
	run(lab.WAN().NS, []string{"ip", "neigh", "flush", "all"})

	// After: the open C2 sessions are dead, despite the ESTABLISHED accepts;
	// nothing new gets in or out; management still works both ways, and its
	// open session survived KillFlows.
	for _, s := range c2Sessions {
		if err := s.s.Alive(cutWait); err == nil {
			t.Errorf("C2 session %s survived the quarantine", s.name)
		}
	}
	for _, s := range mgmtSessions {
		if err := s.s.Alive(okWait); err != nil {
			t.Errorf("management session %s died: %v", s.name, err)
		}
	}
	expectProbes(t, false, cut(cutWait))
	expectProbes(t, true, kept())

	// Release: only Warden's rules go, and traffic flows again.
	if changed, err := fw.Remove(ctx); err != nil || !changed {
		t.Fatalf("Remove = %t, %v", changed, err)
	}
	if after := dumpRules(t, ctx, gw.NS); after != rulesBefore {
		t.Errorf("rules after Remove differ from before Apply:\n--- before\n%s\n--- after\n%s", rulesBefore, after)
	}
	expectProbes(t, true, append(cut(okWait), kept()...))
	if changed, err := fw.Remove(ctx); err != nil || changed {
		t.Fatalf("second Remove = %t, %v", changed, err)
	}
}

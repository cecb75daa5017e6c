package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"
)

const (
	echoPort = 7
	okWait   = 5 * time.Second        // a probe that must succeed
	failWait = 300 * time.Millisecond // a probe that must fail
)

func TestOptionsValidate(t *testing.T) {
	tests := map[string]struct {
		opt     Options
		wantErr string
	}{
		"ok":              {opt: Options{Prefix: "t1", Sites: []string{"hq", "osaka"}}},
		"empty prefix":    {opt: Options{Sites: []string{"hq"}}, wantErr: "prefix"},
		"prefix too long": {opt: Options{Prefix: "abcdefghijklm", Sites: []string{"hq"}}, wantErr: "prefix"},
		"prefix dash":     {opt: Options{Prefix: "a-b", Sites: []string{"hq"}}, wantErr: "prefix"},
		"prefix upper":    {opt: Options{Prefix: "Lab", Sites: []string{"hq"}}, wantErr: "prefix"},
		"no sites":        {opt: Options{Prefix: "t1"}, wantErr: "1 to 100 sites"},
		"site too long":   {opt: Options{Prefix: "t1", Sites: []string{"osakabranch"}}, wantErr: "site"},
		"site slash":      {opt: Options{Prefix: "t1", Sites: []string{"a/b"}}, wantErr: "site"},
		"duplicate site":  {opt: Options{Prefix: "t1", Sites: []string{"hq", "hq"}}, wantErr: "duplicate"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.opt.validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("validate = %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	l := plan(Options{Prefix: "p", Sites: []string{"hq", "osaka"}})
	osaka, ok := l.Site("osaka")
	if !ok {
		t.Fatal("site osaka missing")
	}
	got := fmt.Sprintf("%v %v %v %v %v %v %v %v",
		osaka.Gateway.NS, osaka.Gateway.V4, osaka.Gateway.V6, osaka.LAN.NS, osaka.LAN.V4, osaka.LAN.V6, osaka.Prefix4, osaka.Prefix6)
	want := "p-gw-osaka 198.18.0.11 fd00:18::b p-lan-osaka 198.18.2.10 fd00:20:2::a 198.18.2.0/24 fd00:20:2::/64"
	if got != want {
		t.Errorf("site osaka:\n got %s\nwant %s", got, want)
	}
	if got, want := fmt.Sprint(l.Namespaces()), "[p-wan p-c2 p-mgmt p-gw-hq p-lan-hq p-gw-osaka p-lan-osaka]"; got != want {
		t.Errorf("Namespaces = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(l.ManagementPrefixes()), "[198.19.0.0/24 fd00:19::/64]"; got != want {
		t.Errorf("ManagementPrefixes = %s, want %s", got, want)
	}
}

// newLab builds a lab that is torn down when the test ends, pass or fail.
func newLab(t *testing.T, prefix string, sites ...string) *Lab {
	t.Helper()
	skip(t)
	lab, err := New(t.Context(), Options{Prefix: prefix, Sites: sites})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return lab
}

func serve(t *testing.T, lab *Lab, ns string) {
	t.Helper()
	if _, err := lab.ServeEcho(ns, netip.AddrPortFrom(netip.IPv6Unspecified(), echoPort)); err != nil {
		t.Fatalf("ServeEcho in %s: %v", ns, err)
	}
}

// probeAll checks TCP, UDP and ICMP from one node to another over both
// families, in parallel, and returns every failure.
func probeAll(t *testing.T, lab *Lab, from string, to Node) error {
	t.Helper()
	ctx := t.Context()
	var g errgroup.Group
	for _, a := range to.Addrs() {
		ap := netip.AddrPortFrom(a, echoPort)
		g.Go(func() error { return lab.TCPConnect(ctx, from, ap, okWait) })
		g.Go(func() error { return lab.UDPEcho(ctx, from, ap, okWait) })
		g.Go(func() error { return lab.Ping(ctx, from, a, okWait) })
	}
	return g.Wait()
}

func TestLabConnectivity(t *testing.T) {
	lab := newLab(t, "nlconn", "hq", "osaka", "dc")
	hq, _ := lab.Site("hq")
	osaka, _ := lab.Site("osaka")
	dc, _ := lab.Site("dc")
	for _, n := range []Node{lab.C2(), lab.Mgmt(), hq.Gateway, osaka.Gateway, osaka.LAN, dc.LAN} {
		serve(t, lab, n.NS)
	}
	tests := map[string]struct {
		from string
		to   Node
	}{
		"gateway to c2":              {hq.Gateway.NS, lab.C2()},
		"lan to c2 through gateway":  {hq.LAN.NS, lab.C2()},
		"lan to lan across sites":    {hq.LAN.NS, osaka.LAN},
		"lan to third site lan":      {osaka.LAN.NS, dc.LAN},
		"gateway to peer gateway":    {hq.Gateway.NS, osaka.Gateway},
		"gateway to peer lan":        {hq.Gateway.NS, dc.LAN},
		"mgmt to gateway":            {lab.Mgmt().NS, hq.Gateway},
		"gateway to mgmt":            {hq.Gateway.NS, lab.Mgmt()},
		"peer lan to other gateway":  {osaka.LAN.NS, hq.Gateway},
		"c2 to gateway (the attack)": {lab.C2().NS, hq.Gateway},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := probeAll(t, lab, tc.from, tc.to); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestProbesFailWhenUnreachable(t *testing.T) {
	lab := newLab(t, "nlfail", "hq")
	hq, _ := lab.Site("hq")
	serve(t, lab, lab.C2().NS)
	sessions := map[string]*Session{}
	for _, a := range lab.C2().Addrs() {
		s, err := lab.OpenSession(t.Context(), hq.Gateway.NS, netip.AddrPortFrom(a, echoPort))
		if err != nil {
			t.Fatal(err)
		}
		sessions[a.String()] = s
	}
	// Cut the C2 server off the internet: every probe must now report it.
	if _, err := lab.Run(t.Context(), lab.C2().NS, "ip", "link", "set", uplinkName, "down"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, a := range lab.C2().Addrs() {
		ap := netip.AddrPortFrom(a, echoPort)
		if err := lab.TCPConnect(ctx, hq.Gateway.NS, ap, failWait); err == nil {
			t.Errorf("TCPConnect to %s succeeded with the server's link down", ap)
		}
		if err := lab.UDPEcho(ctx, hq.Gateway.NS, ap, failWait); err == nil {
			t.Errorf("UDPEcho to %s succeeded with the server's link down", ap)
		}
		if err := lab.Ping(ctx, hq.Gateway.NS, a, failWait); err == nil {
			t.Errorf("Ping to %s succeeded with the server's link down", a)
		}
		s := sessions[a.String()]
		if err := s.Alive(failWait); err == nil {
			t.Errorf("session to %s still alive with the server's link down", a)
		}
		if _, err := lab.Run(ctx, lab.C2().NS, "ip", "link", "set", uplinkName, "up"); err != nil {
			t.Fatal(err)
		}
		if err := s.Alive(okWait); err == nil {
			t.Errorf("a dead session to %s came back: Alive must stay failed", a)
		}
		if _, err := lab.Run(ctx, lab.C2().NS, "ip", "link", "set", uplinkName, "down"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLabsCoexistAndStaleLabIsReplaced(t *testing.T) {
	skip(t)
	a := newLab(t, "nlcoa", "hq")
	b := newLab(t, "nlcob", "hq")
	// Same site names, same addresses, different namespaces: both work.
	for _, lab := range []*Lab{a, b} {
		hq, _ := lab.Site("hq")
		serve(t, lab, lab.C2().NS)
		if err := lab.TCPConnect(t.Context(), hq.LAN.NS, netip.AddrPortFrom(lab.C2().V6, echoPort), okWait); err != nil {
			t.Errorf("lab %s: %v", lab.Prefix(), err)
		}
	}

	// A crashed run leaves a lab behind; the next New with that prefix
	// removes it (its namespaces, servers' sockets aside) and builds afresh.
	stale, err := New(t.Context(), Options{Prefix: "nlstale", Sites: []string{"hq", "old"}})
	if err != nil {
		t.Fatal(err)
	}
	fresh := newLab(t, "nlstale", "hq")
	if _, err := netns.GetFromName("nlstale-gw-old"); err == nil {
		t.Error("stale namespace nlstale-gw-old survived New")
	}
	hq, _ := fresh.Site("hq")
	serve(t, fresh, fresh.Mgmt().NS)
	if err := probeAll(t, fresh, hq.Gateway.NS, fresh.Mgmt()); err != nil {
		t.Errorf("rebuilt lab: %v", err)
	}
	_ = stale // its namespaces are gone already; closing it would delete fresh's.

	if err := fresh.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	left, err := namespacesWithPrefix("nlstale-")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
}

func TestDoRestoresTheThread(t *testing.T) {
	skip(t)
	ns, err := NewNamespace("nldo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	target, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()

	sentinel := errors.New("from fn")
	err = ns.Do(func() error {
		inside, err := netns.Get()
		if err != nil {
			return err
		}
		defer inside.Close()
		if !inside.Equal(target) {
			return errors.New("fn did not run inside the namespace")
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Do = %v, want fn's error", err)
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Fatal("Do left the thread in another namespace")
	}
}

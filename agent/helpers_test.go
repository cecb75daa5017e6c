package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/internal/clock/clocktest"
)

// testEpoch is where the harness's fake clock starts.
var testEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeFirewall records calls. Observe reports the applied spec, or drift
// when drift is set.
type fakeFirewall struct {
	mu       sync.Mutex
	applied  []wire.QuarantineSpec
	removes  int
	active   *wire.QuarantineSpec
	drift    bool
	applyErr error
	// onApply runs before each Apply (to inspect the state on disk).
	onApply func(wire.QuarantineSpec)
}

func (f *fakeFirewall) Apply(_ context.Context, s wire.QuarantineSpec) (bool, error) {
	f.mu.Lock()
	hook := f.onApply
	f.mu.Unlock()
	if hook != nil {
		hook(s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, s)
	if f.applyErr != nil {
		return false, f.applyErr
	}
	changed := f.active == nil || !specEqual(*f.active, s) || f.drift
	f.active, f.drift = &s, false
	return changed, nil
}

func (f *fakeFirewall) Remove(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes++
	had := f.active != nil
	f.active = nil
	return had, nil
}

func (f *fakeFirewall) Observe(_ context.Context, want wire.QuarantineSpec) (wire.FirewallState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := wire.FirewallState{Backend: "fake", Quarantined: f.active != nil && !f.drift, Absent: f.active == nil}
	if len(want.Management) > 0 && (f.active == nil || f.drift || !specEqual(*f.active, want)) {
		st.Drift = []string{"ipv4: quarantine chain missing"}
	}
	return st, nil
}

func (f *fakeFirewall) applies() []wire.QuarantineSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applied)
}

func (f *fakeFirewall) removeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removes
}

func (f *fakeFirewall) setDrift() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drift = true
}

func specEqual(a, b wire.QuarantineSpec) bool {
	return slices.Equal(a.Management, b.Management) && slices.Equal(a.Forensics, b.Forensics)
}

// fakeFlows counts KillFlows calls; onKill, when set, runs first.
type fakeFlows struct {
	mu     sync.Mutex
	calls  [][]netip.Prefix
	onKill func()
}

func (k *fakeFlows) kill(_ context.Context, keep []netip.Prefix) (int, error) {
	if k.onKill != nil {
		k.onKill()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, slices.Clone(keep))
	if len(k.calls) == 1 {
		return 3, nil
	}
	return 0, nil
}

// fakeLinks is a set of links.
type fakeLinks struct {
	mu    sync.Mutex
	links []Link
}

func (l *fakeLinks) Links(context.Context) ([]Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.links), nil
}

func (l *fakeLinks) set(name string, up bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.links {
		if l.links[i].Name == name {
			l.links[i].Up = up
			return nil
		}
	}
	return errors.New("no such link")
}

func (l *fakeLinks) SetDown(_ context.Context, name string) error { return l.set(name, false) }
func (l *fakeLinks) SetUp(_ context.Context, name string) error   { return l.set(name, true) }

func (l *fakeLinks) up() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[string]bool{}
	for _, k := range l.links {
		m[k.Name] = k.Up
	}
	return m
}

// fakeSAs holds established SAs.
type fakeSAs struct {
	mu         sync.Mutex
	up         []wire.SA
	terminated []string
	initiated  []string
}

func (s *fakeSAs) List(context.Context) ([]wire.SA, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.up), nil
}

func (s *fakeSAs) Terminate(_ context.Context, sa wire.SA) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.terminated = append(s.terminated, sa.IKE)
	s.up = slices.DeleteFunc(s.up, func(o wire.SA) bool { return o.IKE == sa.IKE })
	return nil
}

func (s *fakeSAs) Initiate(_ context.Context, sa wire.SA) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initiated = append(s.initiated, sa.IKE)
	s.up = append(s.up, sa)
	return nil
}

// pki is the lab key material plus certificates for negative tests.
type pki struct {
	dir string
	// otherCA holds a complete second set (a foreign CA).
	otherCA string
	// wrongName is a client certificate from the right CA naming someone
	// else.
	wrongName tls.Certificate
}

func newPKI(t testing.TB) pki {
	t.Helper()
	p := pki{dir: t.TempDir(), otherCA: t.TempDir()}
	if _, err := Init(p.dir, []string{"localhost", "127.0.0.1", "::1"}, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(p.otherCA, []string{"localhost", "127.0.0.1"}, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	p.wrongName = issueClient(t, p.dir, "intruder")
	return p
}

// issueClient signs a client certificate for cn with the CA in dir.
func issueClient(t testing.TB, dir, cn string) tls.Certificate {
	t.Helper()
	caCert := readCert(t, filepath.Join(dir, CAFile))
	b, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, &key.PublicKey, k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p pki) controllerCert(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(p.dir, ControllerCertFile), filepath.Join(p.dir, ControllerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// harness is one agent on loopback with fakes.
type harness struct {
	t       testing.TB
	log     *slog.Logger
	pki     pki
	cfg     Config
	clock   *clocktest.Fake
	fw      *fakeFirewall
	flows   *fakeFlows
	links   *fakeLinks
	sas     *fakeSAs
	capture CaptureFunc
	// pcap is the packet capture seam (nil: 501).
	pcap PacketCaptureFunc
	// wg, vici and blocker are the tunnel seams (nil: 501).
	wg      WireGuardController
	vici    VICIRunner
	blocker Blocker
	// realTime runs the agent on the system clock instead of clock.
	realTime bool
	srv      *Server
	url      string
	// ctl is the controller's client, kept so connections are reused.
	ctl  *http.Client
	stop func()
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	p := newPKI(t)
	return &harness{
		t:   t,
		log: testLogger(t),
		pki: p,
		cfg: Config{
			CertFile:     filepath.Join(p.dir, AgentCertFile),
			KeyFile:      filepath.Join(p.dir, AgentKeyFile),
			ClientCAFile: filepath.Join(p.dir, CAFile),
			StateDir:     filepath.Join(t.TempDir(), "state"),
			Management:   []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		},
		clock: clocktest.NewFake(testEpoch),
		fw:    &fakeFirewall{},
		flows: &fakeFlows{},
		links: &fakeLinks{links: []Link{
			{Name: "wg0", Type: "wireguard", Up: true},
			{Name: "wg-site-b", Type: "tun", Up: true},
			{Name: "eth0", Type: "veth", Up: true},
		}},
		sas: &fakeSAs{up: []wire.SA{{IKE: "site-b", Children: []string{"lan"}}}},
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

// start builds and serves the agent; the harness's fakes may be replaced
// between a stop and the next start to model a restart.
func (h *harness) start() {
	h.t.Helper()
	var c clock.Clock = h.clock
	if h.realTime {
		c = clock.Real
	}
	srv, err := New(h.cfg, Deps{
		Firewall: h.fw, KillFlows: h.flows.kill, Capture: h.capture, PacketCapture: h.pcap,
		Links: h.links, SAs: h.sas, Clock: c,
		WireGuard: h.wg, VICI: h.vici, Blocker: h.blocker,
	}, h.log)
	if err != nil {
		h.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	h.srv, h.url = srv, "https://"+ln.Addr().String()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("serve: %v", err)
		}
		if err := srv.Close(); err != nil {
			h.t.Errorf("close: %v", err)
		}
	}
	h.t.Cleanup(h.stop)
	// Serve restores before it accepts; a health check proves both.
	h.waitHealthy()
}

func (h *harness) waitHealthy() {
	h.t.Helper()
	c := h.client(h.pki.controllerCert(h.t))
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(h.url + wire.HealthPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("agent not healthy: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client returns an HTTPS client trusting the lab CA, presenting certs.
func (h *harness) client(certs ...tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(readCert(h.t, filepath.Join(h.pki.dir, CAFile)))
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS13,
		}},
	}
}

// command builds a command valid now on the agent's clock.
func (h *harness) command(kind string, params any) wire.Command {
	h.t.Helper()
	now := h.clock.Now()
	if h.realTime {
		now = time.Now()
	}
	c, err := wire.NewCommand(kind, params, now, 30*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// post sends raw bytes as the controller and returns status and body.
func (h *harness) post(body []byte) (int, []byte) {
	h.t.Helper()
	if h.ctl == nil {
		h.ctl = h.client(h.pki.controllerCert(h.t))
	}
	resp, err := h.ctl.Post(h.url+wire.CommandsPath, "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// do sends a fresh command and decodes a 200 into out.
func (h *harness) do(kind string, params, out any) {
	h.t.Helper()
	status, body := h.send(h.command(kind, params))
	if status != http.StatusOK {
		h.t.Fatalf("%s: status %d: %s", kind, status, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) send(c wire.Command) (int, []byte) {
	h.t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.post(b)
}

// newIsolatedHarness starts a harness and quarantines the lab gateway
// (labIsolate), confirming the quarantine when confirm is set.
func newIsolatedHarness(t testing.TB, confirm bool) (*harness, wire.IsolateResult) {
	t.Helper()
	h := newHarness(t)
	h.start()
	res := h.isolate(labIsolate)
	if confirm {
		h.confirm(res.Generation)
	}
	return h, res
}

func (h *harness) isolate(p wire.IsolateParams) wire.IsolateResult {
	h.t.Helper()
	var r wire.IsolateResult
	h.do(wire.KindIsolate, p, &r)
	return r
}

func (h *harness) confirm(gen int64) {
	h.t.Helper()
	h.do(wire.KindConfirm, wire.ConfirmParams{Generation: gen}, nil)
}

func (h *harness) observe() wire.State {
	h.t.Helper()
	var st wire.State
	h.do(wire.KindObserve, nil, &st)
	return st
}

var labIsolate = wire.IsolateParams{Management: []string{"198.51.100.0/24"}, Forensics: []string{"203.0.113.7"}}

// labSpec is what labIsolate becomes: the agent adds its configured
// management network and the caller (loopback here).
func labSpec() wire.QuarantineSpec {
	return wire.QuarantineSpec{
		Management: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.1/32"),
			netip.MustParsePrefix("192.0.2.0/24"),
			netip.MustParsePrefix("198.51.100.0/24"),
		},
		Forensics: []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")},
	}
}

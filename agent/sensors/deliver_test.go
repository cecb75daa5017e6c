package sensors_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/sensors"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/internal/mtls"
)

// dlPKI is one lab CA (agent.Init) with the certificate of gateway gw-hq,
// as `warden agent init --gateway gw-hq` writes it, and the controller's.
type dlPKI struct{ dir string }

func newDlPKI(t *testing.T) dlPKI {
	t.Helper()
	dir := t.TempDir()
	if _, err := agent.Init(dir, []string{"gw-hq.example", "127.0.0.1"}, agent.InitOptions{Gateway: "gw-hq"}); err != nil {
		t.Fatal(err)
	}
	return dlPKI{dir: dir}
}

// agentTLS is the gateway's side: its certificate, the lab CA, and the
// controller identity as the server name.
func (p dlPKI) agentTLS(t *testing.T) *tls.Config {
	t.Helper()
	m, err := mtls.Load(mtls.Files{CertFile: filepath.Join(p.dir, agent.GatewayCertFile("gw-hq")), KeyFile: filepath.Join(p.dir, agent.GatewayKeyFile("gw-hq")),
		CAFile: filepath.Join(p.dir, agent.CAFile), CertName: "agent certificate", CAName: "controller CA"})
	if err != nil {
		t.Fatal(err)
	}
	return sensors.ControllerTLS(m, wire.DefaultControllerIdentity)
}

// fakeController is the controller's agent listener: mutual TLS with the
// lab CA, answering as its mode says, and recording what it took.
type fakeController struct {
	srv *httptest.Server

	mu       sync.Mutex
	mode     string // "up", "down" (the connection drops), "drop reused" (a connection's second request drops it), "busy" (503), "forbidden" (403), or "refuse KIND" (400 for a batch holding KIND)
	taken    []string
	requests int
	conns    map[string]bool // the connections (by the client's address) that served a request
	peers    []string
	// resumed and chains: each delivery's TLS session was resumed, and
	// how many verified chains the connection had.
	resumed []bool
	chains  []int
}

func newFakeController(t *testing.T, p dlPKI) *fakeController {
	t.Helper()
	m, err := mtls.Load(mtls.Files{CertFile: filepath.Join(p.dir, agent.ControllerCertFile), KeyFile: filepath.Join(p.dir, agent.ControllerKeyFile),
		CAFile: filepath.Join(p.dir, agent.CAFile), CertName: "controller certificate", CAName: "agent CA"})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeController{mode: "up"}
	fc.srv = httptest.NewUnstartedServer(http.HandlerFunc(fc.serve))
	fc.srv.TLS = m.Server()
	fc.srv.StartTLS()
	t.Cleanup(fc.srv.Close)
	return fc
}

func (fc *fakeController) setMode(m string) {
	fc.mu.Lock()
	fc.mode = m
	fc.mu.Unlock()
}

func (fc *fakeController) serve(w http.ResponseWriter, r *http.Request) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.requests++
	reused := fc.conns[r.RemoteAddr]
	if fc.conns == nil {
		fc.conns = map[string]bool{}
	}
	fc.conns[r.RemoteAddr] = true
	switch {
	case fc.mode == "down" || (fc.mode == "drop reused" && reused):
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	case fc.mode == "busy":
		w.Header().Set("Retry-After", "7")
		http.Error(w, `{"error":"the store cannot commit"}`, http.StatusServiceUnavailable)
		return
	case fc.mode == "forbidden":
		http.Error(w, `{"error":"certificate names no gateway"}`, http.StatusForbidden)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != sensors.AgentFindingsPath || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	var b wire.FindingBatch
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if kind, ok := strings.CutPrefix(fc.mode, "refuse "); ok {
		for _, f := range b.Findings {
			if f.Kind == kind {
				http.Error(w, `{"error":"findings[0].kind: unknown kind"}`, http.StatusBadRequest)
				return
			}
		}
	}
	for _, f := range b.Findings {
		fc.taken = append(fc.taken, f.Key)
	}
	fc.peers = append(fc.peers, r.TLS.PeerCertificates[0].Subject.CommonName)
	fc.resumed, fc.chains = append(fc.resumed, r.TLS.DidResume), append(fc.chains, len(r.TLS.VerifiedChains))
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"accepted":1}`))
}

func (fc *fakeController) takenKeys() []string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return slices.Clone(fc.taken)
}

func newSender(t *testing.T, q *sensors.Queue, url string, tlsCfg *tls.Config, edit func(*sensors.SenderOptions)) *sensors.Sender {
	t.Helper()
	opt := sensors.SenderOptions{URL: url, TLS: tlsCfg}
	if edit != nil {
		edit(&opt)
	}
	s, err := sensors.NewSender(q, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func nextDelivery(t *testing.T, ch <-chan sensors.Delivery) sensors.Delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery attempt within 30s")
		return sensors.Delivery{}
	}
}

// TestDeliverRetriesUntilTheControllerIsBack: findings queued while the
// controller is away are retried on the clock, with growing waits that
// honour Retry-After, and arrive once when it is back; later findings go
// at once.
func TestDeliverRetriesUntilTheControllerIsBack(t *testing.T) {
	p := newDlPKI(t)
	fc := newFakeController(t, p)
	q := openQueue(t, t.TempDir(), sensors.QueueOptions{})
	appendKeys(t, q, "a", "b")
	clk := clocktest.NewFake(qT0)
	seen := make(chan sensors.Delivery, 16)
	s := newSender(t, q, fc.srv.URL, p.agentTLS(t), func(o *sensors.SenderOptions) {
		o.Clock, o.Observe = clk, func(d sensors.Delivery) { seen <- d }
		o.BackoffMin, o.BackoffMax = time.Second, 10*time.Second
	})
	// Each step: what the controller does, then what the attempt must say.
	steps := []struct {
		mode               string
		status             int
		retryMin, retryMax time.Duration // 0: delivered, no retry
	}{
		{"down", 0, 800 * time.Millisecond, time.Second},      // first failure: BackoffMin, less jitter
		{"down", 0, 1600 * time.Millisecond, 2 * time.Second}, // doubled
		{"busy", 503, 7 * time.Second, 7 * time.Second},       // Retry-After 7 beats the backoff of 4s
		{"forbidden", 403, 6400 * time.Millisecond, 8 * time.Second},
		{"up", 202, 0, 0},
	}
	fc.setMode(steps[0].mode)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	d := nextDelivery(t, seen)
	for i, st := range steps {
		if d.Status != st.status || d.Findings != 2 {
			t.Fatalf("step %d (%s): delivery %+v, want status %d for 2 findings", i, st.mode, d, st.status)
		}
		if st.retryMax == 0 {
			if !d.Delivered || d.Retry || d.Err != nil {
				t.Fatalf("step %d: %+v, want delivered", i, d)
			}
			break
		}
		if !d.Retry || d.Err == nil || d.RetryIn < st.retryMin || d.RetryIn > st.retryMax {
			t.Fatalf("step %d (%s): retry %v in %v (err %v), want a retry in [%v, %v]", i, st.mode, d.Retry, d.RetryIn, d.Err, st.retryMin, st.retryMax)
		}
		if pend, keys := q.Stats().Pending, fc.takenKeys(); pend != 2 || len(keys) != 0 {
			t.Fatalf("step %d (%s): %d pending and the controller took %v; want both still queued", i, st.mode, pend, keys)
		}
		fc.setMode(steps[i+1].mode)
		clk.Advance(d.RetryIn)
		d = nextDelivery(t, seen)
	}
	if keys := fc.takenKeys(); !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("the controller took %v, want a and b once", keys)
	}
	if st := q.Stats(); st.Pending != 0 {
		t.Fatalf("%d still pending after delivery", st.Pending)
	}

	// Back to normal: a new finding goes at once, no clock needed.
	appendKeys(t, q, "c")
	if d := nextDelivery(t, seen); !d.Delivered || d.Findings != 1 {
		t.Fatalf("new finding: %+v", d)
	}
	if keys := fc.takenKeys(); !slices.Equal(keys, []string{"a", "b", "c"}) {
		t.Fatalf("the controller took %v, want a, b, c once each", keys)
	}
	fc.mu.Lock()
	peers := slices.Compact(slices.Clone(fc.peers))
	fc.mu.Unlock()
	if !slices.Equal(peers, []string{"gw-hq"}) {
		t.Fatalf("the controller saw certificates %v, want gw-hq's", peers)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
}

// TestDeliverAcrossAgentRestart: findings queued while the controller is
// down survive the agent's restart and are delivered once by the new
// sender.
func TestDeliverAcrossAgentRestart(t *testing.T) {
	p := newDlPKI(t)
	fc := newFakeController(t, p)
	fc.setMode("down")
	dir := t.TempDir()
	q, err := sensors.OpenQueue(dir, sensors.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appendKeys(t, q, "a", "b")
	s := newSender(t, q, fc.srv.URL, p.agentTLS(t), nil)
	if d := s.DeliverBatch(t.Context()); d.Delivered || !d.Retry {
		t.Fatalf("controller down: %+v", d)
	}
	s.Close()
	_ = q.Close()

	fc.setMode("up")
	q2 := openQueue(t, dir, sensors.QueueOptions{})
	s2 := newSender(t, q2, fc.srv.URL, p.agentTLS(t), nil)
	if d := s2.DeliverBatch(t.Context()); !d.Delivered || d.Findings != 2 {
		t.Fatalf("after restart: %+v", d)
	}
	if d := s2.DeliverBatch(t.Context()); d.Findings != 0 || d.Err != nil {
		t.Fatalf("nothing should be left: %+v", d)
	}
	if keys := fc.takenKeys(); !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("the controller took %v, want a and b once", keys)
	}
}

// TestDeliverIsolatesAMalformedFinding: a batch the controller refuses as
// malformed is halved until the one finding it refuses is found and
// dropped; the others are delivered, once each, in order.
func TestDeliverIsolatesAMalformedFinding(t *testing.T) {
	p := newDlPKI(t)
	fc := newFakeController(t, p)
	fc.setMode("refuse bogus")
	q := openQueue(t, t.TempDir(), sensors.QueueOptions{})
	for _, k := range []string{"a", "x", "b", "c"} {
		f := queueFinding(k)
		if k == "x" {
			f.Kind = "bogus"
		}
		if err := q.Append(f); err != nil {
			t.Fatal(err)
		}
	}
	s := newSender(t, q, fc.srv.URL, p.agentTLS(t), func(o *sensors.SenderOptions) { o.MaxBatch = 4 })
	dropped := 0
	for range 10 {
		d := s.DeliverBatch(t.Context())
		if d.Findings == 0 {
			break
		}
		if d.Retry {
			t.Fatalf("a malformed batch is not retried as it is: %+v", d)
		}
		dropped += d.Dropped
	}
	if keys := fc.takenKeys(); !slices.Equal(keys, []string{"a", "b", "c"}) {
		t.Fatalf("the controller took %v, want a, b, c", keys)
	}
	if dropped != 1 || q.Stats().Pending != 0 {
		t.Fatalf("dropped %d, pending %d; want the bogus one dropped and nothing left", dropped, q.Stats().Pending)
	}
}

// TestDeliverRefusals: a controller the agent cannot trust, or that cannot
// trust the agent, gets nothing, and the findings stay queued.
func TestDeliverRefusals(t *testing.T) {
	p := newDlPKI(t)
	fc := newFakeController(t, p)
	foreign := newDlPKI(t) // another CA
	tests := map[string]struct {
		tls  func(t *testing.T) *tls.Config
		want string
	}{
		"an agent certificate of another CA": {tls: foreign.agentTLS, want: "posting findings"},
		"a controller that is not the controller identity": {tls: func(t *testing.T) *tls.Config {
			c := p.agentTLS(t)
			c.ServerName = "someone-else"
			return c
		}, want: "someone-else"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			q := openQueue(t, t.TempDir(), sensors.QueueOptions{})
			appendKeys(t, q, "a")
			s := newSender(t, q, fc.srv.URL, tc.tls(t), nil)
			d := s.DeliverBatch(t.Context())
			if d.Delivered || !d.Retry || d.Err == nil || !strings.Contains(d.Err.Error(), tc.want) {
				t.Fatalf("delivery %+v (err %v), want a retried failure mentioning %q", d, d.Err, tc.want)
			}
			if q.Stats().Pending != 1 {
				t.Fatal("the finding left the queue")
			}
		})
	}
	if keys := fc.takenKeys(); len(keys) != 0 {
		t.Fatalf("the controller took %v", keys)
	}
}

func TestNewSenderRefuses(t *testing.T) {
	p := newDlPKI(t)
	good := p.agentTLS(t)
	q := openQueue(t, t.TempDir(), sensors.QueueOptions{})
	for name, tc := range map[string]struct {
		url  string
		tls  *tls.Config
		want string
	}{
		"plain http":     {"http://controller.example:8781", good, "must be https"},
		"a path":         {"https://controller.example:8781/v1", good, "must be https"},
		"credentials":    {"https://u:p@controller.example:8781", good, "must be https"},
		"no certificate": {"https://controller.example:8781", &tls.Config{}, "agent's certificate is required"},
		"no TLS at all":  {"https://controller.example:8781", nil, "agent's certificate is required"},
		"fine":           {"https://controller.example:8781/", good, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := sensors.NewSender(q, sensors.SenderOptions{URL: tc.url, TLS: tc.tls})
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("NewSender = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "u:p") {
				t.Fatalf("the error repeats the URL's credentials: %v", err)
			}
		})
	}
}

// TestDeliverSendsAgainOnANewConnection: the controller closes an idle
// connection (its idle timeout is shorter than the agent's) just as the
// agent sends on it. The request is sent again at once on a new
// connection, not after a failure's backoff: findings are idempotent (the
// controller deduplicates them by fingerprint) and the request says so.
func TestDeliverSendsAgainOnANewConnection(t *testing.T) {
	p := newDlPKI(t)
	fc := newFakeController(t, p)
	q := openQueue(t, t.TempDir(), sensors.QueueOptions{})
	s := newSender(t, q, fc.srv.URL, p.agentTLS(t), nil)
	appendKeys(t, q, "a")
	if d := s.DeliverBatch(t.Context()); !d.Delivered {
		t.Fatalf("delivering a: %+v", d)
	}
	fc.setMode("drop reused")
	appendKeys(t, q, "b")
	if d := s.DeliverBatch(t.Context()); !d.Delivered || d.Retry {
		t.Fatalf("delivering b after the controller dropped the idle connection: %+v", d)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if !slices.Equal(fc.taken, []string{"a", "b"}) || fc.requests != 3 {
		t.Fatalf("the controller took %v in %d requests; want a, then b sent again after the drop (3 requests)", fc.taken, fc.requests)
	}
}

// TestDeliverResumesTheControllerSession: a finding sent on a new
// connection (the controller closed the idle one) resumes the TLS session
// of the last: the first alert after a quiet spell is not held up by a
// full handshake. The controller still sees the agent's certificate and
// the chain it verified.
func TestDeliverResumesTheControllerSession(t *testing.T) {
	p := newDlPKI(t)
	fc := newFakeController(t, p)
	q := openQueue(t, t.TempDir(), sensors.QueueOptions{})
	s := newSender(t, q, fc.srv.URL, p.agentTLS(t), nil)
	for _, key := range []string{"a", "b"} {
		appendKeys(t, q, key)
		if d := s.DeliverBatch(t.Context()); !d.Delivered {
			t.Fatalf("delivering %s: %+v", key, d)
		}
		fc.srv.CloseClientConnections()
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if !slices.Equal(fc.resumed, []bool{false, true}) || !slices.Equal(fc.peers, []string{"gw-hq", "gw-hq"}) || slices.Contains(fc.chains, 0) {
		t.Fatalf("sessions resumed %v, certificates %v, verified chains %v; want the second resumed, gw-hq's certificate verified each time",
			fc.resumed, fc.peers, fc.chains)
	}
}

package linux

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// agentFakeFirewall is an agent.Firewall that remembers what it applied.
type agentFakeFirewall struct {
	mu      sync.Mutex
	active  *wire.QuarantineSpec
	applies int
	removes int
	// unenforced makes Observe report the rules missing after an Apply.
	unenforced bool
	// onApply, when set, runs at each Apply.
	onApply func()
}

func (f *agentFakeFirewall) Apply(_ context.Context, s wire.QuarantineSpec) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if f.onApply != nil {
		f.onApply()
	}
	changed := f.active == nil
	f.active = &s
	return changed, nil
}

func (f *agentFakeFirewall) Remove(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes++
	had := f.active != nil
	f.active = nil
	return had, nil
}

func (f *agentFakeFirewall) Observe(context.Context, wire.QuarantineSpec) (wire.FirewallState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The detail is the backend's read-back, opaque to the controller.
	detail, _ := json.Marshal(struct{ Backend string }{"fake"})
	st := wire.FirewallState{Backend: "fake", Quarantined: f.active != nil && !f.unenforced, Absent: f.active == nil, Detail: detail}
	if f.unenforced {
		st.Drift = []string{"ipv6: quarantine chain missing"}
	}
	return st, nil
}

func (f *agentFakeFirewall) count() (applies, removes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies, f.removes
}

// agentRecorder wraps the agent's handler: it records each command ID and
// answers the first fail requests with status instead of passing them on.
type agentRecorder struct {
	next      http.Handler
	status    int
	mu        sync.Mutex
	fail      int
	ids       []string
	kindsSeen []string
}

func (r *agentRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var c wire.Command
	_ = json.Unmarshal(body, &c)
	r.mu.Lock()
	r.ids = append(r.ids, c.ID)
	r.kindsSeen = append(r.kindsSeen, c.Kind)
	failing := r.fail > 0
	if failing {
		r.fail--
	}
	r.mu.Unlock()
	if failing {
		http.Error(w, `{"error":"injected"}`, r.status)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.next.ServeHTTP(w, req)
}

// kinds are the kinds of the commands received, in order.
func (r *agentRecorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.kindsSeen...)
}

func (r *agentRecorder) commandIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// agentClientEnv is an agent (fakes behind it) served over mutual TLS on
// loopback, with the lab key material.
type agentClientEnv struct {
	pki string
	fw  *agentFakeFirewall
	rec *agentRecorder
	url string
}

func newAgentClientEnv(t testing.TB) agentClientEnv {
	t.Helper()
	fw := &agentFakeFirewall{}
	var rec *agentRecorder
	pki, url := agenttest.Serve(t, agent.Deps{Firewall: fw}, func(h http.Handler) http.Handler {
		rec = &agentRecorder{next: h}
		return rec
	})
	return agentClientEnv{pki: pki, fw: fw, rec: rec, url: url}
}

func (e agentClientEnv) tls() AgentTLS { return controllerTLS(e.pki) }

// controllerTLS is the controller's side of the lab PKI in pki.
func controllerTLS(pki string) AgentTLS {
	return AgentTLS{
		CertFile: filepath.Join(pki, agent.ControllerCertFile),
		KeyFile:  filepath.Join(pki, agent.ControllerKeyFile),
		CAFile:   filepath.Join(pki, agent.CAFile),
	}
}

func (e agentClientEnv) client(t *testing.T) *AgentClient {
	t.Helper()
	c, err := NewAgentClient(e.url, e.tls(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestAgentClientRoundTrip(t *testing.T) {
	env := newAgentClientEnv(t)
	c := env.client(t)
	ctx := t.Context()
	p := wire.IsolateParams{Management: []string{"198.51.100.0/24"}}

	res, err := c.IsolateConfirmed(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !res.Confirmed || res.Generation != 1 {
		t.Fatalf("isolate: %+v", res)
	}
	st, err := c.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Quarantined || !st.Confirmed || st.Firewall == nil || !st.Firewall.Quarantined {
		t.Fatalf("observe: %+v", st)
	}
	var detail struct{ Backend string }
	if err := json.Unmarshal(st.Firewall.Detail, &detail); err != nil || detail.Backend != "fake" {
		t.Fatalf("firewall detail %s: %v", st.Firewall.Detail, err)
	}
	again, err := c.IsolateConfirmed(ctx, p)
	if err != nil || again.Changed || again.Generation != res.Generation {
		t.Fatalf("second isolate: %+v, %v", again, err)
	}
	for i, want := range []bool{true, false} {
		changed, err := c.Release(ctx)
		if err != nil || changed != want {
			t.Fatalf("release %d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	if _, removes := env.fw.count(); removes != 2 {
		t.Fatalf("Remove called %d times", removes)
	}
	ids := env.rec.commandIDs()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("command id %s sent twice", id)
		}
		seen[id] = true
	}
}

// TestAgentClientDoesNotConfirmUnenforcedRules: when the agent's read-back
// finds the rules missing, IsolateConfirmed confirms nothing (the agent
// reverts by itself) and says the quarantine is not verified, an error a
// retry may mend (isolating again re-enforces), not a terminal one.
func TestAgentClientDoesNotConfirmUnenforcedRules(t *testing.T) {
	env := newAgentClientEnv(t)
	env.fw.unenforced = true
	c := env.client(t)
	_, err := c.IsolateConfirmed(t.Context(), wire.IsolateParams{Management: []string{"198.51.100.0/24"}})
	if !errors.Is(err, actions.ErrNotVerified) || actions.IsTerminal(err) || !strings.Contains(err.Error(), wire.ConfirmNotEnforced) {
		t.Fatalf("IsolateConfirmed over unenforced rules = %v; want a non-terminal ErrNotVerified naming the refusal", err)
	}
	st, err := c.Observe(t.Context())
	if err != nil || !st.Quarantined || st.Confirmed {
		t.Fatalf("after the refused confirm: %+v, %v; want quarantined and not confirmed", st, err)
	}
}

func TestAgentClientRetriesWithANewCommand(t *testing.T) {
	env := newAgentClientEnv(t)
	env.rec.status, env.rec.fail = http.StatusServiceUnavailable, 1
	res, err := env.client(t).Isolate(t.Context(), wire.IsolateParams{Management: []string{"198.51.100.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Fatalf("isolate: %+v", res)
	}
	ids := env.rec.commandIDs()
	if len(ids) != 2 || ids[0] == ids[1] || !wire.ValidNonce(ids[0]) || !wire.ValidNonce(ids[1]) {
		t.Fatalf("attempts carried ids %q, want two different nonces", ids)
	}
	if applies, _ := env.fw.count(); applies != 1 {
		t.Fatalf("firewall applied %d times, want 1", applies)
	}
}

func TestAgentClientErrorClasses(t *testing.T) {
	tests := map[string]struct {
		run          func(t *testing.T, env agentClientEnv) error
		wantTerminal bool
		wantStatus   int
		check        func(t *testing.T, err error)
	}{
		"confirm of a generation not in force is terminal": {
			run: func(t *testing.T, env agentClientEnv) error {
				return env.client(t).Confirm(t.Context(), 42)
			},
			wantTerminal: true, wantStatus: http.StatusConflict,
		},
		"capture without a collector is unsupported": {
			run: func(t *testing.T, env agentClientEnv) error {
				_, err := env.client(t).Capture(t.Context(), wire.CaptureParams{})
				return err
			},
			wantTerminal: true, wantStatus: http.StatusNotImplemented,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, actions.ErrUnsupported) {
					t.Fatalf("%v does not wrap ErrUnsupported", err)
				}
			},
		},
		"a persistent 5xx is transient": {
			run: func(t *testing.T, env agentClientEnv) error {
				env.rec.status, env.rec.fail = http.StatusInternalServerError, 100
				_, err := env.client(t).Observe(t.Context())
				if n := len(env.rec.commandIDs()); n != 4 {
					t.Fatalf("%d attempts, want 4 (1 + 3 retries)", n)
				}
				return err
			},
			wantTerminal: false, wantStatus: http.StatusInternalServerError,
		},
		"a command under an epoch older than the agent's is fenced": {
			run: func(t *testing.T, env agentClientEnv) error {
				c := env.client(t)
				if _, err := c.Observe(actions.WithFence(t.Context(), fixedFence(5))); err != nil {
					t.Fatalf("observe at epoch 5: %v", err)
				}
				_, err := c.Observe(actions.WithFence(t.Context(), fixedFence(4)))
				return err
			},
			wantTerminal: false, wantStatus: wire.StatusStaleEpoch,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, actions.ErrFenced) || !strings.Contains(err.Error(), "epoch 4") {
					t.Fatalf("%v does not wrap ErrFenced naming epoch 4", err)
				}
			},
		},
		"an agent certificate from another CA is terminal": {
			run: func(t *testing.T, env agentClientEnv) error {
				other := agenttest.PKI(t)
				tl := env.tls()
				tl.CAFile = filepath.Join(other, agent.CAFile)
				c, err := NewAgentClient(env.url, tl, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Observe(t.Context())
				return err
			},
			wantTerminal: true,
		},
		"a controller certificate the agent does not trust is terminal": {
			run: func(t *testing.T, env agentClientEnv) error {
				other := agenttest.PKI(t)
				tl := env.tls()
				tl.CertFile, tl.KeyFile = filepath.Join(other, agent.ControllerCertFile), filepath.Join(other, agent.ControllerKeyFile)
				c, err := NewAgentClient(env.url, tl, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Observe(t.Context())
				if n := len(env.rec.commandIDs()); n != 0 {
					t.Fatalf("a refused client reached the handler %d times", n)
				}
				return err
			},
			wantTerminal: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			env := newAgentClientEnv(t)
			err := tc.run(t, env)
			if err == nil {
				t.Fatal("no error")
			}
			if got := actions.IsTerminal(err); got != tc.wantTerminal {
				t.Fatalf("IsTerminal(%v) = %v, want %v", err, got, tc.wantTerminal)
			}
			var ae *AgentError
			if tc.wantStatus != 0 && (!errors.As(err, &ae) || ae.Status != tc.wantStatus) {
				t.Fatalf("%v: want an AgentError with status %d", err, tc.wantStatus)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

// fixedFence is a lease at a fixed epoch that always holds.
type fixedFence int64

func (f fixedFence) Epoch() int64                { return int64(f) }
func (f fixedFence) Check(context.Context) error { return nil }

func TestNewAgentClientRefusesPlainHTTP(t *testing.T) {
	env := newAgentClientEnv(t)
	for _, u := range []string{strings.Replace(env.url, "https", "http", 1), "https://", "https://u:p@127.0.0.1:1"} {
		if _, err := NewAgentClient(u, env.tls(), nil); err == nil || !actions.IsTerminal(err) {
			t.Fatalf("NewAgentClient(%q): %v, want a terminal error", u, err)
		}
	}
}

// TestAgentClientOneRetryLayer: a call made under the catalogue's retry
// layer is sent once, whatever the agent answers; that layer retries the
// step (and fences and records each attempt). Outside it, the client
// retries transient answers itself.
func TestAgentClientOneRetryLayer(t *testing.T) {
	env := newAgentClientEnv(t)
	env.rec.status, env.rec.fail = http.StatusServiceUnavailable, 1
	c := env.client(t)
	underStep := actions.WithRetry(actions.RetryPolicy{MaxAttempts: 1})(actions.Entry{Action: probeAction{c: c}})
	if _, err := actions.Execute(t.Context(), underStep, actions.Request{}); err == nil {
		t.Fatal("a 503 under the step's retry layer was retried by the client as well")
	}
	if ids := env.rec.commandIDs(); len(ids) != 1 {
		t.Fatalf("the agent got %d requests under the step's retry layer, want 1", len(ids))
	}
}

// probeAction isolates through the client in Apply.
type probeAction struct{ c *AgentClient }

func (probeAction) Name() string { return "probe" }
func (probeAction) Plan(context.Context, actions.Request) (actions.Change, error) {
	return actions.Change{}, nil
}
func (p probeAction) Apply(ctx context.Context, _ actions.Request) (actions.Result, error) {
	_, err := p.c.Isolate(ctx, wire.IsolateParams{Management: []string{"198.51.100.0/24"}})
	return actions.Result{}, err
}
func (probeAction) Verify(context.Context, actions.Request) (actions.Result, error) {
	return actions.Result{}, nil
}

// The pool's checked isolate answers with the state the agent read back
// when it confirmed: what an observe right after reads.
func TestAgentPoolIsolateOSChecked(t *testing.T) {
	env := newAgentClientEnv(t)
	p := NewAgentPool(env.tls(), nil)
	t.Cleanup(p.Close)
	gw := inventory.Gateway{ID: "gw", Agent: env.url, ManagementNetworks: []string{"198.51.100.0/24"}}
	res, st, err := p.IsolateOSChecked(t.Context(), gw, true)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !res.Confirmed || st.Generation != res.Generation || !st.Quarantined || !st.Confirmed ||
		st.Firewall == nil || !st.Firewall.Quarantined || len(st.Firewall.Drift) != 0 || !st.FlowsKept {
		t.Fatalf("checked isolate: %+v, read back %+v", res, st)
	}
	obs, err := p.ObserveOS(t.Context(), gw)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Generation != st.Generation || obs.Confirmed != st.Confirmed || obs.Quarantined != st.Quarantined {
		t.Fatalf("observed %+v after the checked isolate read back %+v", obs, st)
	}
}

// A connection opened after the pool's were dropped (as the confirm of an
// isolate does) is a new TCP connection that resumes the agent's TLS
// session, and the agent still finds the controller's verified
// certificate on it.
func TestAgentClientResumesTLSOnAFreshConnection(t *testing.T) {
	env := newAgentClientEnv(t)
	c := env.client(t)
	type conn struct{ reused, resumed bool }
	var conns []conn
	trace := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			st, _ := i.Conn.(interface{ ConnectionState() tls.ConnectionState })
			resumed := st != nil && st.ConnectionState().DidResume
			conns = append(conns, conn{reused: i.Reused, resumed: resumed})
		},
	}
	ctx := httptrace.WithClientTrace(t.Context(), trace)
	for range 2 {
		c.Close() // every observe on a new connection
		if _, err := c.Observe(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []conn{{reused: false, resumed: false}, {reused: false, resumed: true}}
	if !slices.Equal(conns, want) {
		t.Fatalf("connections %+v, want %+v (a new one, then a new one resuming the session)", conns, want)
	}
}

// BenchmarkAgentFreshConnection is one observe over a new connection (as
// the confirm of an isolate makes), with the agent's TLS session resumed
// and with a full handshake (no session cache).
func BenchmarkAgentFreshConnection(b *testing.B) {
	env := newAgentClientEnv(b)
	for _, resume := range []bool{true, false} {
		name := "resumed"
		if !resume {
			name = "full-handshake"
		}
		b.Run(name, func(b *testing.B) {
			c, err := NewAgentClient(env.url, env.tls(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if !resume {
				c.http.HTTPClient.Transport.(*http.Transport).TLSClientConfig.ClientSessionCache = nil
			}
			for b.Loop() {
				c.Close()
				if _, err := c.Observe(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// gatedProxy forwards TCP connections to target until shut, after which
// it takes no new connection (its port refuses them) while those already
// open go on: a quarantine that drops new management flows but not
// established ones.
type gatedProxy struct {
	ln   net.Listener
	shut atomic.Bool
}

func (p *gatedProxy) close() { p.shut.Store(true); p.ln.Close() }

func newGatedProxy(t *testing.T, target string) *gatedProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gatedProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if p.shut.Load() {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

// TestAgentClientConfirmsOnlyAfterANewConnection: the confirm of an
// isolate goes out only once a new connection through the quarantine
// reached the agent. When new connections no longer arrive (the rules
// cut the management path for new flows), nothing is confirmed, even
// though the connection already open still works, and the agent reverts
// by itself.
func TestAgentClientConfirmsOnlyAfterANewConnection(t *testing.T) {
	env := newAgentClientEnv(t)
	u, err := url.Parse(env.url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newGatedProxy(t, u.Host)
	env.fw.onApply = proxy.close
	c, err := NewAgentClient("https://"+proxy.ln.Addr().String(), env.tls(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.Observe(t.Context()); err != nil { // the connection that stays open
		t.Fatal(err)
	}
	_, err = c.IsolateConfirmed(t.Context(), wire.IsolateParams{Management: []string{"198.51.100.0/24"}})
	if err == nil || !actions.IsTerminal(err) || !strings.Contains(err.Error(), "new connection") {
		t.Fatalf("IsolateConfirmed with new connections cut = %v; want a terminal error about the new connection", err)
	}
	for _, k := range env.rec.kinds() {
		if k == wire.KindConfirm {
			t.Fatal("a confirm was sent although no new connection reached the agent")
		}
	}
	st, err := c.Observe(t.Context()) // over the open connection
	if err != nil || !st.Quarantined || st.Confirmed {
		t.Fatalf("agent after the isolate: %+v, %v; want quarantined and not confirmed (it reverts by itself)", st, err)
	}
}

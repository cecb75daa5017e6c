package strongswan_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/providers/strongswan"
)

// charonMesh starts a real strongSwan mesh in network namespaces (root,
// charon and kernel-libipsec needed; the test skips otherwise).
func charonMesh(t *testing.T, prefix string, sites ...string) (*netlab.StrongSwanMesh, strongswan.SocketDialer, map[string]strongswan.Site) {
	t.Helper()
	netlabtest.SkipStrongSwan(t)
	lab := netlabtest.New(t, netlab.Options{Prefix: prefix, Sites: sites})
	m, err := lab.StrongSwanMesh(t.Context(), netlab.StrongSwanOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range sites {
				t.Logf("charon %s:\n%s", s, m.Log(s))
			}
		}
	})
	d := strongswan.SocketDialer{}
	ids := map[string]strongswan.Site{}
	for _, s := range m.Sites() {
		d[s.Site] = s.Socket
		ids[s.Site] = strongswan.Site{Identity: s.Identity}
	}
	return m, d, ids
}

func sharedKeys(t *testing.T, d charon.Dialer, site string) []string {
	t.Helper()
	c, err := d.Dial(t.Context(), site)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Call(t.Context(), "get-shared", nil)
	if err != nil {
		t.Fatal(err)
	}
	switch v := r.Get("keys").(type) {
	case []string:
		return v
	case string:
		return []string{v}
	}
	return nil
}

func TestRevokePeerWithCharon(t *testing.T) {
	m, d, ids := charonMesh(t, "ssrev", "a", "b", "c")
	p, err := strongswan.New(d, ids, strongswan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, want := range []bool{true, false} { // the second call finds nothing to do
		for _, site := range []string{"b", "c"} {
			changed, err := p.RevokePeer(ctx, site, "a")
			if err != nil || changed != want {
				t.Fatalf("RevokePeer(%s, a) = %v, %v; want %v", site, changed, err, want)
			}
		}
	}
	for _, site := range []string{"b", "c"} {
		if err := p.VerifyRevoked(ctx, site, "a"); err != nil {
			t.Error(err)
		}
		if err := m.Initiate(ctx, "a", site); err == nil {
			t.Errorf("a still authenticates with %s", site)
		}
	}
	if err := p.VerifyRevoked(ctx, "b", "c"); !errors.Is(err, actions.ErrNotVerified) {
		t.Errorf("VerifyRevoked(b, c) on a healthy pair = %v, want ErrNotVerified", err)
	}
	if err := reauthenticate(t, d, "b", "c"); err != nil {
		t.Errorf("b <-> c broke: %v", err)
	}
}

// reauthenticate asks site to reauthenticate its IKE SA with peer and
// waits for an established replacement: proof that the keys loaded at both
// ends authenticate.
func reauthenticate(t *testing.T, d charon.Dialer, site, peer string) error {
	t.Helper()
	c, err := d.Dial(t.Context(), site)
	if err != nil {
		return err
	}
	defer c.Close()
	list := func() map[string]string {
		in := vici.NewMessage()
		_ = in.Set("ike", peer)
		evs, err := c.Stream(t.Context(), "list-sas", "list-sa", in)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, ev := range evs {
			if m, ok := ev.Get(peer).(*vici.Message); ok {
				id, _ := m.Get("uniqueid").(string)
				st, _ := m.Get("state").(string)
				out[id] = st
			}
		}
		return out
	}
	before := list()
	in := vici.NewMessage()
	_ = in.Set("ike", peer)
	_ = in.Set("reauth", "yes")
	if _, err := c.Call(t.Context(), "rekey", in); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for id, st := range list() {
			if _, old := before[id]; !old && st == "ESTABLISHED" {
				return nil
			}
		}
	}
	return errors.New("no new IKE SA after reauthentication")
}

func TestRotatePSKWithCharon(t *testing.T) {
	_, d, ids := charonMesh(t, "ssrot", "a", "b")
	var logs bytes.Buffer
	p, err := strongswan.New(d, ids, strongswan.Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	psk := []byte(rand.Text())
	for i := range 2 { // re-applying reauthenticates again, same state
		if err := p.RotatePSK(ctx, "a", "b", "k1", psk); err != nil {
			t.Fatalf("RotatePSK run %d: %v", i+1, err)
		}
	}
	if err := p.VerifyPSK(ctx, "a", "b", "k1"); err != nil {
		t.Fatal(err)
	}
	if got := sharedKeys(t, d, "a"); len(got) != 1 || got[0] != "b/k1" {
		t.Errorf("a's shared keys = %q, want [b/k1]", got)
	}
	if err := p.VerifyPSK(ctx, "a", "b", "k0"); !errors.Is(err, actions.ErrNotVerified) {
		t.Errorf("VerifyPSK with a wrong id = %v, want ErrNotVerified", err)
	}
	assertNoSecret(t, logs.String(), psk)
}

// refuser makes site load a random key whenever a new shared key arrives.
type refuser struct {
	charon.Dialer
	site string
}

type refusingConn struct{ charon.Conn }

func (r refuser) Dial(ctx context.Context, site string) (charon.Conn, error) {
	c, err := r.Dialer.Dial(ctx, site)
	if err != nil || site != r.site {
		return c, err
	}
	return refusingConn{c}, nil
}

// Watch passes the optional capability through the wrapper.
func (c refusingConn) Watch(ctx context.Context, event string) (<-chan *vici.Message, error) {
	return c.Conn.(charon.EventWatcher).Watch(ctx, event)
}

func (c refusingConn) Call(ctx context.Context, cmd string, in *vici.Message) (*vici.Message, error) {
	if cmd == "load-shared" {
		if err := in.Set("data", rand.Text()); err != nil {
			return nil, err
		}
	}
	return c.Conn.Call(ctx, cmd, in)
}

func TestRotatePSKRefusedKeepsTheOldKey(t *testing.T) {
	_, d, ids := charonMesh(t, "ssref", "a", "b")
	p, err := strongswan.New(refuser{Dialer: d, site: "b"}, ids, strongswan.Options{ReauthTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	start := time.Now()
	err = p.RotatePSK(ctx, "a", "b", "k1", []byte(rand.Text()))
	if !errors.Is(err, strongswan.ErrReauthFailed) {
		t.Fatalf("RotatePSK with a refusing peer = %v, want ErrReauthFailed", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the failure took %s to notice: the ike-updown watch did not work", time.Since(start))
	}
	for _, site := range []string{"a", "b"} {
		for _, id := range sharedKeys(t, d, site) {
			if strings.HasSuffix(id, "/k1") {
				t.Errorf("%s still holds the new key %s", site, id)
			}
		}
	}
	if err := reauthenticate(t, d, "a", "b"); err != nil {
		t.Errorf("the pair does not authenticate with its old key: %v", err)
	}
}

func TestRotatePSKWithoutSA(t *testing.T) {
	_, d, ids := charonMesh(t, "ssnosa", "a", "b")
	p, err := strongswan.New(d, ids, strongswan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c, err := d.Dial(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	in := vici.NewMessage()
	_ = in.Set("ike", "b")
	_ = in.Set("force", "yes")
	if _, err := c.Call(ctx, "terminate", in); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := p.RotatePSK(ctx, "a", "b", "k1", []byte(rand.Text())); err != nil {
		t.Fatalf("RotatePSK with the tunnel down: %v", err)
	}
	if err := p.VerifyPSK(ctx, "a", "b", "k1"); err != nil {
		t.Fatal(err)
	}
}

// fakeConn answers the few commands the validation paths need.
type fakeConn struct {
	mu    *sync.Mutex
	calls *[]string
	fail  string // command that fails
}

func (f fakeConn) Call(_ context.Context, cmd string, _ *vici.Message) (*vici.Message, error) {
	f.mu.Lock()
	*f.calls = append(*f.calls, cmd)
	f.mu.Unlock()
	if cmd == f.fail {
		return nil, errors.New("vici: command failed: " + cmd + " failed")
	}
	m := vici.NewMessage()
	switch cmd {
	case "get-conns":
		_ = m.Set("conns", []string{"a", "b"})
	}
	return m, nil
}

func (f fakeConn) Stream(context.Context, string, string, *vici.Message) ([]*vici.Message, error) {
	return nil, nil
}

func (fakeConn) Close() error { return nil }

type fakeDialer struct{ conn fakeConn }

func (f fakeDialer) Dial(context.Context, string) (charon.Conn, error) { return f.conn, nil }

func TestValidationAndErrors(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	ids := map[string]strongswan.Site{"a": {Identity: "a.test"}, "b": {Identity: "b.test"}}
	psk := []byte("super-secret-psk-0123456789")
	tests := map[string]struct {
		fail     string
		call     func(p *strongswan.Provider) error
		is       error
		terminal bool
	}{
		"unknown site": {call: func(p *strongswan.Provider) error {
			_, err := p.RevokePeer(t.Context(), "zz", "a")
			return err
		}, is: strongswan.ErrUnknownSite, terminal: true},
		"key id with a slash": {call: func(p *strongswan.Provider) error {
			return p.RotatePSK(t.Context(), "a", "b", "x/y", psk)
		}, terminal: true},
		"empty key": {call: func(p *strongswan.Provider) error {
			return p.RotatePSK(t.Context(), "a", "b", "k", nil)
		}, terminal: true},
		"load-shared fails": {fail: "load-shared", call: func(p *strongswan.Provider) error {
			return p.RotatePSK(t.Context(), "a", "b", "k", psk)
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			p, err := strongswan.New(fakeDialer{fakeConn{mu: &mu, calls: &calls, fail: tc.fail}}, ids,
				strongswan.Options{Log: slog.New(slog.NewTextHandler(&logs, nil)), ReauthTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = tc.call(p)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error = %v, want %v", err, tc.is)
			}
			if actions.IsTerminal(err) != tc.terminal {
				t.Errorf("IsTerminal(%v) = %v, want %v", err, !tc.terminal, tc.terminal)
			}
			assertNoSecret(t, err.Error()+logs.String(), psk)
		})
	}
}

func assertNoSecret(t *testing.T, text string, key []byte) {
	t.Helper()
	for _, form := range []string{string(key), base64.StdEncoding.EncodeToString(key), hex.EncodeToString(key)} {
		if strings.Contains(text, form) {
			t.Fatal("secret found in output")
		}
	}
}

package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/testsupport"
)

// recorder keeps what a fake was called with, in order; it is safe for
// concurrent calls.
type recorder[T any] struct {
	mu  sync.Mutex
	got []T
}

func (r *recorder[T]) record(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, v)
}

// all returns a copy of everything recorded.
func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// fakeWG is a set of WireGuard devices; Configure records what it got.
type fakeWG struct {
	mu         sync.Mutex
	devices    map[string]wire.WGDevice
	configured recorder[wire.WGConfig]
	err        error
}

func (f *fakeWG) Device(_ context.Context, name string) (wire.WGDevice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return wire.WGDevice{}, f.err
	}
	d, ok := f.devices[name]
	if !ok {
		return wire.WGDevice{}, fmt.Errorf("%w: no link %s", ErrNotFound, name)
	}
	return d, nil
}

func (f *fakeWG) Configure(ctx context.Context, name string, cfg wire.WGConfig) (wire.WGDevice, error) {
	f.configured.record(cfg)
	return f.Device(ctx, name)
}

// fakeVICI records the commands it ran and answers with reply or err.
type fakeVICI struct {
	ran   recorder[wire.VICIParams]
	mu    sync.Mutex // guards reply and err
	reply wire.VICIResult
	err   error
}

func (f *fakeVICI) Run(_ context.Context, p wire.VICIParams) (wire.VICIResult, error) {
	f.ran.record(p)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reply, f.err
}

// fakeBlocker is the kernel's blocklist.
type fakeBlocker struct {
	mu          sync.Mutex
	blocked     []netip.Prefix
	sets        [][]netip.Prefix
	notEnforced bool
	// own is an address of the host, which Set refuses to block.
	own netip.Addr
}

func (b *fakeBlocker) Set(_ context.Context, ps []netip.Prefix) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sets = append(b.sets, slices.Clone(ps))
	for _, p := range ps {
		if p.Contains(b.own) {
			return false, fmt.Errorf("%w: %s holds this host's own address", ErrInvalidParams, p)
		}
	}
	changed := !slices.Equal(b.blocked, ps)
	b.blocked = slices.Clone(ps)
	return changed, nil
}

func (b *fakeBlocker) Observe(context.Context) (BlockObservation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BlockObservation{Prefixes: slices.Clone(b.blocked), Enforced: !b.notEnforced && len(b.blocked) > 0}, nil
}

func (b *fakeBlocker) state() (blocked []netip.Prefix, sets int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.blocked), len(b.sets)
}

// captureLog makes the harness log to a buffer too, at debug level.
func (h *harness) captureLog() *testsupport.SyncBuffer {
	buf := &testsupport.SyncBuffer{}
	h.log = slog.New(slog.NewTextHandler(io.MultiWriter(buf, testWriter{h.t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return buf
}

func testKey(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestTunnelCommandsNotImplemented(t *testing.T) {
	h := newHarness(t)
	h.start()
	tests := map[string]struct {
		kind   string
		params any
	}{
		"wireguard": {wire.KindWireGuard, wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "wg0"}},
		"vici":      {wire.KindVICI, wire.VICIParams{Command: "get-conns"}},
		"block":     {wire.KindBlock, wire.BlockParams{Peer: "gw-b", Addresses: []string{"198.51.100.7"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := h.send(h.command(tc.kind, tc.params))
			if status != http.StatusNotImplemented || !strings.Contains(string(body), "not available") {
				t.Fatalf("status %d (%s), want 501 saying what is not available", status, body)
			}
		})
	}
}

func TestWireGuardCommand(t *testing.T) {
	dev := wire.WGDevice{Name: "wg0", Type: "userspace", PublicKey: testKey(1), ListenPort: 51820,
		Peers: []wire.WGPeer{{PublicKey: testKey(2), PresharedKeyRef: testKey(9), AllowedIPs: []string{"10.2.0.0/16"}}}}
	wg := &fakeWG{devices: map[string]wire.WGDevice{"wg0": dev}}
	h := newHarness(t)
	h.wg = wg
	h.start()

	t.Run("device", func(t *testing.T) {
		var got wire.WireGuardResult
		h.do(wire.KindWireGuard, wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "wg0"}, &got)
		if got.Device.PublicKey != dev.PublicKey || len(got.Device.Peers) != 1 || got.Device.Peers[0].PresharedKeyRef != testKey(9) {
			t.Fatalf("device %+v", got.Device)
		}
	})
	t.Run("configure passes the change through", func(t *testing.T) {
		port := 51821
		ka := wire.Duration(25e9)
		cfg := wire.WGConfig{PrivateKey: testKey(3), ListenPort: &port, Peers: []wire.WGPeerConfig{
			{PublicKey: testKey(2), PresharedKey: testKey(9), UpdateOnly: true},
			{PublicKey: testKey(4), PresharedKey: testKey(5), Endpoint: "[2001:db8::1]:51820", PersistentKeepalive: &ka, ReplaceAllowedIPs: true, AllowedIPs: []string{"10.4.0.0/16", "fd00:4::1"}},
			{PublicKey: testKey(6), Remove: true},
		}}
		var got wire.WireGuardResult
		h.do(wire.KindWireGuard, wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0", Config: &cfg}, &got)
		calls := wg.configured.all()
		if len(calls) != 1 {
			t.Fatalf("Configure called %d times", len(calls))
		}
		a, _ := json.Marshal(calls[0])
		b, _ := json.Marshal(cfg)
		if !bytes.Equal(a, b) {
			t.Fatalf("Configure got %s, want %s", a, b)
		}
		if got.Device.Name != "wg0" {
			t.Fatalf("configure answered %+v, want the device read back", got.Device)
		}
	})
	t.Run("seam errors", func(t *testing.T) {
		status, body := h.send(h.command(wire.KindWireGuard, wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "wg9"}))
		if status != http.StatusNotFound || !strings.Contains(string(body), "wg9") {
			t.Fatalf("missing device: status %d (%s), want 404", status, body)
		}
		wg.mu.Lock()
		wg.err = fmt.Errorf("%w: config.peers[0].preshared_key: not a key", ErrInvalidParams)
		wg.mu.Unlock()
		defer func() { wg.mu.Lock(); wg.err = nil; wg.mu.Unlock() }()
		status, body = h.send(h.command(wire.KindWireGuard, wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "wg0"}))
		if status != http.StatusBadRequest || !strings.Contains(string(body), "preshared_key") {
			t.Fatalf("refused by the seam: status %d (%s), want 400", status, body)
		}
	})

	mk := func(mut func(*wire.WGConfig)) *wire.WGConfig {
		c := wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: testKey(2)}}}
		mut(&c)
		return &c
	}
	bad := map[string]struct {
		params any
		field  string
	}{
		"no op":                    {wire.WireGuardParams{Device: "wg0"}, "op"},
		"unknown op":               {wire.WireGuardParams{Op: "delete", Device: "wg0"}, "op"},
		"no device":                {wire.WireGuardParams{Op: wire.WireGuardDevice}, "device"},
		"device with a slash":      {wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "../wg0"}, "device"},
		"device name too long":     {wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "wg0123456789abcd"}, "device"},
		"device with a space":      {wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "wg 0"}, "device"},
		"configure without config": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0"}, "config"},
		"read with a config":       {wire.WireGuardParams{Op: wire.WireGuardDevice, Device: "wg0", Config: &wire.WGConfig{}}, "config"},
		"bad private key": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0",
			Config: mk(func(c *wire.WGConfig) { c.PrivateKey = "c2hvcnQ=" })}, "config.private_key"},
		"listen port out of range": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0",
			Config: mk(func(c *wire.WGConfig) { p := 70000; c.ListenPort = &p })}, "config.listen_port"},
		"bad public key": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0",
			Config: mk(func(c *wire.WGConfig) { c.Peers[0].PublicKey = "wg-peer" })}, "config.peers[0].public_key"},
		"bad preshared key": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0",
			Config: mk(func(c *wire.WGConfig) { c.Peers[0].PresharedKey = "0123456789" })}, "config.peers[0].preshared_key"},
		"endpoint is a name": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0",
			Config: mk(func(c *wire.WGConfig) { c.Peers[0].Endpoint = "gw-b.example:51820" })}, "config.peers[0].endpoint"},
		"bad allowed ip": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0",
			Config: mk(func(c *wire.WGConfig) { c.Peers[0].AllowedIPs = []string{"10.0.0.0/8", "10.1/16"} })}, "config.peers[0].allowed_ips[1]"},
		"negative keepalive": {wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0",
			Config: mk(func(c *wire.WGConfig) { d := wire.Duration(-1e9); c.Peers[0].PersistentKeepalive = &d })}, "config.peers[0].persistent_keepalive"},
		"replace every peer is not offered": {json.RawMessage(`{"op":"configure","device":"wg0","config":{"replace_peers":true}}`), "unknown field"},
	}
	t.Run("a peer repeated in one transaction, in order", func(t *testing.T) {
		before := len(wg.configured.all())
		on, off := wire.Duration(25e9), wire.Duration(0)
		cfg := mk(func(c *wire.WGConfig) {
			c.Peers = []wire.WGPeerConfig{{PublicKey: testKey(2), Remove: true}, {PublicKey: testKey(2), AllowedIPs: []string{"10.2.0.0/24"}},
				{PublicKey: testKey(2), UpdateOnly: true, PersistentKeepalive: &on}, {PublicKey: testKey(2), UpdateOnly: true, PersistentKeepalive: &off}}
		})
		status, body := h.send(h.command(wire.KindWireGuard, wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0", Config: cfg}))
		if status != http.StatusOK || len(wg.configured.all()) != before+1 {
			t.Fatalf("status %d (%s); want the re-creation passed to the device", status, body)
		}
	})
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			assertRefusedBeforeSeam(t, h, wire.KindWireGuard, tc.params, tc.field, func() int { return len(wg.configured.all()) })
		})
	}
}

func TestVICICommand(t *testing.T) {
	v := &fakeVICI{reply: wire.VICIResult{Reply: wire.VICIMessage{{Key: "success", Value: ptr("yes")}}}}
	h := newHarness(t)
	h.vici = v
	h.start()

	t.Run("streamed command gets its event", func(t *testing.T) {
		var got wire.VICIResult
		h.do(wire.KindVICI, wire.VICIParams{Command: "list-sas", Message: wire.VICIMessage{{Key: "noblock", Value: ptr("yes")}}}, &got)
		runs := v.ran.all()
		if last := runs[len(runs)-1]; last.Command != "list-sas" || last.Event != "list-sa" || len(last.Message) != 1 {
			t.Fatalf("ran %+v, want list-sas with event list-sa and the message", last)
		}
		if len(got.Reply) != 1 || got.Reply[0].Key != "success" {
			t.Fatalf("reply %+v", got)
		}
	})
	t.Run("seam errors", func(t *testing.T) {
		tests := map[string]struct {
			err  error
			want int
		}{
			"charon refused":  {actions.Terminal(errors.New("charon refused unload-shared: no matching key found")), http.StatusUnprocessableEntity},
			"charon not up":   {fmt.Errorf("%w: no VICI socket: strongSwan is not running", ErrUnavailable), http.StatusServiceUnavailable},
			"transport error": {errors.New("reading VICI reply: connection reset"), http.StatusInternalServerError},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				v.mu.Lock()
				v.err = tc.err
				v.mu.Unlock()
				defer func() { v.mu.Lock(); v.err = nil; v.mu.Unlock() }()
				status, body := h.send(h.command(wire.KindVICI, wire.VICIParams{Command: "unload-shared"}))
				if status != tc.want || !strings.Contains(string(body), tc.err.Error()) {
					t.Fatalf("status %d (%s), want %d with the seam's text", status, body, tc.want)
				}
			})
		}
	})

	bad := map[string]struct {
		params any
		want   string
	}{
		"not whitelisted":               {wire.VICIParams{Command: "load-conn"}, "load-conn"},
		"settings are not whitelisted":  {wire.VICIParams{Command: "load-authority"}, "load-authority"},
		"no command":                    {wire.VICIParams{}, "command:"},
		"wrong event":                   {wire.VICIParams{Command: "list-sas", Event: "ike-updown"}, "event"},
		"event for an unstreamed one":   {wire.VICIParams{Command: "terminate", Event: "control-log"}, "event"},
		"malformed message":             {json.RawMessage(`{"command":"get-conns","message":{"k":"x"}}`), "decoding parameters"},
		"unknown field in the envelope": {json.RawMessage(`{"command":"get-conns","socket":"/tmp/x"}`), "unknown field"},
		"a CA certificate is not a CRL": {wire.VICIParams{Command: "load-cert", Message: wire.VICIMessage{
			{Key: "type", Value: ptr("X509")}, {Key: "flag", Value: ptr("CA")}, {Key: "data", Value: ptr("der")}}}, "only load a CRL"},
		"a CRL flagged as a CA": {wire.VICIParams{Command: "load-cert", Message: wire.VICIMessage{
			{Key: "type", Value: ptr("X509_CRL")}, {Key: "flag", Value: ptr("CA")}, {Key: "data", Value: ptr("der")}}}, "flag NONE"},
		"load-cert without a type": {wire.VICIParams{Command: "load-cert", Message: wire.VICIMessage{{Key: "data", Value: ptr("der")}}}, "only load a CRL"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			assertRefusedBeforeSeam(t, h, wire.KindVICI, tc.params, tc.want, func() int { return len(v.ran.all()) })
		})
	}
}

// assertRefusedBeforeSeam sends params as a kind command and checks that
// the agent refuses it with a 400 naming want, without calling the seam
// (calls counts the seam's calls).
func assertRefusedBeforeSeam(t *testing.T, h *harness, kind string, params any, want string, calls func() int) {
	t.Helper()
	before := calls()
	status, body := h.send(h.command(kind, params))
	if status != http.StatusBadRequest || !strings.Contains(string(body), want) {
		t.Fatalf("status %d (%s), want 400 naming %q", status, body, want)
	}
	if calls() != before {
		t.Fatalf("a refused %s command reached the seam", kind)
	}
}

func ptr(s string) *string { return &s }

func (h *harness) block(p wire.BlockParams) wire.BlockResult {
	h.t.Helper()
	var r wire.BlockResult
	h.do(wire.KindBlock, p, &r)
	return r
}

func TestBlockRefusesBadParams(t *testing.T) {
	b := &fakeBlocker{}
	h := newHarness(t)
	h.blocker = b
	h.start()
	tests := map[string]struct {
		params wire.BlockParams
		want   string
	}{
		"no peer":                  {wire.BlockParams{Addresses: []string{"198.51.100.7"}}, "peer"},
		"wildcard peer":            {wire.BlockParams{Peer: "*", Addresses: []string{"198.51.100.7"}}, "peer"},
		"peer with a glob":         {wire.BlockParams{Peer: "gw-?", Addresses: []string{"198.51.100.7"}}, "peer"},
		"peer with a space":        {wire.BlockParams{Peer: "gw b", Addresses: []string{"198.51.100.7"}}, "peer"},
		"peer with a slash":        {wire.BlockParams{Peer: "gw/b", Addresses: []string{"198.51.100.7"}}, "peer"},
		"no addresses":             {wire.BlockParams{Peer: "gw-b"}, "addresses"},
		"remove with addresses":    {wire.BlockParams{Peer: "gw-b", Remove: true, Addresses: []string{"198.51.100.7"}}, "addresses"},
		"not an address":           {wire.BlockParams{Peer: "gw-b", Addresses: []string{"198.51.100.7", "gw-b.example"}}, "addresses[1]"},
		"everything (IPv4)":        {wire.BlockParams{Peer: "gw-b", Addresses: []string{"0.0.0.0/0"}}, "addresses[0]"},
		"everything (IPv6)":        {wire.BlockParams{Peer: "gw-b", Addresses: []string{"::/0"}}, "addresses[0]"},
		"host bits make it /0":     {wire.BlockParams{Peer: "gw-b", Addresses: []string{"10.1.2.3/0"}}, "every address"},
		"a management address":     {wire.BlockParams{Peer: "gw-b", Addresses: []string{"198.51.100.7", "192.0.2.55"}}, "addresses[1]"},
		"a management supernet":    {wire.BlockParams{Peer: "gw-b", Addresses: []string{"192.0.0.0/16"}}, "192.0.2.0/24"},
		"the controller (loopack)": {wire.BlockParams{Peer: "gw-b", Addresses: []string{"127.0.0.1"}}, "addresses[0]"},
		"IPv4-mapped management":   {wire.BlockParams{Peer: "gw-b", Addresses: []string{"::ffff:192.0.2.9"}}, "addresses[0]"},
		"IPv6 loopback":            {wire.BlockParams{Peer: "gw-b", Addresses: []string{"::1"}}, "addresses[0]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := h.send(h.command(wire.KindBlock, tc.params))
			if status != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
				t.Fatalf("status %d (%s), want 400 naming %q", status, body, tc.want)
			}
		})
	}
	if _, sets := b.state(); sets != 0 {
		t.Fatalf("refused blocks reached the kernel (%d sets)", sets)
	}
	if st := h.observe(); len(st.Blocked) != 0 {
		t.Fatalf("refused blocks were recorded: %+v", st.Blocked)
	}

	// A quarantine in force keeps its networks too.
	h.confirm(h.isolate(labIsolate).Generation)
	status, body := h.send(h.command(wire.KindBlock, wire.BlockParams{Peer: "gw-b", Addresses: []string{"203.0.113.7"}}))
	if status != http.StatusBadRequest || !strings.Contains(string(body), "203.0.113.7/32") {
		t.Fatalf("blocking a forensics address of the quarantine: status %d (%s), want 400", status, body)
	}
}

func TestBlockIsIdempotentAndSurvivesRestart(t *testing.T) {
	b := &fakeBlocker{}
	h := newHarness(t)
	h.blocker = b
	h.start()

	first := h.block(wire.BlockParams{Peer: "gw-b", Addresses: []string{"198.51.100.7", "2001:db8::7", "::ffff:198.51.100.8"}})
	wantB := wire.BlockedPeer{Peer: "gw-b", Addresses: []string{"198.51.100.7/32", "198.51.100.8/32", "2001:db8::7/128"}}
	if !first.Changed || !first.Enforced || len(first.Blocked) != 1 || !blockedEqual(first.Blocked[0], wantB) {
		t.Fatalf("first block: %+v", first)
	}
	again := h.block(wire.BlockParams{Peer: "gw-b", Addresses: []string{"2001:db8::7", "198.51.100.8", "198.51.100.7/32"}})
	if again.Changed || !again.Enforced || len(again.Blocked) != 1 {
		t.Fatalf("same block again: %+v, want unchanged", again)
	}
	second := h.block(wire.BlockParams{Peer: "gw-c", Addresses: []string{"203.0.113.0/24"}})
	if !second.Changed || len(second.Blocked) != 2 || second.Blocked[1].Peer != "gw-c" {
		t.Fatalf("second peer: %+v", second)
	}
	want := mustPrefixes("198.51.100.7/32", "198.51.100.8/32", "203.0.113.0/24", "2001:db8::7/128")
	if got, _ := b.state(); !slices.Equal(got, want) {
		t.Fatalf("kernel blocks %v, want every peer's merged: %v", got, want)
	}
	if st := h.observe(); len(st.Blocked) != 2 || !blockedEqual(st.Blocked[0], wantB) {
		t.Fatalf("observe: blocked %+v", st.Blocked)
	}

	// A quarantine and its release leave the blocks alone.
	h.confirm(h.isolate(labIsolate).Generation)
	h.do(wire.KindRelease, nil, nil)

	// A restart on a gateway whose kernel lost the blocks puts them back
	// before the agent serves.
	h.stop()
	b2 := &fakeBlocker{}
	h.blocker = b2
	h.start()
	if got, sets := b2.state(); sets != 1 || !slices.Equal(got, want) {
		t.Fatalf("after restart: kernel blocks %v (%d sets), want %v", got, sets, want)
	}
	if st := h.srv.State(); len(st.Blocked) != 2 {
		t.Fatalf("after restart: State().Blocked = %+v", st.Blocked)
	}

	// Lifting one peer's block keeps the other's.
	lifted := h.block(wire.BlockParams{Peer: "gw-b", Remove: true})
	if !lifted.Changed || !lifted.Enforced || len(lifted.Blocked) != 1 || lifted.Blocked[0].Peer != "gw-c" {
		t.Fatalf("remove: %+v", lifted)
	}
	if got, _ := b2.state(); !slices.Equal(got, mustPrefixes("203.0.113.0/24")) {
		t.Fatalf("after remove: kernel blocks %v", got)
	}
	if again := h.block(wire.BlockParams{Peer: "gw-b", Remove: true}); again.Changed {
		t.Fatalf("remove again: %+v, want unchanged", again)
	}
	last := h.block(wire.BlockParams{Peer: "gw-c", Remove: true})
	if !last.Changed || !last.Enforced || last.Blocked == nil || len(last.Blocked) != 0 {
		t.Fatalf("remove the last: %+v", last)
	}
}

func blockedEqual(a, b wire.BlockedPeer) bool {
	return a.Peer == b.Peer && slices.Equal(a.Addresses, b.Addresses)
}

func TestBlockReportsWhatTheKernelEnforces(t *testing.T) {
	b := &fakeBlocker{notEnforced: true}
	h := newHarness(t)
	h.blocker = b
	h.start()
	if r := h.block(wire.BlockParams{Peer: "gw-b", Addresses: []string{"198.51.100.7"}}); !r.Changed || r.Enforced {
		t.Fatalf("block on a kernel that does not enforce it: %+v, want enforced false", r)
	}
}

func TestBlockRefusedByTheKernelIsForgotten(t *testing.T) {
	b := &fakeBlocker{own: netip.MustParseAddr("198.18.0.10")}
	h := newHarness(t)
	h.blocker = b
	h.start()
	h.block(wire.BlockParams{Peer: "gw-b", Addresses: []string{"198.51.100.7"}})
	status, body := h.send(h.command(wire.KindBlock, wire.BlockParams{Peer: "gw-c", Addresses: []string{"198.18.0.0/24"}}))
	if status != http.StatusBadRequest || !strings.Contains(string(body), "own address") {
		t.Fatalf("status %d (%s), want 400 with the blocker's reason", status, body)
	}
	if st := h.observe(); len(st.Blocked) != 1 || st.Blocked[0].Peer != "gw-b" {
		t.Fatalf("blocked %+v, want only gw-b", st.Blocked)
	}
	r, err := loadBlocks(h.cfg.StateDir)
	if err != nil || len(r.Peers) != 1 {
		t.Fatalf("record on disk %+v, %v: want only gw-b", r, err)
	}
	if got, _ := b.state(); !slices.Equal(got, mustPrefixes("198.51.100.7/32")) {
		t.Fatalf("kernel blocks %v", got)
	}
}

func TestBlockRestoreAtStart(t *testing.T) {
	t.Run("stale kernel block without a record is lifted", func(t *testing.T) {
		b := &fakeBlocker{blocked: mustPrefixes("198.51.100.7/32")}
		h := newHarness(t)
		h.blocker = b
		h.start()
		if got, sets := b.state(); len(got) != 0 || sets != 1 {
			t.Fatalf("kernel blocks %v after %d sets, want none", got, sets)
		}
	})
	t.Run("nothing recorded, nothing blocked: the kernel is left alone", func(t *testing.T) {
		b := &fakeBlocker{}
		h := newHarness(t)
		h.blocker = b
		h.start()
		if _, sets := b.state(); sets != 0 {
			t.Fatalf("%d sets at start, want none", sets)
		}
	})
	t.Run("a quarantine state file from before blocks loads", func(t *testing.T) {
		h := newHarness(t)
		h.blocker = &fakeBlocker{}
		if err := os.MkdirAll(h.cfg.StateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		old := `{"version":1,"quarantined":true,"confirmed":true,"generation":3,"spec":{"management":["192.0.2.0/24"]}}`
		if err := os.WriteFile(filepath.Join(h.cfg.StateDir, stateFile), []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
		h.start()
		if st := h.observe(); !st.Quarantined || st.Generation != 3 || len(st.Blocked) != 0 {
			t.Fatalf("state %+v", st)
		}
	})
	t.Run("an unreadable blocklist stops the agent", func(t *testing.T) {
		h := newHarness(t)
		if err := os.MkdirAll(h.cfg.StateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{
			"truncated":    `{"version":1,"peers":{"gw-b":["198.51.100.7/32"`,
			"wildcard":     `{"version":1,"peers":{"*":["198.51.100.7/32"]}}`,
			"everything":   `{"version":1,"peers":{"gw-b":["0.0.0.0/0"]}}`,
			"future field": `{"version":1,"peers":{},"ttl":"1h"}`,
		} {
			if err := os.WriteFile(filepath.Join(h.cfg.StateDir, blocksFile), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := New(h.cfg, Deps{Firewall: h.fw, KillFlows: h.flows.kill}, nil); err == nil || !strings.Contains(err.Error(), "blocklist") {
				t.Errorf("%s: New = %v, want a blocklist error", name, err)
			}
		}
	})
}

// TestSecretsNeverLogged sends keys in every command that carries them,
// accepted, refused by the agent and refused by the seam, and looks for
// them in the agent's log and answers.
func TestSecretsNeverLogged(t *testing.T) {
	h := newHarness(t)
	logs := h.captureLog()
	wg := &fakeWG{devices: map[string]wire.WGDevice{"wg0": {Name: "wg0", PublicKey: testKey(1)}}}
	v := &fakeVICI{}
	h.wg, h.vici = wg, v
	h.start()

	priv, psk := testKey(0xa1), testKey(0xb2)
	// Not a key, but what a careless controller might send as one.
	notAKey := "correct-horse-battery-staple-psk"
	ikePSK := "ike-psk-Zm9vYmFyYmF6cXV4"
	secrets := []string{priv, psk, notAKey, ikePSK}

	var answers []string
	send := func(kind string, params any) {
		_, body := h.send(h.command(kind, params))
		answers = append(answers, string(body))
	}
	configure := func(c wire.WGConfig) wire.WireGuardParams {
		return wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0", Config: &c}
	}
	loadShared := wire.VICIParams{Command: "load-shared", Message: wire.VICIMessage{
		{Key: "id", Value: ptr("gw-b/2")}, {Key: "type", Value: ptr("IKE")},
		{Key: "data", Value: ptr(ikePSK)}, {Key: "owners", List: []string{"gw-b.example"}, IsList: true},
	}}

	send(wire.KindWireGuard, configure(wire.WGConfig{PrivateKey: priv, Peers: []wire.WGPeerConfig{{PublicKey: testKey(2), PresharedKey: psk}}}))
	send(wire.KindWireGuard, configure(wire.WGConfig{Peers: []wire.WGPeerConfig{{PublicKey: testKey(2), PresharedKey: notAKey}}}))
	send(wire.KindWireGuard, configure(wire.WGConfig{PrivateKey: notAKey}))
	send(wire.KindVICI, loadShared)
	// The seams fail too.
	wg.mu.Lock()
	wg.err = fmt.Errorf("%w: config.peers[0].preshared_key: not a base64-encoded 32-byte key", ErrInvalidParams)
	wg.mu.Unlock()
	v.mu.Lock()
	v.err = actions.Terminal(errors.New("charon refused load-shared: loading shared key failed"))
	v.mu.Unlock()
	send(wire.KindWireGuard, configure(wire.WGConfig{PrivateKey: priv, Peers: []wire.WGPeerConfig{{PublicKey: testKey(2), PresharedKey: psk}}}))
	send(wire.KindVICI, loadShared)

	if len(wg.configured.all()) != 2 || len(v.ran.all()) != 2 {
		t.Fatalf("the seams ran %d configures and %d VICI commands, want 2 and 2", len(wg.configured.all()), len(v.ran.all()))
	}
	if !strings.Contains(logs.String(), "kind=wireguard") || !strings.Contains(logs.String(), "kind=vici") {
		t.Fatalf("the log does not mention the commands at all:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a secret appears in the agent's log:\n%s", logs)
		}
		for _, a := range answers {
			if strings.Contains(a, s) {
				t.Errorf("a secret appears in an answer: %s", a)
			}
		}
	}
}

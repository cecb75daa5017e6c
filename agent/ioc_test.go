package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
)

// iocKernel is the kernel's IoC blocklist: a fakeBlocker that names its
// backend and can be made to report faults.
type iocKernel struct {
	fakeBlocker
	fmu    sync.Mutex
	faults []string
}

func (k *iocKernel) Observe(ctx context.Context) (BlockObservation, error) {
	obs, err := k.fakeBlocker.Observe(ctx)
	k.fmu.Lock()
	defer k.fmu.Unlock()
	obs.Backend, obs.Faults = "fake", slices.Clone(k.faults)
	obs.Enforced = obs.Enforced && len(k.faults) == 0
	return obs, err
}

// loseByHand removes a prefix from the kernel behind the agent's back.
func (k *iocKernel) loseByHand(p netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.blocked = slices.DeleteFunc(k.blocked, func(q netip.Prefix) bool { return q == p })
}

// iocAgent is an agent whose IoC blocker is kernel (nil: none), driven
// through its command handler. The handler sees the request come from
// 192.0.2.1, inside the agent's management network.
type iocAgent struct {
	t      *testing.T
	h      *harness
	kernel *iocKernel
	srv    *Server
}

func newIOCAgent(t *testing.T, kernel *iocKernel) *iocAgent {
	t.Helper()
	a := &iocAgent{t: t, h: newHarness(t), kernel: kernel}
	a.restart(kernel)
	return a
}

// restart builds the agent again over the same state directory, with
// kernel as its IoC blocker, and runs what Serve runs for the IoC
// blocklist before it accepts a connection.
func (a *iocAgent) restart(kernel *iocKernel) {
	a.t.Helper()
	if a.srv != nil {
		_ = a.srv.Close()
	}
	deps := Deps{Firewall: a.h.fw, KillFlows: a.h.flows.kill, Clock: a.h.clock}
	if kernel != nil {
		deps.IOCBlocker = kernel
	}
	srv, err := New(a.h.cfg, deps, a.h.log)
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { _ = srv.Close() })
	a.srv, a.kernel = srv, kernel
	srv.restoreIOC(a.t.Context())
}

// post hands a raw body to the command handler.
func (a *iocAgent) post(body []byte) (int, []byte) {
	a.t.Helper()
	req := httptest.NewRequest(http.MethodPost, wire.CommandsPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.srv.handleCommand(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// command sends a fresh command of kind and returns the status and body.
func (a *iocAgent) command(kind string, params any) (int, []byte) {
	a.t.Helper()
	b, err := json.Marshal(a.h.command(kind, params))
	if err != nil {
		a.t.Fatal(err)
	}
	return a.post(b)
}

// ioc sends an ioc_block and decodes a 200.
func (a *iocAgent) ioc(p wire.IOCBlockParams) wire.IOCBlockResult {
	a.t.Helper()
	status, body := a.command(wire.KindIOCBlock, p)
	if status != http.StatusOK {
		a.t.Fatalf("ioc_block: status %d: %s", status, body)
	}
	var res wire.IOCBlockResult
	if err := json.Unmarshal(body, &res); err != nil {
		a.t.Fatal(err)
	}
	return res
}

// recorded is what ioc.json holds.
func (a *iocAgent) recorded() []netip.Prefix {
	a.t.Helper()
	r, err := loadIOC(a.h.cfg.StateDir)
	if err != nil {
		a.t.Fatal(err)
	}
	return r.Prefixes
}

func setOf(ss ...string) wire.IOCBlockParams { return wire.IOCBlockParams{Set: true, Prefixes: ss} }

func TestIOCBlockSetsObservesAndIsIdempotent(t *testing.T) {
	a := newIOCAgent(t, &iocKernel{})
	want := mustPrefixes("198.18.7.0/24", "203.0.113.9/32", "2001:db8:c2::/48")

	// Written loosely: a bare address, a mapped one, host bits, halves
	// that merge, a duplicate.
	res := a.ioc(setOf("203.0.113.9", "198.18.7.0/25", "198.18.7.128/25", "2001:db8:c2::1/48", "::ffff:203.0.113.9", " 198.18.7.7/32 "))
	if !res.Changed || !res.Enforced || res.Count != 3 || res.Digest != wire.PrefixDigest(want) || res.Backend != "fake" || len(res.Faults) > 0 {
		t.Fatalf("first set: %+v", res)
	}
	if blocked, _ := a.kernel.state(); !slices.Equal(blocked, want) {
		t.Fatalf("kernel holds %v, want %v", blocked, want)
	}
	if got := a.recorded(); !slices.Equal(got, want) {
		t.Fatalf("ioc.json holds %v, want %v", got, want)
	}

	again := a.ioc(setOf("2001:db8:c2::/48", "198.18.7.0/24", "203.0.113.9/32"))
	if again.Changed || !again.Enforced || again.Digest != res.Digest {
		t.Fatalf("the same set again: %+v", again)
	}
	if obs := a.ioc(wire.IOCBlockParams{}); obs.Changed || !obs.Enforced || obs.Count != 3 || obs.Digest != res.Digest {
		t.Fatalf("observe: %+v", obs)
	}
	_, sets := a.kernel.state()

	// Emptying the set lifts it: nothing recorded, nothing in the kernel,
	// which counts as enforced.
	empty := a.ioc(wire.IOCBlockParams{Set: true})
	if !empty.Changed || !empty.Enforced || empty.Count != 0 || empty.Digest != wire.PrefixDigest(nil) {
		t.Fatalf("emptied: %+v", empty)
	}
	if blocked, n := a.kernel.state(); len(blocked) != 0 || n != sets+1 {
		t.Fatalf("kernel after emptying: %v after %d sets", blocked, n)
	}
	if got := a.recorded(); len(got) != 0 {
		t.Fatalf("ioc.json still holds %v", got)
	}
}

func TestIOCBlockRefusesBadParams(t *testing.T) {
	a := newIOCAgent(t, &iocKernel{})
	a.ioc(setOf("198.18.7.0/24"))
	_, sets := a.kernel.state()
	tests := map[string]struct {
		params  wire.IOCBlockParams
		wantErr string
	}{
		"not a prefix":          {setOf("198.18.7.0/24", "c2.example"), "prefixes[1]"},
		"every address":         {setOf("0.0.0.0/0"), "would block every address"},
		"every ipv6 address":    {setOf("::/0"), "would block every address"},
		"a zone":                {setOf("fe80::1%eth0"), "prefixes[0]"},
		"loopback":              {setOf("198.18.8.1", "127.0.0.0/8"), "prefixes[1]: 127.0.0.0/8 overlaps"},
		"the management net":    {setOf("192.0.2.128/25"), "overlaps 192.0.2.0/24"},
		"wider than management": {setOf("192.0.0.0/16"), "overlaps 192.0.2.0/24"},
		"prefixes to observe":   {wire.IOCBlockParams{Prefixes: []string{"198.18.7.1"}}, "only a set"},
		"too many":              {wire.IOCBlockParams{Set: true, Prefixes: make([]string, wire.MaxIOCPrefixes+1)}, "at most"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := a.command(wire.KindIOCBlock, tc.params)
			if status != http.StatusBadRequest || !strings.Contains(string(body), tc.wantErr) {
				t.Fatalf("status %d: %s; want 400 naming %q", status, body, tc.wantErr)
			}
		})
	}
	if blocked, n := a.kernel.state(); n != sets || !slices.Equal(blocked, mustPrefixes("198.18.7.0/24")) {
		t.Fatalf("refused commands reached the kernel: %v after %d sets, want %d", blocked, n, sets)
	}
	if got := a.recorded(); !slices.Equal(got, mustPrefixes("198.18.7.0/24")) {
		t.Fatalf("refused commands changed ioc.json: %v", got)
	}
}

func TestIOCBlockRefusedByTheKernelIsForgotten(t *testing.T) {
	kernel := &iocKernel{}
	kernel.own = netip.MustParseAddr("198.18.9.9")
	a := newIOCAgent(t, kernel)
	a.ioc(setOf("198.18.7.0/24"))
	status, body := a.command(wire.KindIOCBlock, setOf("198.18.7.0/24", "198.18.9.0/24"))
	if status != http.StatusBadRequest || !strings.Contains(string(body), "own address") {
		t.Fatalf("status %d: %s; want 400 from the kernel's refusal", status, body)
	}
	if got := a.recorded(); !slices.Equal(got, mustPrefixes("198.18.7.0/24")) {
		t.Fatalf("ioc.json holds %v after the refusal, want the set before it", got)
	}
	if obs := a.ioc(wire.IOCBlockParams{}); !obs.Enforced || obs.Count != 1 {
		t.Fatalf("observe after the refusal: %+v", obs)
	}
}

func TestIOCBlockReportsDrift(t *testing.T) {
	a := newIOCAgent(t, &iocKernel{})
	want := mustPrefixes("198.18.7.0/24", "203.0.113.9/32")
	a.ioc(setOf("198.18.7.0/24", "203.0.113.9/32"))

	// A prefix deleted by hand: the structure is intact, the set is not.
	a.kernel.loseByHand(want[1])
	obs := a.ioc(wire.IOCBlockParams{})
	if obs.Enforced || obs.Count != 1 || obs.Digest == wire.PrefixDigest(want) ||
		!slices.Equal(obs.Faults, []string{"1 prefixes recorded but not blocked by the kernel: 203.0.113.9/32"}) {
		t.Fatalf("observe after a hand deletion: %+v", obs)
	}
	// The backend's own faults (a hook unhooked) come through.
	a.kernel.fmu.Lock()
	a.kernel.faults = []string{"chain output missing: nothing dropped there"}
	a.kernel.fmu.Unlock()
	if obs := a.ioc(wire.IOCBlockParams{}); obs.Enforced || !slices.Contains(obs.Faults, "chain output missing: nothing dropped there") {
		t.Fatalf("observe with a backend fault: %+v", obs)
	}
	a.kernel.fmu.Lock()
	a.kernel.faults = nil
	a.kernel.fmu.Unlock()

	// Set repairs the kernel although the record does not change.
	if res := a.ioc(setOf("198.18.7.0/24", "203.0.113.9/32")); !res.Changed || !res.Enforced || res.Digest != wire.PrefixDigest(want) {
		t.Fatalf("repairing set: %+v", res)
	}
	// Prefixes in the kernel that nobody recorded are drift too.
	a.ioc(wire.IOCBlockParams{Set: true})
	if _, err := a.kernel.Set(t.Context(), mustPrefixes("198.18.99.0/24")); err != nil {
		t.Fatal(err)
	}
	if obs := a.ioc(wire.IOCBlockParams{}); obs.Enforced || len(obs.Faults) != 1 || !strings.Contains(obs.Faults[0], "none recorded") {
		t.Fatalf("observe with an unrecorded set in the kernel: %+v", obs)
	}
}

func TestIOCBlockSurvivesRestart(t *testing.T) {
	a := newIOCAgent(t, &iocKernel{})
	want := mustPrefixes("198.18.7.0/24", "2001:db8:c2::/48")
	a.ioc(setOf("198.18.7.0/24", "2001:db8:c2::/48"))

	// After a reboot the kernel holds nothing: the agent puts the set back
	// before it serves.
	a.restart(&iocKernel{})
	if blocked, n := a.kernel.state(); !slices.Equal(blocked, want) || n != 1 {
		t.Fatalf("after restart the kernel holds %v (%d sets), want %v", blocked, n, want)
	}
	if obs := a.ioc(wire.IOCBlockParams{}); !obs.Enforced || obs.Digest != wire.PrefixDigest(want) {
		t.Fatalf("observe after restart: %+v", obs)
	}

	// Emptied, then a kernel that still holds a set at start (a crash
	// between the record and the kernel): the agent lifts it.
	a.ioc(wire.IOCBlockParams{Set: true})
	stale := &iocKernel{}
	if _, err := stale.Set(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	a.restart(stale)
	if blocked, _ := a.kernel.state(); len(blocked) != 0 {
		t.Fatalf("a set nobody recorded survived the start: %v", blocked)
	}

	// An agent without an IoC blocker starts, and answers 501.
	a.ioc(setOf("198.18.7.0/24"))
	a.restart(nil)
	if status, body := a.command(wire.KindIOCBlock, wire.IOCBlockParams{}); status != http.StatusNotImplemented {
		t.Fatalf("without an IoC blocker: status %d: %s; want 501", status, body)
	}
}

func TestIOCBlockRecordMustParse(t *testing.T) {
	tests := map[string]struct {
		file    string
		wantErr string
	}{
		"not json":        {"{", "ioc.json"},
		"unknown field":   {`{"version":1,"prefixes":[],"extra":1}`, "unknown field"},
		"wrong version":   {`{"version":2}`, "version 2"},
		"not a prefix":    {`{"version":1,"prefixes":["c2.example"]}`, "ioc.json"},
		"every address":   {`{"version":1,"prefixes":["0.0.0.0/0"]}`, "prefixes[0]"},
		"normal form too": {`{"version":1,"prefixes":["198.18.7.128/25","198.18.7.0/25"]}`, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if err := prepareStateDir(h.cfg.StateDir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(h.cfg.StateDir, iocFile), []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			srv, err := New(h.cfg, Deps{Firewall: h.fw, KillFlows: h.flows.kill, Clock: h.clock}, h.log)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				if got := fmt.Sprint(srv.ioc.Prefixes); got != "[198.18.7.0/24]" {
					t.Fatalf("loaded %s, want [198.18.7.0/24]", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				if srv != nil {
					srv.Close()
				}
				t.Fatalf("New = %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestIOCBlockBodyLimit(t *testing.T) {
	a := newIOCAgent(t, &iocKernel{})
	// 100,000 prefixes are megabytes: allowed for ioc_block only.
	big := make([]string, 100_000)
	for i := range big {
		big[i] = netip.AddrFrom4([4]byte{20 + byte(i>>16), byte(i >> 8), byte(i), 1}).String()
	}
	res := a.ioc(wire.IOCBlockParams{Set: true, Prefixes: big})
	if !res.Enforced || res.Count != len(big) {
		t.Fatalf("set of %d prefixes: %+v", len(big), res)
	}

	for name, tc := range map[string]struct {
		kind   string
		params any
		want   int
	}{
		"another kind over the small limit": {wire.KindCapture, wire.CaptureParams{Incident: strings.Repeat("x", wire.MaxRequestBytes)}, http.StatusRequestEntityTooLarge},
		"ioc_block over its limit":          {wire.KindIOCBlock, wire.IOCBlockParams{Set: true, Prefixes: []string{strings.Repeat("x", wire.MaxIOCRequestBytes)}}, http.StatusRequestEntityTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			if status, body := a.command(tc.kind, tc.params); status != tc.want {
				t.Fatalf("status %d: %.200s; want %d", status, body, tc.want)
			}
		})
	}
}

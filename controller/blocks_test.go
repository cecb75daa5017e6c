package controller

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/inventory"
)

func TestBlockJudge(t *testing.T) {
	cfg := config.Defaults().Blocks
	cfg.Protected = []string{"203.0.113.128/25"}
	j := newBlockJudge(testInventory(), cfg)
	for p, want := range map[string]string{
		"203.0.113.7/32":     "",
		"198.51.100.128/25":  "",
		"2001:db8::/32":      "",
		"185.220.0.0/16":     "",
		"8.0.0.0/8":          "wider than /16 (blocks.max_auto_prefix_v4)",
		"2001:db8::/31":      "wider than /32 (blocks.max_auto_prefix_v6)",
		"10.1.2.3/32":        "private (RFC 1918)",
		"100.64.1.1/32":      "carrier-grade NAT",
		"127.0.0.1/32":       "loopback",
		"169.254.9.9/32":     "link-local",
		"224.0.0.251/32":     "multicast",
		"250.1.1.1/32":       "reserved (future use",
		"198.18.3.4/32":      "benchmarking",
		"fe80::1/128":        "link-local",
		"fd00::1/128":        "unique local",
		"ff02::1/128":        "multicast",
		"::1/128":            "loopback",
		"198.51.100.3/32":    "an address of gateway gw-osaka (a tunnel endpoint)",
		"192.0.2.5/32":       "a management network of gateway gw-hq",
		"203.0.113.200/32":   "protected (blocks.protected)",
		"198.51.100.0/25":    "an address of gateway gw-hq",
		"203.0.113.64/26":    "",
		"2001:db8:1::/48":    "",
		"64:ff9b::1/128":     "NAT64",
		"::ffff:8.8.8.8/128": "IPv4-mapped",
	} {
		got := strings.Join(j.unsafe(netip.MustParsePrefix(p)), "; ")
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
}

// fakeIOC is a gateway's kernel IoC set, per gateway.
type fakeIOC struct {
	mu      sync.Mutex
	sets    map[string][]netip.Prefix
	sets_n  int
	lie     bool // the kernel reads back something else
	failing string
}

func (f *fakeIOC) SetIOCBlocks(_ context.Context, gw inventory.Gateway, ps []netip.Prefix) (wire.IOCBlockResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gw.ID == f.failing {
		return wire.IOCBlockResult{}, actions.Terminal(errors.New("agent refused"))
	}
	n, _ := wire.NormalizePrefixes(ps)
	changed := wire.PrefixDigest(n) != wire.PrefixDigest(f.sets[gw.ID])
	if changed {
		f.sets_n++
	}
	f.sets[gw.ID] = n
	return f.result(gw.ID, changed), nil
}

func (f *fakeIOC) ObserveIOCBlocks(_ context.Context, gw inventory.Gateway) (wire.IOCBlockResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.result(gw.ID, false), nil
}

func (f *fakeIOC) result(gw string, changed bool) wire.IOCBlockResult {
	set := f.sets[gw]
	if f.lie {
		set = nil
	}
	return wire.IOCBlockResult{Changed: changed, Backend: "fake", Count: len(set), Digest: wire.PrefixDigest(set), Enforced: true}
}

func (f *fakeIOC) held(gw string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.sets[gw] {
		out = append(out, p.String())
	}
	return out
}

type blockHarness struct {
	*harness
	ioc   *fakeIOC
	clock *clocktest.Fake
}

// newBlockHarness: gw-hq and gw-osaka have agents, the rest do not.
func newBlockHarness(t *testing.T, mutate func(*Options)) blockHarness {
	t.Helper()
	f := &fakeIOC{sets: map[string][]netip.Prefix{}}
	clk := clocktest.NewFake(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC))
	h := newHarness(t, func(o *Options) {
		o.Clock = clk
		o.Blocks = config.Defaults().Blocks
		inv := *o.Inventory
		inv.Gateways = slices.Clone(inv.Gateways)
		for i := range inv.Gateways {
			if id := inv.Gateways[i].ID; id == "gw-hq" || id == "gw-osaka" {
				inv.Gateways[i].Agent = id + ".example:8781"
			}
		}
		o.Inventory = &inv
		cat, err := actions.NewCatalogue(actions.NewBlockIOC(f))
		if err != nil {
			t.Fatal(err)
		}
		for n, e := range o.Actions {
			cat[n] = e
		}
		o.Actions = cat
		if mutate != nil {
			mutate(o)
		}
	})
	return blockHarness{harness: h, ioc: f, clock: clk}
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestRequestBlocksSafeAndUnsafe(t *testing.T) {
	h := newBlockHarness(t, nil)
	ctx := t.Context()
	now := h.clock.Now()
	out, err := h.c.RequestBlocks(ctx, "user:feed", []BlockRequest{
		{Prefixes: prefixes("203.0.113.7/32"), Source: "stix", Ref: "indicator--c2", Kind: "c2_beacon", TLP: "TLP:AMBER"},
		{Prefixes: prefixes("10.9.9.9/32", "185.220.101.0/24"), Source: "stix", Ref: "indicator--private"},
		{Prefixes: prefixes("8.0.0.0/8"), Source: "stix", Ref: "indicator--wide", ValidUntil: now.Add(365 * 24 * time.Hour)},
		{Domains: []string{"evil.example"}, Source: "stix", Ref: "indicator--name"},
	})
	if err != nil {
		t.Fatal(err)
	}
	states := []BlockState{out[0].Block.State, out[1].Block.State, out[2].Block.State, out[3].Block.State}
	if !slices.Equal(states, []BlockState{BlockActive, BlockPending, BlockPending, BlockNoted}) {
		t.Fatalf("states %v", states)
	}
	if u := strings.Join(out[1].Block.Unsafe, "; "); !strings.Contains(u, "10.9.9.9/32 overlaps 10.0.0.0/8") || strings.Contains(u, "185.220") {
		t.Errorf("unsafe of the private request: %q", u)
	}
	if got, want := out[0].Block.ExpiresAt, now.Add(7*24*time.Hour); !got.Equal(want) {
		t.Errorf("default expiry %v, want %v", got, want)
	}
	if got, want := out[2].Block.ExpiresAt, now.Add(90*24*time.Hour); !got.Equal(want) {
		t.Errorf("a year asked for: expiry %v, want the 90-day maximum %v", got, want)
	}
	again, err := h.c.RequestBlocks(ctx, "user:other", []BlockRequest{{Prefixes: prefixes("203.0.113.8/32"), Source: "stix", Ref: "indicator--c2"}})
	if err != nil || again[0].Created || again[0].Block.Number != out[0].Block.Number || again[0].Block.RequestedBy != "user:feed" {
		t.Errorf("the same reference again: %+v, %v; want the recorded block unchanged", again, err)
	}
	for _, bad := range []BlockRequest{
		{Source: "stix"},
		{Prefixes: prefixes("203.0.113.9/32")},
		{Prefixes: prefixes("203.0.113.9/32"), Source: "x", ValidUntil: now.Add(-time.Minute)},
		{Prefixes: prefixes("203.0.113.9/32"), Source: "x", Kind: "nonsense"},
	} {
		if _, err := h.c.RequestBlocks(ctx, "user:feed", []BlockRequest{{Prefixes: prefixes("203.0.113.10/32"), Source: "ok"}, bad}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "blocks[1]") {
			t.Errorf("%+v: %v, want ErrInvalid naming blocks[1]", bad, err)
		}
	}
	if all, _ := h.c.Blocks(ctx, BlockFilter{}); len(all) != 4 {
		t.Errorf("a refused batch left blocks behind: %d recorded, want 4", len(all))
	}
}

func TestBlocksFourEyesAndReconcile(t *testing.T) {
	h := newBlockHarness(t, nil)
	ctx := t.Context()
	out, err := h.c.RequestBlocks(ctx, "user:alice", []BlockRequest{
		{Prefixes: prefixes("203.0.113.7/32", "2001:db8:bad::/48"), Source: "openc2", Ref: "req-1"},
		{Prefixes: prefixes("172.16.5.5/32"), Source: "openc2", Ref: "req-2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.c.ReconcileBlocks(ctx); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{"gw-hq", "gw-osaka"} {
		if got := h.ioc.held(gw); !slices.Equal(got, []string{"203.0.113.7/32", "2001:db8:bad::/48"}) {
			t.Errorf("%s holds %v; want only the safe block", gw, got)
		}
	}
	if got := h.ioc.held("gw-dc"); got != nil {
		t.Errorf("gw-dc has no agent, yet holds %v", got)
	}
	pending := out[1].Block.Number
	if _, err := h.c.ApproveBlock(ctx, "user:alice", pending, "I know"); !errors.Is(err, ErrForbidden) {
		t.Errorf("the requester approving: %v, want ErrForbidden", err)
	}
	b, err := h.c.ApproveBlock(ctx, "user:bob", pending, "known bad host in a partner's range")
	if err != nil || b.State != BlockActive || b.DecidedBy != "user:bob" {
		t.Fatalf("approval by another person: %+v, %v", b, err)
	}
	// An approved block over a gateway's management network is written
	// everywhere but there.
	mg, err := h.c.RequestBlocks(ctx, "user:alice", []BlockRequest{{Prefixes: prefixes("192.0.2.0/28"), Source: "api"}})
	if err != nil || mg[0].Block.State != BlockPending {
		t.Fatalf("%+v, %v", mg, err)
	}
	if _, err := h.c.ApproveBlock(ctx, "user:bob", mg[0].Block.Number, "approved"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.ReconcileBlocks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.ioc.held("gw-hq"); slices.Contains(got, "192.0.2.0/28") {
		t.Errorf("gw-hq holds its own management network: %v", got)
	}
	if _, err := h.c.WithdrawBlock(ctx, "user:bob", mg[0].Block.Number, "test over"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.ApproveBlock(ctx, "user:carol", pending, ""); !errors.Is(err, ErrConflict) {
		t.Errorf("approving twice: %v, want ErrConflict", err)
	}
	if err := h.c.ReconcileBlocks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.ioc.held("gw-hq"); !slices.Contains(got, "172.16.5.5/32") {
		t.Errorf("approved block not held: %v", got)
	}
	// Withdrawn: out of the set on the next pass.
	if _, err := h.c.WithdrawBlock(ctx, "user:bob", out[0].Block.Number, "false positive"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.ReconcileBlocks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.ioc.held("gw-osaka"); !slices.Equal(got, []string{"172.16.5.5/32"}) {
		t.Errorf("after withdrawal gw-osaka holds %v", got)
	}
	// Expired: out of the set, and the kernel set emptied.
	h.clock.Advance(8 * 24 * time.Hour)
	if err := h.c.ReconcileBlocks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.ioc.held("gw-hq"); len(got) != 0 {
		t.Errorf("after expiry gw-hq holds %v", got)
	}
	if b, _ := h.c.Block(ctx, pending); b.State != BlockExpired {
		t.Errorf("block %d is %s, want expired", pending, b.State)
	}
	es, err := audit.List(ctx, h.st.DB(), "")
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, e := range es {
		if strings.HasPrefix(e.Action, "block.") && !slices.Contains(acts, e.Action) {
			acts = append(acts, e.Action)
		}
	}
	slices.Sort(acts)
	if want := []string{"block.applied", "block.approved", "block.expired", "block.requested", "block.withdrawn"}; !slices.Equal(acts, want) {
		t.Errorf("audited %v, want %v", acts, want)
	}
}

// An automatic block that has become unsafe since (a gateway now has an
// address inside it) is held back at the moment of acting.
func TestBlockUnsafeAtActingIsHeldBack(t *testing.T) {
	var inv *inventory.Inventory
	h := newBlockHarness(t, func(o *Options) { inv = o.Inventory })
	ctx := t.Context()
	out, err := h.c.RequestBlocks(ctx, "user:feed", []BlockRequest{{Prefixes: prefixes("203.0.113.0/24"), Source: "misp", Ref: "attr-1"}})
	if err != nil || out[0].Block.State != BlockActive {
		t.Fatalf("%+v, %v", out, err)
	}
	inv.Gateways[len(inv.Gateways)-1].Addresses = append(inv.Gateways[len(inv.Gateways)-1].Addresses, "203.0.113.77")
	if err := h.c.ReconcileBlocks(ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.ioc.held("gw-hq"); len(got) != 0 {
		t.Errorf("gw-hq holds %v; the block covers a gateway's address now", got)
	}
	b, _ := h.c.Block(ctx, out[0].Block.Number)
	if b.State != BlockPending {
		t.Errorf("block is %s, want pending_approval", b.State)
	}
}

// A set that does not read back is an error, audited once however many
// passes see it.
func TestBlockNotVerified(t *testing.T) {
	h := newBlockHarness(t, func(o *Options) { o.Executor.MaxAttempts = 1 })
	ctx := t.Context()
	h.ioc.lie = true
	if _, err := h.c.RequestBlocks(ctx, "user:feed", []BlockRequest{{Prefixes: prefixes("203.0.113.7/32"), Source: "api"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := h.c.ReconcileBlocks(ctx); !errors.Is(err, actions.ErrNotVerified) {
			t.Fatalf("ReconcileBlocks = %v, want ErrNotVerified", err)
		}
	}
	es, _ := audit.List(ctx, h.st.DB(), "")
	n := 0
	for _, e := range es {
		if e.Action == "block.failed" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("block.failed audited %d times, want 2 (once per gateway)", n)
	}
	if st := h.c.GatewayBlockStatus(); len(st) != 2 || st[0].InSync || st[0].Error == "" {
		t.Errorf("status %+v", st)
	}
}

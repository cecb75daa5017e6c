package linux

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/netfilter"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// iocAgentKernel is an agent.Blocker standing for the kernel's IoC
// blocklist; own is an address it refuses to block, as the real one
// refuses the host's own.
type iocAgentKernel struct {
	mu    sync.Mutex
	calls int
	sets  [][]netip.Prefix
	own   netip.Addr
}

func (k *iocAgentKernel) Set(_ context.Context, ps []netip.Prefix) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	for _, p := range ps {
		if p.Contains(k.own) {
			return false, fmt.Errorf("%w: %s holds this host's own address", agent.ErrInvalidParams, p)
		}
	}
	changed := len(k.sets) == 0 || !slices.Equal(k.sets[len(k.sets)-1], ps)
	k.sets = append(k.sets, slices.Clone(ps))
	return changed, nil
}

func (k *iocAgentKernel) Observe(context.Context) (agent.BlockObservation, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var cur []netip.Prefix
	if len(k.sets) > 0 {
		cur = k.sets[len(k.sets)-1]
	}
	return agent.BlockObservation{Prefixes: slices.Clone(cur), Enforced: len(cur) > 0, Backend: "fake"}, nil
}

// setCount is how many times Set was called, refused or not.
func (k *iocAgentKernel) setCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// servedIOCAgent serves an agent over mutual TLS whose IoC blocker is
// blocker (nil: none) and returns a pool and a gateway for it.
func servedIOCAgent(t testing.TB, blocker agent.Blocker) (*AgentPool, inventory.Gateway) {
	t.Helper()
	deps := agent.Deps{Firewall: &agentFakeFirewall{}}
	if blocker != nil {
		deps.IOCBlocker = blocker
	}
	pki, url := agenttest.Serve(t, deps, nil)
	pool := NewAgentPool(controllerTLS(pki), slog.New(slog.DiscardHandler))
	t.Cleanup(pool.Close)
	return pool, inventory.Gateway{ID: "gw-osaka", Agent: url, ManagementNetworks: []string{agenttest.Management}}
}

func TestAgentPoolIOCBlocks(t *testing.T) {
	kernel := &iocAgentKernel{}
	pool, gw := servedIOCAgent(t, kernel)
	ctx := t.Context()
	asked := []netip.Prefix{
		netip.MustParsePrefix("203.0.113.9/32"), netip.MustParsePrefix("198.18.7.128/25"),
		netip.MustParsePrefix("198.18.7.0/25"), netip.MustParsePrefix("::ffff:203.0.113.9/128"),
		netip.MustParsePrefix("2001:db8:c2::/48"),
	}
	want, err := wire.NormalizePrefixes(asked)
	if err != nil {
		t.Fatal(err)
	}

	res, err := pool.SetIOCBlocks(ctx, gw, asked)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !res.Enforced || res.Count != len(want) || res.Digest != wire.PrefixDigest(want) || res.Backend != "fake" {
		t.Fatalf("SetIOCBlocks = %+v, want %d prefixes with digest %s, enforced", res, len(want), wire.PrefixDigest(want))
	}
	again, err := pool.SetIOCBlocks(ctx, gw, want)
	if err != nil || again.Changed || again.Digest != res.Digest {
		t.Fatalf("the same set again = %+v, %v; want unchanged", again, err)
	}
	obs, err := pool.ObserveIOCBlocks(ctx, gw)
	if err != nil || obs.Changed || !obs.Enforced || obs.Digest != res.Digest {
		t.Fatalf("ObserveIOCBlocks = %+v, %v", obs, err)
	}
	none, err := pool.SetIOCBlocks(ctx, gw, nil)
	if err != nil || !none.Changed || !none.Enforced || none.Count != 0 || none.Digest != wire.PrefixDigest(nil) {
		t.Fatalf("SetIOCBlocks(nil) = %+v, %v; want the set removed", none, err)
	}
}

func TestAgentPoolIOCBlocksRefusals(t *testing.T) {
	kernel := &iocAgentKernel{own: netip.MustParseAddr("198.18.9.9")}
	pool, gw := servedIOCAgent(t, kernel)
	noIOC, gwNoIOC := servedIOCAgent(t, nil)
	noAgent := inventory.Gateway{ID: "gw-dc"}
	tests := map[string]struct {
		pool        *AgentPool
		gw          inventory.Gateway
		prefixes    []netip.Prefix
		observe     bool
		unsupported bool
		wantErr     string
		reached     bool // the agent's kernel was asked
	}{
		"no agent":                 {pool, noAgent, []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}, false, true, "no agent", false},
		"no agent, observe":        {pool, noAgent, nil, true, true, "no agent", false},
		"invalid prefix":           {pool, gw, []netip.Prefix{{}}, false, false, "prefixes[0]", false},
		"over a management net":    {pool, gw, []netip.Prefix{netip.MustParsePrefix("192.0.0.0/16")}, false, false, "management network 192.0.2.0/24", false},
		"the agent has none":       {noIOC, gwNoIOC, []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}, false, true, "501", false},
		"the kernel refuses":       {pool, gw, []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24")}, false, false, "own address", true},
		"the agent's own networks": {pool, gw, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, false, false, "stays reachable", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := kernel.setCount()
			var err error
			if tc.observe {
				_, err = tc.pool.ObserveIOCBlocks(t.Context(), tc.gw)
			} else {
				_, err = tc.pool.SetIOCBlocks(t.Context(), tc.gw, tc.prefixes)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
			}
			if got := errors.Is(err, actions.ErrUnsupported); got != tc.unsupported {
				t.Errorf("errors.Is(err, ErrUnsupported) = %t, want %t", got, tc.unsupported)
			}
			if !tc.unsupported && !actions.IsTerminal(err) {
				t.Errorf("err %v is not terminal: retrying cannot help", err)
			}
			if reached := kernel.setCount() > before; reached != tc.reached {
				t.Errorf("the kernel was asked: %t, want %t", reached, tc.reached)
			}
		})
	}
	var ae *AgentError
	if _, err := noIOC.SetIOCBlocks(t.Context(), gwNoIOC, nil); !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented {
		t.Errorf("an agent without an IoC blocker answered %v, want 501", err)
	}
}

// kernelIOC is the agent's IoC seam over the real IoC blocklist, as the
// agent's composition root wires it (agent/agentd).
type kernelIOC struct{ netfilter.Blocklist }

func (k kernelIOC) Observe(ctx context.Context) (agent.BlockObservation, error) {
	st, err := k.Blocklist.Observe(ctx)
	return agent.BlockObservation{Prefixes: st.Prefixes, Enforced: st.Enforced, Backend: st.Backend, Faults: st.Faults}, err
}

// threatSet is n host prefixes, none next to another (so the normal form
// holds n too): 95% IPv4 (in 20.0.0.0/8, every third address) and 5% IPv6
// (in 2a00::/16, every other address).
func threatSet(n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for i := range n * 95 / 100 {
		a := 3 * i
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{20, byte(a >> 16), byte(a >> 8), byte(a)}), 32))
	}
	for i := len(out); i < n; i++ {
		var b [16]byte
		b[0] = 0x2a
		binary.BigEndian.PutUint32(b[12:], uint32(2*i))
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(b), 128))
	}
	return out
}

// kernelIOCAgent is an agent over mutual TLS whose IoC blocklist is the
// real nftables one, in a network namespace it makes and removes.
func kernelIOCAgent(tb testing.TB) (*netlab.Namespace, netfilter.Blocklist, *AgentPool, inventory.Gateway) {
	tb.Helper()
	netlabtest.Skip(tb, "nft")
	ns, err := netlab.NewNamespace("plioc-" + strings.ToLower(rand.Text()[:10]))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := ns.Close(); err != nil {
			tb.Error(err)
		}
	})
	var bl netfilter.Blocklist
	if err := ns.Do(func() error { bl, err = netfilter.NewIOCBlocklist(netfilter.BackendNFTables, nil); return err }); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = bl.Close() })
	pool, gw := servedIOCAgent(tb, kernelIOC{bl})
	return ns, bl, pool, gw
}

// BenchmarkBlockIOC100kThroughAgent: block_ioc of 100,000 prefixes onto a
// gateway holding none, as the controller runs it (Apply, then Verify
// reading the kernel's set back): the catalogue action, mutual TLS to the
// agent, one nftables transaction. Each iteration then empties the set
// (not timed).
func BenchmarkBlockIOC100kThroughAgent(b *testing.B) {
	_, _, pool, gw := kernelIOCAgent(b)
	req := actions.Request{Gateway: gw, Blocks: threatSet(100_000)}
	action := actions.NewBlockIOC(pool)
	ctx := b.Context()
	for b.Loop() {
		if _, err := actions.Execute(ctx, action, req); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := action.(actions.Undoer).Undo(ctx, req); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestAgentPoolIOCBlocksThroughTheKernel runs block_ioc end to end: the
// catalogue action over the pool, the agent over mutual TLS, and the
// agent's IoC blocklist in a network namespace the test makes, with
// 100,000 prefixes (a command of megabytes).
func TestAgentPoolIOCBlocksThroughTheKernel(t *testing.T) {
	ns, bl, pool, gw := kernelIOCAgent(t)
	ctx := t.Context()
	set := threatSet(100_000)
	if norm, err := wire.NormalizePrefixes(set); err != nil || len(norm) != len(set) {
		t.Fatalf("the threat set merges into %d prefixes (%v), want %d", len(norm), err, len(set))
	}
	req := actions.Request{Gateway: gw, Blocks: set}
	action := actions.NewBlockIOC(pool)

	if c, err := action.Plan(ctx, req); err != nil || len(c.Changes) == 0 {
		t.Fatalf("Plan = %+v, %v; want a change", c, err)
	}
	start := time.Now()
	res, err := action.Apply(ctx, req)
	if err != nil || !res.Changed {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	t.Logf("block_ioc of %d prefixes through the agent took %v", len(set), time.Since(start))
	if _, err := action.Verify(ctx, req); err != nil {
		t.Fatal(err)
	}
	if res, err := action.Apply(ctx, req); err != nil || res.Changed {
		t.Fatalf("Apply again = %+v, %v; want unchanged", res, err)
	}

	// A prefix deleted by hand: Observe reports it, Verify fails, and
	// Apply puts it back.
	if _, err := ns.Run(ctx, "nft", "delete", "element", "inet", netfilter.NFTIOCTable, "block4", "{", set[7].String(), "}"); err != nil {
		t.Fatal(err)
	}
	obs, err := pool.ObserveIOCBlocks(ctx, gw)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Enforced || obs.Count != len(set)-1 || !strings.Contains(strings.Join(obs.Faults, "\n"), set[7].String()) {
		t.Fatalf("Observe after a hand deletion: count %d, enforced %t, faults %q", obs.Count, obs.Enforced, obs.Faults)
	}
	if _, err := action.Verify(ctx, req); !errors.Is(err, actions.ErrNotVerified) {
		t.Fatalf("Verify after a hand deletion = %v, want ErrNotVerified", err)
	}
	if res, err := action.Apply(ctx, req); err != nil || !res.Changed {
		t.Fatalf("repairing Apply = %+v, %v", res, err)
	}
	if _, err := action.Verify(ctx, req); err != nil {
		t.Fatal(err)
	}

	if undo, ok := action.(actions.Undoer); !ok {
		t.Fatal("block_ioc has no Undo")
	} else if res, err := undo.Undo(ctx, req); err != nil || !res.Changed {
		t.Fatalf("Undo = %+v, %v", res, err)
	}
	if st, err := bl.Observe(ctx); err != nil || !st.Absent() {
		t.Fatalf("after Undo the kernel holds %+v, %v", st, err)
	}
}

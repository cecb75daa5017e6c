package netfilter

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/coreos/go-iptables/iptables"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"golang.org/x/sys/unix"
)

// benchNamespace is a fresh namespace for one benchmark of a backend
// (named name, needing tools), deleted when the benchmark ends.
func benchNamespace(b *testing.B, name string, tools []string) *netlab.Namespace {
	b.Helper()
	netlabtest.Skip(b, tools...)
	ns, err := netlab.NewNamespace(fmt.Sprintf("lxbench-%s-%d", name[:3], namespaceSeq.Add(1)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ns.Close() })
	return ns
}

func benchmarkFirewall(b *testing.B, bk quarantineBackend) {
	ns := benchNamespace(b, bk.name, bk.tools)
	var fw Quarantine
	if err := ns.Do(func() error { fw = bk.newFW(b, slog.New(slog.DiscardHandler)); return nil }); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	spec := labSpec()

	b.Run("apply+remove", func(b *testing.B) {
		for b.Loop() {
			if changed, err := fw.Apply(ctx, spec); err != nil || !changed {
				b.Fatalf("Apply = %t, %v", changed, err)
			}
			if changed, err := fw.Remove(ctx); err != nil || !changed {
				b.Fatalf("Remove = %t, %v", changed, err)
			}
		}
	})
	// The figure that matters for containment: quarantining a gateway that
	// has no quarantine yet. Between iterations (untimed) the rules are
	// removed and the kernel's deferred destruction is let finish, as it
	// has long finished on a real gateway when an alert arrives.
	b.Run("apply-clean", func(b *testing.B) {
		for b.Loop() {
			if changed, err := fw.Apply(ctx, spec); err != nil || !changed {
				b.Fatalf("Apply = %t, %v", changed, err)
			}
			b.StopTimer()
			if _, err := fw.Remove(ctx); err != nil {
				b.Fatal(err)
			}
			settle(b, ns)
			b.StartTimer()
		}
	})
	b.Run("apply-unchanged", func(b *testing.B) {
		if _, err := fw.Apply(ctx, spec); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = fw.Remove(ctx) })
		for b.Loop() {
			if changed, err := fw.Apply(ctx, spec); err != nil || changed {
				b.Fatalf("Apply = %t, %v", changed, err)
			}
		}
	})
	b.Run("observe", func(b *testing.B) {
		if _, err := fw.Apply(ctx, spec); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = fw.Remove(ctx) })
		for b.Loop() {
			if _, err := fw.Observe(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQuarantineApplyIPTables measures the chosen iptables path
// (one iptables -S plus one iptables-restore --noflush per family) and, for
// comparison, the same rules written one go-iptables call per rule.
func BenchmarkQuarantineApplyIPTables(b *testing.B) {
	bk := iptablesBackend()
	benchmarkFirewall(b, bk)

	b.Run("per-rule-go-iptables/apply+remove", func(b *testing.B) {
		ns := benchNamespace(b, bk.name, bk.tools)
		allow, err := allowListOf(labSpec())
		if err != nil {
			b.Fatal(err)
		}
		// The whole loop runs on this goroutine's thread, inside ns.
		err = ns.Do(func() error {
			ipts := map[Family]*iptables.IPTables{}
			for f, proto := range map[Family]iptables.Protocol{IPv4: iptables.ProtocolIPv4, IPv6: iptables.ProtocolIPv6} {
				ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(5))
				if err != nil {
					return err
				}
				ipts[f] = ipt
			}
			for b.Loop() {
				for f, ipt := range ipts {
					if err := perRuleApply(ipt, iptRules(f, allow.family(f))); err != nil {
						return err
					}
				}
				for _, ipt := range ipts {
					if err := perRuleRemove(ipt); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	})
}

// perRuleApply is the rejected alternative: a process per rule, and a window
// in which the chain is flushed but still jumped to.
func perRuleApply(ipt *iptables.IPTables, rules []string) error {
	if err := ipt.ClearChain("filter", QuarantineChain); err != nil {
		return err
	}
	for _, r := range rules {
		spec := strings.Fields(strings.TrimPrefix(r, "-A "+QuarantineChain+" "))
		if err := ipt.Append("filter", QuarantineChain, spec...); err != nil {
			return err
		}
	}
	for _, c := range hookChains() {
		if err := ipt.InsertUnique("filter", c, 1, "-j", QuarantineChain); err != nil {
			return err
		}
	}
	return nil
}

func perRuleRemove(ipt *iptables.IPTables) error {
	for _, c := range hookChains() {
		if err := ipt.DeleteIfExists("filter", c, "-j", QuarantineChain); err != nil {
			return err
		}
	}
	return ipt.ClearAndDeleteChain("filter", QuarantineChain)
}

// BenchmarkQuarantineApplyNFTables measures the nftables backend: one
// netlink transaction per change.
func BenchmarkQuarantineApplyNFTables(b *testing.B) { benchmarkFirewall(b, nftablesBackend()) }

// settle waits until the kernel has finished destroying deleted nftables
// objects: releasing a netfilter netlink socket waits for exactly that.
func settle(b *testing.B, ns *netlab.Namespace) {
	b.Helper()
	err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		_, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkKillFlows kills 100 IPv4 and 100 IPv6 flows (created untimed
// through conntrack netlink) while keeping 10 management flows.
func BenchmarkKillFlows(b *testing.B) {
	bk := iptablesBackend()
	ns := benchNamespace(b, bk.name, bk.tools)
	// Conntrack tracks nothing in a namespace until a rule needs it.
	if _, err := ns.Run(b.Context(), "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"); err != nil {
		b.Fatal(err)
	}
	keep := labSpec().Keep()
	err := ns.Do(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer h.Close()
		for b.Loop() {
			b.StopTimer()
			if err := createFlows(h); err != nil {
				return err
			}
			b.StartTimer()
			n, err := KillFlows(b.Context(), keep)
			if err != nil {
				return err
			}
			if n != 200 {
				return fmt.Errorf("killed %d flows, want 200", n)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func createFlows(h *netlink.Handle) error {
	flows := func(src, mgmt, dst func(i int) net.IP, family netlink.InetFamily) error {
		for i := range 110 {
			from := src(i)
			if i >= 100 {
				from = mgmt(i)
			}
			f := &netlink.ConntrackFlow{
				FamilyType: uint8(family),
				Forward:    netlink.IPTuple{SrcIP: from, DstIP: dst(i), Protocol: unix.IPPROTO_UDP, SrcPort: 40000, DstPort: 53},
				Reverse:    netlink.IPTuple{SrcIP: dst(i), DstIP: from, Protocol: unix.IPPROTO_UDP, SrcPort: 53, DstPort: 40000},
				TimeOut:    300,
			}
			if err := h.ConntrackCreate(netlink.ConntrackTable, family, f); err != nil {
				return fmt.Errorf("creating flow: %w", err)
			}
		}
		return nil
	}
	v4 := func(a, b, c byte) func(int) net.IP {
		return func(i int) net.IP { return net.IPv4(a, b, c, byte(i+1)).To4() }
	}
	v6 := func(prefix string) func(int) net.IP {
		return func(i int) net.IP { return net.ParseIP(fmt.Sprintf("%s%x", prefix, i+1)) }
	}
	if err := flows(v4(198, 18, 0), v4(198, 19, 0), v4(192, 0, 2), unix.AF_INET); err != nil {
		return err
	}
	return flows(v6("fd00:18::"), v6("fd00:19::"), v6("2001:db8:c2::"), unix.AF_INET6)
}

// BenchmarkIOCBlockSet100k measures the nftables IoC blocklist with a
// threat-intelligence set of 100,000 prefixes (about 85% IPv4 hosts, 10%
// IPv4 networks from /22 to /28, 5% IPv6 hosts and networks), in a fresh
// namespace. Each op is one Set (or Observe), including its reading of the
// table and its one netlink transaction:
//
//   - apply-empty: onto a kernel without the table (between iterations,
//     untimed, the table is removed and its destruction let finish);
//   - replace-1pct: replacing the set in force by one that differs in 1% of
//     its prefixes, alternately one way and back, the blocklist being the
//     only writer since its last Set (it knows the table it wrote);
//   - replace-1pct-cold: the same after another program changed the
//     ruleset (an empty table added or deleted, untimed), so that Set must
//     read the 100,000 prefixes back first;
//   - unchanged: Set of the set in force, what every reconcile pass costs;
//   - observe-cold: reading it back after another program changed the
//     ruleset.
func BenchmarkIOCBlockSet100k(b *testing.B) {
	bk := nftBlockBackend(iocBlocklist)
	ns := benchNamespace(b, "ioc", bk.tools)
	var bl Blocklist
	if err := ns.Do(func() error { bl = bk.newBL(b, slog.New(slog.DiscardHandler)); return nil }); err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	set := iocSet(b, 18, 100_000)
	other := iocVariant(b, set, 19, 0.01)
	mustChange := func(ps []netip.Prefix, want bool) {
		if changed, err := bl.Set(ctx, ps); err != nil || changed != want {
			b.Fatalf("Set of %d prefixes = %t, %v; want changed=%t", len(ps), changed, err, want)
		}
	}

	b.Run("apply-empty", func(b *testing.B) {
		for b.Loop() {
			mustChange(set, true)
			b.StopTimer()
			mustChange(nil, true)
			settle(b, ns)
			b.StartTimer()
		}
	})
	// bump changes the ruleset behind the blocklist's back, untimed.
	bumps := 0
	bump := func(b *testing.B) {
		b.StopTimer()
		defer b.StartTimer()
		verb := [2]string{"add", "delete"}[bumps%2]
		bumps++
		if _, err := ns.Run(ctx, "nft", verb, "table", "inet", "bench_bump"); err != nil {
			b.Fatal(err)
		}
	}
	replace := func(cold bool) func(b *testing.B) {
		return func(b *testing.B) {
			mustChange(set, true)
			b.Cleanup(func() { _, _ = bl.Set(ctx, nil) })
			next := [2][]netip.Prefix{other, set}
			i := 0
			for b.Loop() {
				if cold {
					bump(b)
				}
				mustChange(next[i%2], true)
				i++
			}
		}
	}
	b.Run("replace-1pct", replace(false))
	b.Run("replace-1pct-cold", replace(true))
	b.Run("unchanged", func(b *testing.B) {
		mustChange(set, true)
		b.Cleanup(func() { _, _ = bl.Set(ctx, nil) })
		for b.Loop() {
			mustChange(set, false)
		}
	})
	b.Run("observe-cold", func(b *testing.B) {
		mustChange(set, true)
		b.Cleanup(func() { _, _ = bl.Set(ctx, nil) })
		for b.Loop() {
			bump(b)
			if st, err := bl.Observe(ctx); err != nil || len(st.Prefixes) != len(set) {
				b.Fatalf("Observe = %d prefixes, %v; want %d", len(st.Prefixes), err, len(set))
			}
		}
	})
}

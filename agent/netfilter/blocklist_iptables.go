package netfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Chains of the iptables blocklists in table raw, for IPv4 and IPv6. The
// quarantine's chain (QuarantineChain, table filter) is never touched by
// either, nor either by the other.
const (
	// BlockChain is the peer blocklist's chain.
	BlockChain = "WARDEN-BLOCK"
	// IOCChain is the IoC blocklist's chain.
	IOCChain = "WARDEN-IOC"
)

// rawChain is a blocklist's chain in table raw, jumped to from PREROUTING
// (input and forward) and OUTPUT (what the host sends). The other
// blocklists' chains are its siblings: any of them may be jumped to first.
func (n blocklistNames) rawChain() iptChainSpec {
	spec := iptChainSpec{table: "raw", name: n.iptChain, hooks: []string{"PREROUTING", "OUTPUT"}, what: n.what}
	for _, o := range []blocklistNames{peerBlocklist, iocBlocklist} {
		if o.iptChain != n.iptChain {
			spec.siblings = append(spec.siblings, o.iptChain)
		}
	}
	return spec
}

// blockChain is the peer blocklist's chain.
var blockChain = peerBlocklist.rawChain()

// IPTablesBlocklist is an iptables blocklist: a chain in table raw
// (WARDEN-BLOCK for the peer blocklist, WARDEN-IOC for the IoC blocklist)
// with a "-s P -j DROP" and a "-d P -j DROP" per prefix, jumped to as the
// first rule of raw's PREROUTING and OUTPUT, for iptables and ip6tables.
// Rules are evaluated one after another, so a packet costs time linear in
// the number of prefixes: fine for a few peers, slow for a large IoC set
// (see NewIOCBlocklist). Table raw runs before conntrack and every other table, and a
// DROP there is final, so an ESTABLISHED accept in filter never sees a
// blocked packet. Each family is changed in one iptables-restore --noflush
// transaction (chain declared, which flushes it, refilled, jumps fixed,
// COMMIT).
type IPTablesBlocklist struct {
	log *slog.Logger
	// tools is an iptables backend used only for its located binaries,
	// its namespace-bound command runner and its per-family fan-out; it
	// never applies a quarantine.
	tools *IPTables
	chain iptChainSpec

	mu sync.Mutex // serialises read-compare-write; iptables has no compare-and-swap
}

var _ Blocklist = (*IPTablesBlocklist)(nil)

// NewIPTablesBlocklist returns the iptables peer blocklist bound to the
// calling thread's network namespace. Close releases it.
func NewIPTablesBlocklist(log *slog.Logger) (*IPTablesBlocklist, error) {
	return newIPTablesBlocklist(peerBlocklist, log)
}

// NewIPTablesIOCBlocklist returns the iptables IoC blocklist bound to the
// calling thread's network namespace. Close releases it.
func NewIPTablesIOCBlocklist(log *slog.Logger) (*IPTablesBlocklist, error) {
	return newIPTablesBlocklist(iocBlocklist, log)
}

func newIPTablesBlocklist(names blocklistNames, log *slog.Logger) (*IPTablesBlocklist, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tools, err := NewIPTables(slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	b := &IPTablesBlocklist{log: log.With("backend", BackendIPTables, "component", names.what), tools: tools, chain: names.rawChain()}
	// iptables-legacy needs the iptable_raw module; iptables-nft creates
	// the table on first use. Reading it tells both apart from a host
	// without table raw.
	if _, err := tools.readAll(context.Background(), b.chain); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(err, tools.Close()))
	}
	return b, nil
}

// Close releases the namespace handle.
func (b *IPTablesBlocklist) Close() error { return b.tools.Close() }

// Set implements Blocklist. The two families are handled concurrently,
// each in its own transaction.
func (b *IPTablesBlocklist) Set(ctx context.Context, ps []netip.Prefix) (bool, error) {
	want, err := newBlockList(ps)
	if err != nil {
		return false, err
	}
	if err := refuseOwnAddresses(b.tools.ns, want); err != nil {
		return false, err
	}
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	changed, err := b.tools.rewrite(ctx, b.chain, "setting", func(f Family, cur iptChain) []byte {
		if want.empty() {
			return cur.removeScript()
		}
		if fs := cur.observeBlock(); fs.enforced() && slices.Equal(fs.prefixes, want.family(f)) {
			return nil
		}
		return cur.applyScript(blockRules(b.chain.name, want.family(f)))
	})
	if len(changed) > 0 {
		b.log.InfoContext(ctx, "blocklist set", "families", changed, "prefixes", len(want.v4)+len(want.v6), "took", time.Since(start))
	}
	return len(changed) > 0, err
}

// Observe implements Blocklist.
func (b *IPTablesBlocklist) Observe(ctx context.Context) (BlockState, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	got, err := b.tools.readAll(ctx, b.chain)
	if err != nil {
		return BlockState{}, fmt.Errorf("observing iptables %s: %w", b.chain.what, err)
	}
	return blockStateIPT(b.chain.name, got[IPv4].observeBlock(), got[IPv6].observeBlock()), nil
}

// blockRules renders a blocklist chain's rules for one family's prefixes,
// as `iptables -S` prints them.
func blockRules(chain string, ps []netip.Prefix) []string {
	a := "-A " + chain
	var out []string
	for _, p := range ps {
		out = append(out, a+" -s "+p.String()+" -j DROP", a+" -d "+p.String()+" -j DROP")
	}
	return out
}

// rawFamilyState is one family's blocklist as read back.
type rawFamilyState struct {
	installed bool
	prefixes  []netip.Prefix // dropped both ways, merged
	faults    []string
}

func (fs rawFamilyState) enforced() bool { return fs.installed && len(fs.faults) == 0 }

// observeBlock interprets the blocklist's chain: which prefixes are dropped
// both ways, and every way the chain and its jumps differ from what Set
// writes. Rule order inside the chain does not matter (every rule drops);
// the jumps must be the first rules of PREROUTING and OUTPUT, after the
// other blocklist's at most, and a sibling evaluated first must itself
// hold only drops.
func (ic iptChain) observeBlock() rawFamilyState {
	fs := rawFamilyState{installed: ic.exists}
	if !ic.exists {
		return fs
	}
	for _, chain := range ic.hooks {
		switch j := ic.jumps[chain]; {
		case len(j) == 0:
			fs.faults = append(fs.faults, fmt.Sprintf("%s does not jump to %s", chain, ic.name))
		case len(ic.preceded[chain]) > 0:
			fs.faults = append(fs.faults, fmt.Sprintf("%s: another rule is evaluated before %s", chain, ic.name))
		case len(j) > 1:
			fs.faults = append(fs.faults, fmt.Sprintf("%s jumps to %s %d times", chain, ic.name, len(j)))
		}
		for _, sib := range ic.siblingsFirst[chain] {
			if r, ok := ic.firstNonDrop(sib); ok {
				fs.faults = append(fs.faults, fmt.Sprintf("%s: %s, evaluated before %s, holds a rule that is not a drop: %s", chain, sib, ic.name, r))
			}
		}
	}
	src, dst := map[netip.Prefix]int{}, map[netip.Prefix]int{}
	for _, r := range ic.rules {
		spec := strings.TrimPrefix(r, "-A "+ic.name+" ")
		if p, ok := parseDrop(spec, "-s"); ok {
			src[p]++
		} else if p, ok := parseDrop(spec, "-d"); ok {
			dst[p]++
		} else {
			fs.faults = append(fs.faults, "foreign rule "+spec)
		}
	}
	var both []netip.Prefix
	for p, n := range src {
		switch {
		case dst[p] == 0:
			fs.faults = append(fs.faults, fmt.Sprintf("%v dropped as source only", p))
		case n > 1 || dst[p] > 1:
			fs.faults = append(fs.faults, fmt.Sprintf("%v dropped by duplicate rules", p))
			both = append(both, p)
		default:
			both = append(both, p)
		}
	}
	for p := range dst {
		if src[p] == 0 {
			fs.faults = append(fs.faults, fmt.Sprintf("%v dropped as destination only", p))
		}
	}
	slices.Sort(fs.faults)
	fs.prefixes = mergePrefixes(both)
	return fs
}

// parseDrop recognises "-s P -j DROP" (dir "-s") or "-d P -j DROP", with
// P a network (no host bits).
func parseDrop(spec, dir string) (netip.Prefix, bool) {
	p, ok := parsePrefixJump(spec, dir, "DROP")
	return p, ok && p == p.Masked()
}

// blockStateIPT combines the two families of the blocklist in chain. A
// non-empty blocklist installs both families' chains, even one with no
// prefix, so a family whose chain is gone is a fault.
func blockStateIPT(chain string, v4, v6 rawFamilyState) BlockState {
	st := BlockState{Backend: BackendIPTables, Installed: v4.installed || v6.installed}
	if !st.Installed {
		return st
	}
	for _, f := range []struct {
		fam Family
		fs  rawFamilyState
	}{{IPv4, v4}, {IPv6, v6}} {
		if !f.fs.installed {
			st.Faults = append(st.Faults, fmt.Sprintf("%s: chain %s missing", f.fam, chain))
		}
		for _, flt := range f.fs.faults {
			st.Faults = append(st.Faults, fmt.Sprintf("%s: %s", f.fam, flt))
		}
	}
	st.Prefixes = append(slices.Clone(v4.prefixes), v6.prefixes...)
	if len(st.Prefixes) == 0 {
		st.Faults = append(st.Faults, "installed but blocks nothing")
	}
	st.Enforced = len(st.Faults) == 0
	return st
}

package netfilter

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/warden-ir/warden/agent/wire"
	"golang.org/x/sys/unix"
)

// Names in the nftables blocklists.
const (
	// NFTBlockTable is the peer blocklist's own table, family inet (IPv4
	// and IPv6). The quarantine's table (NFTTable) is never touched by it.
	NFTBlockTable = "warden_block"
	// NFTIOCTable is the IoC blocklist's own table, built like
	// NFTBlockTable; neither blocklist touches the other's.
	NFTIOCTable = "warden_ioc"
	nftBlock4   = "block4"
	nftBlock6   = "block6"
	nftBlock4ID = 1 // set IDs only need to be unique within a batch
	nftBlock6ID = 2
)

// NFTBlocklist is an nftables blocklist: one table ("inet warden_block"
// for the peer blocklist, "inet warden_ioc" for the IoC blocklist) with two
// interval sets of blocked prefixes and two base chains, prerouting and
// output at priority NFTPriority (-300, before conntrack), each dropping
// packets whose source or destination is in a set. A drop is final in
// nftables, so no accept in another table can let a blocked packet through.
// Set is one atomic netlink transaction for both families, whatever the
// number of prefixes, and a set lookup costs logarithmic time per packet.
//
// Like NFTables it keeps one netlink connection for its whole life (see
// there for why).
type NFTBlocklist struct {
	log   *slog.Logger
	table *nftables.Table
	nftConn
}

var _ Blocklist = (*NFTBlocklist)(nil)

// NewNFTBlocklist returns the nftables peer blocklist bound to the calling
// thread's network namespace. Close releases it.
func NewNFTBlocklist(log *slog.Logger) (*NFTBlocklist, error) {
	return newNFTBlocklist(peerBlocklist, log)
}

// NewNFTIOCBlocklist returns the nftables IoC blocklist bound to the
// calling thread's network namespace. Close releases it.
func NewNFTIOCBlocklist(log *slog.Logger) (*NFTBlocklist, error) {
	return newNFTBlocklist(iocBlocklist, log)
}

func newNFTBlocklist(names blocklistNames, log *slog.Logger) (*NFTBlocklist, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &NFTBlocklist{
		log:   log.With("backend", BackendNFTables, "component", names.what),
		table: &nftables.Table{Family: nftables.TableFamilyINet, Name: names.nftTable},
	}
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

// Set implements Blocklist.
func (b *NFTBlocklist) Set(ctx context.Context, ps []netip.Prefix) (bool, error) {
	want, err := newBlockList(ps)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := refuseOwnAddresses(b.ns, want); err != nil {
		return false, err
	}
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	wantTable := nftModel{table: b.table}
	if !want.empty() {
		wantTable = desiredBlockNFT(b.table, want)
	}
	changed, err := b.sync(wantTable, func(cur nftModel) nftChange {
		switch {
		case !cur.exists && want.empty():
			return nftInSync
		case !cur.exists || want.empty():
			return nftRewrite
		}
		faults, have := blockStructureNFT(cur)
		switch {
		case len(faults) > 0:
			return nftRewrite
		case slices.Equal(have, want.all()):
			return nftInSync
		case setsWellFormed(cur):
			return nftPatchSets
		}
		return nftRewrite
	}, b.log)
	if err != nil {
		return false, fmt.Errorf("setting nftables table inet %s: %w", b.table.Name, err)
	}
	if changed {
		b.log.InfoContext(ctx, "blocklist set", "prefixes", len(want.v4)+len(want.v6), "took", time.Since(start))
	}
	return changed, nil
}

// Observe implements Blocklist.
func (b *NFTBlocklist) Observe(ctx context.Context) (BlockState, error) {
	if err := ctx.Err(); err != nil {
		return BlockState{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, err := b.read(b.table)
	if err != nil {
		return BlockState{}, fmt.Errorf("observing nftables table inet %s: %w", b.table.Name, err)
	}
	return blockStateNFT(cur), nil
}

// nftBlockHooks are the blocklist's base chains: prerouting covers input
// and forward, output what the host sends.
var nftBlockHooks = []struct {
	name string
	hook *nftables.ChainHook
}{{"output", nftables.ChainHookOutput}, {"prerouting", nftables.ChainHookPrerouting}}

// desiredBlockNFT builds the table t that Set installs for a non-empty
// blocklist. Both sets and all four drops exist even when a family has no
// prefix, so the structure never depends on the contents.
func desiredBlockNFT(t *nftables.Table, bl blockList) nftModel {
	m := nftModel{table: t, exists: true, rules: map[string][]*nftables.Rule{}, elems: map[string][]setKey{}}
	s4 := &nftables.Set{Table: t, ID: nftBlock4ID, Name: nftBlock4, KeyType: nftables.TypeIPAddr, Interval: true}
	s6 := &nftables.Set{Table: t, ID: nftBlock6ID, Name: nftBlock6, KeyType: nftables.TypeIP6Addr, Interval: true}
	m.sets = []*nftables.Set{s4, s6}
	m.elems[nftBlock4] = setElements(wire.PrefixRanges(bl.v4))
	m.elems[nftBlock6] = setElements(wire.PrefixRanges(bl.v6))
	accept := nftables.ChainPolicyAccept
	for _, h := range nftBlockHooks {
		ch := &nftables.Chain{
			Table: t, Name: h.name, Type: nftables.ChainTypeFilter,
			Hooknum: h.hook, Priority: nftables.ChainPriorityRef(NFTPriority), Policy: &accept,
		}
		m.chains = append(m.chains, ch)
		for _, d := range blockDrops() {
			m.rules[h.name] = append(m.rules[h.name], &nftables.Rule{Table: t, Chain: ch, Exprs: d.exprs(s4, s6)})
		}
	}
	return m
}

// blockDrop is one of the four drops each blocklist chain holds.
type blockDrop struct {
	name  string // as nft would print it, for faults
	proto byte   // NFPROTO_IPV4 or NFPROTO_IPV6
	off   uint32 // of the address in the network header
	len   uint32
	v6    bool
}

func blockDrops() []blockDrop {
	return []blockDrop{
		{"ip saddr @" + nftBlock4 + " drop", unix.NFPROTO_IPV4, 12, 4, false},
		{"ip daddr @" + nftBlock4 + " drop", unix.NFPROTO_IPV4, 16, 4, false},
		{"ip6 saddr @" + nftBlock6 + " drop", unix.NFPROTO_IPV6, 8, 16, true},
		{"ip6 daddr @" + nftBlock6 + " drop", unix.NFPROTO_IPV6, 24, 16, true},
	}
}

// exprs: meta nfproto P; payload load; lookup @set; counter (evidence of
// what was stopped); drop.
func (d blockDrop) exprs(s4, s6 *nftables.Set) []expr.Any {
	s := s4
	if d.v6 {
		s = s6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{d.proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: d.off, Len: d.len},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// blockStateNFT interprets the table read back: the prefixes in its sets,
// and every way it differs from what Set writes.
func blockStateNFT(m nftModel) BlockState {
	st := BlockState{Backend: BackendNFTables}
	if !m.exists {
		return st
	}
	st.Installed = true
	st.Faults, st.Prefixes = blockStructureNFT(m)
	if len(st.Prefixes) == 0 {
		st.Faults = append(st.Faults, "installed but blocks nothing")
	}
	st.Enforced = len(st.Faults) == 0
	return st
}

// setsWellFormed reports whether every set of m holds well-formed
// intervals, so that a patch can delete its ranges element by element.
func setsWellFormed(m nftModel) bool {
	for _, s := range m.sets {
		if !wellFormedIntervals(m.elems[s.Name]) {
			return false
		}
	}
	return true
}

// blockStructureNFT reads an existing blocklist table: every way its
// structure (sets, chains, rules) differs from what Set writes, and the
// prefixes in its sets, in normal form. A set of the wrong type counts no
// prefix.
func blockStructureNFT(m nftModel) (faults []string, ps []netip.Prefix) {
	want := desiredBlockNFT(m.table, blockList{})
	for _, ws := range want.sets {
		i := slices.IndexFunc(m.sets, func(s *nftables.Set) bool { return s.Name == ws.Name })
		if i < 0 {
			faults = append(faults, fmt.Sprintf("set %s missing", ws.Name))
			continue
		}
		if got, w := blockSetText(m.sets[i]), blockSetText(ws); got != w {
			faults = append(faults, fmt.Sprintf("set %s is %q, want %q", ws.Name, got, w))
			continue
		}
		ps = append(ps, setPrefixes(m.elems[ws.Name])...)
	}
	for _, s := range m.sets {
		if !slices.ContainsFunc(want.sets, func(w *nftables.Set) bool { return w.Name == s.Name }) {
			faults = append(faults, fmt.Sprintf("foreign set %s", s.Name))
		}
	}

	for _, wc := range want.chains {
		i := slices.IndexFunc(m.chains, func(c *nftables.Chain) bool { return c.Name == wc.Name })
		if i < 0 {
			faults = append(faults, fmt.Sprintf("chain %s missing: nothing dropped there", wc.Name))
			continue
		}
		if got, w := chainText(m.chains[i]), chainText(wc); got != w {
			faults = append(faults, fmt.Sprintf("chain %s is %q, want %q", wc.Name, got, w))
		}
		seen := map[string]int{}
		for _, r := range m.rules[wc.Name] {
			seen[ruleText(r)]++
		}
		for j, d := range blockDrops() {
			text := ruleText(want.rules[wc.Name][j])
			switch n := seen[text]; {
			case n == 0:
				faults = append(faults, fmt.Sprintf("chain %s: %q missing", wc.Name, d.name))
			case n > 1:
				faults = append(faults, fmt.Sprintf("chain %s: %q present %d times", wc.Name, d.name, n))
			}
			delete(seen, text)
		}
		for _, r := range m.rules[wc.Name] {
			if _, foreign := seen[ruleText(r)]; foreign {
				faults = append(faults, fmt.Sprintf("chain %s: foreign rule %s", wc.Name, ruleText(r)))
			}
		}
	}
	for _, c := range m.chains {
		if !slices.ContainsFunc(want.chains, func(w *nftables.Chain) bool { return w.Name == c.Name }) {
			faults = append(faults, fmt.Sprintf("foreign chain %s", chainText(c)))
		}
	}

	// Each set holds one family in normal form, IPv4 first: together they
	// are the normal form of the whole.
	return faults, ps
}

// blockSetText is what matters of a set's definition: a timeout flag, say,
// would let blocked prefixes expire.
func blockSetText(s *nftables.Set) string {
	return fmt.Sprintf("type %s interval=%t map=%t timeout=%t constant=%t", s.KeyType.Name, s.Interval, s.IsMap, s.HasTimeout, s.Constant)
}

package netfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
	"golang.org/x/sys/unix"
)

// Names in the nftables backend.
const (
	// NFTTable is the table Warden owns: family inet, covering IPv4 and IPv6.
	NFTTable = "warden"
	// NFTPriority places Warden's base chains before conntrack (-200),
	// mangle, NAT and every filter table (0), so quarantined packets are
	// dropped before anything else spends work on them. Ordering is not
	// what makes the drop win: in nftables an accept only ends its own base
	// chain, while a drop is final for the packet.
	NFTPriority   = -300
	nftQuarantine = "quarantine"
	nftAllow4     = "allow4"
	nftAllow6     = "allow6"
	nftAllow4ID   = 1 // set IDs only need to be unique within a batch
	nftAllow6ID   = 2
)

// NFTables is the nftables backend: one table "inet warden" whose base
// chains (input, output, forward at priority -300) jump to a quarantine
// chain; allowed prefixes live in two interval sets. Apply and Remove are
// each one atomic netlink transaction (one Flush).
//
// The backend keeps one netlink connection open for its whole life. Closing
// a NETLINK_NETFILTER socket after a commit that deleted anything waits for
// the kernel's deferred destruction, an RCU grace period (10-20 ms measured
// here): paying that on every call would dwarf the commit itself.
type NFTables struct {
	log *slog.Logger
	nftConn
}

// nftConn is a lasting nftables netlink connection bound to the network
// namespace of the thread that opened it; the quarantine and the peer
// blocklist each keep one (see PROVIDER-NOTES on closing netlink sockets).
type nftConn struct {
	ns   netns.Namespace
	mu   sync.Mutex     // serialises read-compare-write and guards conn
	conn *nftables.Conn // lasting, bound to ns; nil until (re)opened
}

// open binds n to the calling thread's namespace and checks that nftables
// answers there.
func (n *nftConn) open() error {
	ns, err := netns.Current()
	if err != nil {
		return err
	}
	n.ns = ns
	n.mu.Lock()
	defer n.mu.Unlock()
	err = n.withConn(func(c *nftables.Conn) error {
		_, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		return err
	})
	if err != nil {
		_ = ns.Close()
		return fmt.Errorf("%w: listing nftables tables: %w", ErrUnavailable, err)
	}
	return nil
}

var _ Quarantine = (*NFTables)(nil)

// NewNFTables returns the nftables backend bound to the calling thread's
// network namespace. Close releases it.
func NewNFTables(log *slog.Logger) (*NFTables, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &NFTables{log: log.With("backend", BackendNFTables)}
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

// Close closes the netlink connection and releases the namespace handle.
func (b *nftConn) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if b.conn != nil {
		err = b.conn.CloseLasting()
		b.conn = nil
	}
	return errors.Join(err, b.ns.Close())
}

// withConn runs fn with the backend's connection, opening it in the bound
// namespace if needed. After any error the connection is discarded, with
// whatever messages fn may have queued on it. The caller holds b.mu.
func (b *nftConn) withConn(fn func(c *nftables.Conn) error) error {
	if b.conn == nil {
		c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(b.ns.FD()))
		if err != nil {
			return fmt.Errorf("opening nftables netlink: %w", err)
		}
		b.conn = c
	}
	if err := fn(b.conn); err != nil {
		_ = b.conn.CloseLasting()
		b.conn = nil
		return err
	}
	return nil
}

// Apply implements Quarantine.
func (b *NFTables) Apply(ctx context.Context, spec wire.QuarantineSpec) (bool, error) {
	allow, err := allowListOf(spec)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	start := time.Now()
	want := desiredNFT(allow)
	b.mu.Lock()
	defer b.mu.Unlock()
	changed, err := b.replace(want, func(cur nftModel) bool { return cur.text() == want.text() })
	if err != nil {
		return false, fmt.Errorf("applying nftables quarantine: %w", err)
	}
	if changed {
		b.log.InfoContext(ctx, "quarantine applied", "allowed", len(allow.v4)+len(allow.v6), "took", time.Since(start))
	}
	return changed, nil
}

// replace makes want.table hold exactly want (nothing at all when
// !want.exists) in one netlink transaction, unless inSync says the table
// read back already does. The caller holds n.mu.
func (n *nftConn) replace(want nftModel, inSync func(cur nftModel) bool) (changed bool, err error) {
	t := want.table
	err = n.withConn(func(c *nftables.Conn) error {
		cur, err := readNFTTable(c, t)
		if err != nil {
			return err
		}
		if inSync(cur) {
			return nil
		}
		if cur.exists {
			// Replace the table wholesale. Create-then-delete keeps the
			// delete safe should the table vanish meanwhile; the whole batch
			// is one transaction, so packets see the old table or the new,
			// never none.
			c.AddTable(t)
			c.DelTable(t)
		}
		if want.exists {
			if err := want.queue(c); err != nil {
				return err
			}
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("committing table inet %s: %w", t.Name, err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// read reads table t back from the kernel. The caller holds n.mu.
func (n *nftConn) read(t *nftables.Table) (nftModel, error) {
	var cur nftModel
	err := n.withConn(func(c *nftables.Conn) error {
		var err error
		cur, err = readNFTTable(c, t)
		return err
	})
	return cur, err
}

// Remove implements Quarantine.
func (b *NFTables) Remove(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	changed := false
	err := b.withConn(func(c *nftables.Conn) error {
		t := nftTable()
		exists, err := tableExists(c, t)
		if err != nil || !exists {
			return err
		}
		c.AddTable(t)
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("deleting table inet %s: %w", NFTTable, err)
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("removing nftables quarantine: %w", err)
	}
	if changed {
		b.log.InfoContext(ctx, "quarantine removed", "took", time.Since(start))
	}
	return changed, nil
}

// Observe implements Quarantine.
func (b *NFTables) Observe(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, err := b.read(nftTable())
	if err != nil {
		return State{}, fmt.Errorf("observing nftables quarantine: %w", err)
	}
	return cur.observe(), nil
}

func nftTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: NFTTable}
}

// nftModel is Warden's table as wanted or as read back.
type nftModel struct {
	table  *nftables.Table
	exists bool
	chains []*nftables.Chain // sorted by name
	rules  map[string][]*nftables.Rule
	sets   []*nftables.Set // sorted by name
	elems  map[string][]nftables.SetElement
}

// desiredNFT builds the table Apply installs.
func desiredNFT(allow allowList) nftModel {
	t := nftTable()
	m := nftModel{table: t, exists: true, rules: map[string][]*nftables.Rule{}, elems: map[string][]nftables.SetElement{}}
	s4 := &nftables.Set{Table: t, ID: nftAllow4ID, Name: nftAllow4, KeyType: nftables.TypeIPAddr, Interval: true}
	s6 := &nftables.Set{Table: t, ID: nftAllow6ID, Name: nftAllow6, KeyType: nftables.TypeIP6Addr, Interval: true}
	m.sets = []*nftables.Set{s4, s6}
	m.elems[nftAllow4] = setElements(toRanges(allow.v4))
	m.elems[nftAllow6] = setElements(toRanges(allow.v6))

	q := &nftables.Chain{Table: t, Name: nftQuarantine}
	m.rules[nftQuarantine] = quarantineRules(t, q, s4, s6)
	m.chains = []*nftables.Chain{q}
	accept := nftables.ChainPolicyAccept
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"forward", nftables.ChainHookForward}, {"input", nftables.ChainHookInput}, {"output", nftables.ChainHookOutput}} {
		c := &nftables.Chain{
			Table: t, Name: h.name, Type: nftables.ChainTypeFilter,
			Hooknum: h.hook, Priority: nftables.ChainPriorityRef(NFTPriority), Policy: &accept,
		}
		m.chains = append(m.chains, c)
		m.rules[h.name] = []*nftables.Rule{{Table: t, Chain: c, Exprs: []expr.Any{
			&expr.Verdict{Kind: expr.VerdictJump, Chain: nftQuarantine},
		}}}
	}
	slices.SortFunc(m.chains, func(a, b *nftables.Chain) int { return strings.Compare(a.Name, b.Name) })
	return m
}

// quarantineRules accept loopback, IPv6 neighbour discovery and the allowed
// sets in both directions, then drop (with a counter: evidence of what the
// quarantine stopped).
func quarantineRules(t *nftables.Table, q *nftables.Chain, s4, s6 *nftables.Set) []*nftables.Rule {
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	rule := func(e ...expr.Any) *nftables.Rule { return &nftables.Rule{Table: t, Chain: q, Exprs: e} }
	ifname := func(key expr.MetaKey) []expr.Any {
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, "lo")
		return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name}, accept}
	}
	nfproto := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	load := func(base expr.PayloadBase, off, n uint32) *expr.Payload {
		return &expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}
	}
	eq := func(b ...byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b} }
	nd := func(icmpType byte) []expr.Any {
		return append(nfproto(unix.NFPROTO_IPV6),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, eq(unix.IPPROTO_ICMPV6),
			load(expr.PayloadBaseTransportHeader, 0, 1), eq(icmpType),
			load(expr.PayloadBaseNetworkHeader, 7, 1), eq(255), // hop limit
			accept)
	}
	lookup := func(proto byte, off, n uint32, s *nftables.Set) []expr.Any {
		return append(nfproto(proto),
			load(expr.PayloadBaseNetworkHeader, off, n),
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
			accept)
	}
	return []*nftables.Rule{
		rule(ifname(expr.MetaKeyIIFNAME)...),
		rule(ifname(expr.MetaKeyOIFNAME)...),
		rule(nd(135)...),                               // neighbour solicitation
		rule(nd(136)...),                               // neighbour advertisement
		rule(lookup(unix.NFPROTO_IPV4, 12, 4, s4)...),  // ip saddr @allow4
		rule(lookup(unix.NFPROTO_IPV4, 16, 4, s4)...),  // ip daddr @allow4
		rule(lookup(unix.NFPROTO_IPV6, 8, 16, s6)...),  // ip6 saddr @allow6
		rule(lookup(unix.NFPROTO_IPV6, 24, 16, s6)...), // ip6 daddr @allow6
		rule(&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}),
	}
}

// setElements encodes ranges for an interval set: a start element, and an
// interval-end element just past the range (none when the range runs to the
// top address).
func setElements(rs []addrRange) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.first.AsSlice()})
		if next := r.last.Next(); next.IsValid() {
			out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// elementRanges decodes an interval set's elements back into ranges.
func elementRanges(elems []nftables.SetElement) []addrRange {
	es := slices.Clone(elems)
	slices.SortFunc(es, func(a, b nftables.SetElement) int { return bytes.Compare(a.Key, b.Key) })
	var out []addrRange
	for i, e := range es {
		if e.IntervalEnd {
			continue
		}
		first, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		last := maxAddr(first)
		if i+1 < len(es) {
			if next, ok := netip.AddrFromSlice(es[i+1].Key); ok {
				last = next.Prev()
			}
		}
		out = append(out, addrRange{first, last})
	}
	return out
}

func maxAddr(like netip.Addr) netip.Addr {
	return lastAddr(netip.PrefixFrom(like, 0))
}

// queue adds the model's objects to the connection's batch.
func (m nftModel) queue(c *nftables.Conn) error {
	c.AddTable(m.table)
	for _, s := range m.sets {
		if err := c.AddSet(s, m.elems[s.Name]); err != nil {
			return fmt.Errorf("adding set %s: %w", s.Name, err)
		}
	}
	// The jumped-to chain must exist before the jumps.
	for _, ch := range m.chains {
		if ch.Hooknum == nil {
			c.AddChain(ch)
		}
	}
	for _, ch := range m.chains {
		if ch.Hooknum != nil {
			c.AddChain(ch)
		}
	}
	for _, ch := range m.chains {
		for _, r := range m.rules[ch.Name] {
			c.AddRule(r)
		}
	}
	return nil
}

// tableExists reports whether the kernel holds table t.
func tableExists(c *nftables.Conn, t *nftables.Table) (bool, error) {
	tables, err := c.ListTablesOfFamily(t.Family)
	if err != nil {
		return false, fmt.Errorf("listing inet tables: %w", err)
	}
	return slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == t.Name }), nil
}

// readNFTTable reads one of Warden's inet tables (the quarantine's or the
// blocklist's) back from the kernel.
func readNFTTable(c *nftables.Conn, t *nftables.Table) (nftModel, error) {
	m := nftModel{table: t, rules: map[string][]*nftables.Rule{}, elems: map[string][]nftables.SetElement{}}
	exists, err := tableExists(c, t)
	if err != nil || !exists {
		return m, err
	}
	m.exists = true
	chains, err := c.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return m, fmt.Errorf("listing inet chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != t.Name {
			continue
		}
		ch.Table = t
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return m, fmt.Errorf("listing rules of chain %s: %w", ch.Name, err)
		}
		m.chains = append(m.chains, ch)
		m.rules[ch.Name] = rules
	}
	slices.SortFunc(m.chains, func(a, b *nftables.Chain) int { return strings.Compare(a.Name, b.Name) })
	sets, err := c.GetSets(t)
	if err != nil {
		return m, fmt.Errorf("listing sets: %w", err)
	}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return m, fmt.Errorf("listing elements of set %s: %w", s.Name, err)
		}
		m.sets = append(m.sets, s)
		m.elems[s.Name] = elems
	}
	slices.SortFunc(m.sets, func(a, b *nftables.Set) int { return strings.Compare(a.Name, b.Name) })
	return m, nil
}

// text renders the model canonically, so that the wanted table and the one
// read back compare equal exactly when they behave the same.
func (m nftModel) text() string {
	if !m.exists {
		return ""
	}
	var s strings.Builder
	fmt.Fprintf(&s, "table inet %s\n", m.table.Name)
	for _, set := range m.sets {
		fmt.Fprintf(&s, "set %s type %s interval=%t map=%t\n", set.Name, set.KeyType.Name, set.Interval, set.IsMap)
		for _, r := range elementRanges(m.elems[set.Name]) {
			fmt.Fprintf(&s, "  range %s-%s\n", r.first, r.last)
		}
	}
	for _, ch := range m.chains {
		s.WriteString(chainText(ch) + "\n")
		for _, r := range m.rules[ch.Name] {
			s.WriteString("  " + ruleText(r) + "\n")
		}
	}
	return s.String()
}

func chainText(ch *nftables.Chain) string {
	if ch.Hooknum == nil {
		return "chain " + ch.Name
	}
	prio, policy := "nil", "nil"
	if ch.Priority != nil {
		prio = fmt.Sprint(int32(*ch.Priority))
	}
	if ch.Policy != nil {
		policy = fmt.Sprint(uint32(*ch.Policy))
	}
	return fmt.Sprintf("chain %s type %s hook %d priority %s policy %s", ch.Name, ch.Type, *ch.Hooknum, prio, policy)
}

func ruleText(r *nftables.Rule) string {
	parts := make([]string, 0, len(r.Exprs))
	for _, e := range r.Exprs {
		parts = append(parts, exprText(e))
	}
	return strings.Join(parts, "; ")
}

// exprText renders the expressions Warden writes; anything else is shown by
// type and value so that it never compares equal to Warden's rules.
func exprText(e expr.Any) string {
	switch e := e.(type) {
	case *expr.Meta:
		return fmt.Sprintf("meta key=%d sreg=%t reg=%d", e.Key, e.SourceRegister, e.Register)
	case *expr.Cmp:
		return fmt.Sprintf("cmp op=%d reg=%d data=%x", e.Op, e.Register, e.Data)
	case *expr.Payload:
		return fmt.Sprintf("payload op=%d base=%d off=%d len=%d dreg=%d sreg=%d", e.OperationType, e.Base, e.Offset, e.Len, e.DestRegister, e.SourceRegister)
	case *expr.Lookup:
		return fmt.Sprintf("lookup set=%s sreg=%d dreg=%d/%t invert=%t", e.SetName, e.SourceRegister, e.DestRegister, e.IsDestRegSet, e.Invert)
	case *expr.Verdict:
		return fmt.Sprintf("verdict kind=%d chain=%s", e.Kind, e.Chain)
	case *expr.Counter:
		return "counter" // packet and byte counts change; the rule does not
	default:
		return fmt.Sprintf("%T%+v", e, e)
	}
}

// observe interprets the table as per-family states. One inet table covers
// both families.
func (m nftModel) observe() State {
	st := State{Backend: BackendNFTables}
	if !m.exists {
		return st
	}
	want := desiredNFT(allowList{})
	known := map[string]string{} // rule text -> role
	roles := []string{"lo-in", "lo-out", "nd-ns", "nd-na", "src4", "dst4", "src6", "dst6", "drop"}
	for i, r := range want.rules[nftQuarantine] {
		known[ruleText(r)] = roles[i]
	}
	jump := ruleText(want.rules["input"][0])
	hookNames := map[nftables.ChainHook]Hook{
		*nftables.ChainHookInput: HookInput, *nftables.ChainHookOutput: HookOutput, *nftables.ChainHookForward: HookForward,
	}

	var common FamilyState
	seen := map[string]bool{}
	first := true
	for _, ch := range m.chains {
		rules := m.rules[ch.Name]
		if ch.Name == nftQuarantine && ch.Hooknum == nil {
			common.Installed = true
			for i, r := range rules {
				role, ok := known[ruleText(r)]
				switch {
				case ok && role == "drop" && i == len(rules)-1:
					common.DropsRest = true
				case ok && role != "drop":
					seen[role] = true
				default:
					common.Unexpected = append(common.Unexpected, ch.Name+": "+ruleText(r))
				}
			}
			continue
		}
		hook, isHook := Hook(""), false
		if ch.Hooknum != nil && ch.Type == nftables.ChainTypeFilter {
			hook, isHook = hookNames[*ch.Hooknum]
		}
		for i, r := range rules {
			if isHook && ruleText(r) == jump {
				if !slices.Contains(common.Hooked, hook) {
					common.Hooked = append(common.Hooked, hook)
				}
				first = first && i == 0
				continue
			}
			common.Unexpected = append(common.Unexpected, ch.Name+": "+ruleText(r))
		}
	}
	slices.SortFunc(common.Hooked, func(a, b Hook) int { return slices.Index(allHooks(), a) - slices.Index(allHooks(), b) })
	common.First = first && len(common.Hooked) > 0
	common.Loopback = seen["lo-in"] && seen["lo-out"]

	v4, v6 := common, common
	v4.Hooked, v6.Hooked = slices.Clone(common.Hooked), slices.Clone(common.Hooked)
	v4.Unexpected, v6.Unexpected = slices.Clone(common.Unexpected), slices.Clone(common.Unexpected)
	v6.NeighborDiscovery = seen["nd-ns"] && seen["nd-na"]
	v4.Allowed = m.allowed(nftAllow4, seen["src4"], seen["dst4"], &v4)
	v6.Allowed = m.allowed(nftAllow6, seen["src6"], seen["dst6"], &v6)
	st.IPv4, st.IPv6 = v4, v6
	return st
}

// allowed returns a set's prefixes when both directions use it; a set used
// one way only is an unexpected hole.
func (m nftModel) allowed(set string, src, dst bool, fs *FamilyState) []netip.Prefix {
	var ps []netip.Prefix
	for _, r := range elementRanges(m.elems[set]) {
		ps = append(ps, r.prefixes()...)
	}
	if src != dst && len(ps) > 0 {
		fs.Unexpected = append(fs.Unexpected, fmt.Sprintf("set %s used one way only", set))
	}
	if !src || !dst {
		return nil
	}
	return mergePrefixes(ps)
}

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
	"syscall"
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

// nftElementsPerMessage bounds the elements of one netlink message. The
// list is one attribute, whose length field has 16 bits: 1024 elements of
// the largest kind (an IPv6 interval end, 36 bytes encoded) fill 36 KiB.
const nftElementsPerMessage = 1024

// Socket buffers of the nftables connection. A whole batch goes to the
// kernel in one sendmsg (a transaction cannot span two), so the send
// buffer must hold the largest batch: wire.MaxIOCPrefixes prefixes are at
// most twice as many elements of at most 36 bytes, about 18 MiB. The
// receive buffer only speeds reading a large set back. The kernel allows
// these sizes to root only (SO_*BUFFORCE), as for nft(8).
const (
	nftSendBuffer    = 32 << 20
	nftReceiveBuffer = 4 << 20
)

// nftConn is a lasting nftables netlink connection bound to the network
// namespace of the thread that opened it; the quarantine and each
// blocklist keep one (see PROVIDER-NOTES on closing netlink sockets).
type nftConn struct {
	ns   netns.Namespace
	mu   sync.Mutex     // serialises read-compare-write; guards conn and known
	conn *nftables.Conn // lasting, bound to ns; nil until (re)opened
	// known holds, by table name, the table as last read back or written,
	// and the ruleset generation at which it was exactly that (see
	// readTable).
	known map[string]knownTable
}

// knownTable is a table as the kernel held it at ruleset generation gen.
type knownTable struct {
	gen   uint32
	model nftModel
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
		c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(b.ns.FD()), nftables.WithSockOptions(sizeNetlinkSocket))
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

// sizeNetlinkSocket raises the buffers of a netfilter netlink socket (see
// nftSendBuffer) and asks the kernel to leave the request out of its error
// answers (NETLINK_CAP_ACK): otherwise every failing message of a large
// batch comes back whole, and the answers overflow the receive buffer,
// hiding the kernel's reason behind ENOBUFS. Each setting is best effort:
// without them small rule sets still work, and a batch too large for the
// send buffer fails with a clear error (see commitError). It is generic
// only so that this package need not import the netlink library's Conn
// type.
func sizeNetlinkSocket[C interface {
	SyscallConn() (syscall.RawConn, error)
}](c C) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("reaching the netlink socket: %w", err)
	}
	return raw.Control(func(fd uintptr) {
		set := func(level, name, value int) error { return unix.SetsockoptInt(int(fd), level, name, value) }
		if set(unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, nftSendBuffer) != nil {
			_ = set(unix.SOL_SOCKET, unix.SO_SNDBUF, nftSendBuffer) // capped at net.core.wmem_max
		}
		if set(unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, nftReceiveBuffer) != nil {
			_ = set(unix.SOL_SOCKET, unix.SO_RCVBUF, nftReceiveBuffer)
		}
		_ = set(unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	})
}

// commitError explains a failed commit of table t.
func commitError(t *nftables.Table, err error) error {
	if errors.Is(err, unix.EMSGSIZE) {
		return fmt.Errorf("committing table inet %s: the batch is larger than the netlink send buffer (%d bytes wanted; raising it needs CAP_NET_ADMIN): %w", t.Name, nftSendBuffer, err)
	}
	return fmt.Errorf("committing table inet %s: %w", t.Name, err)
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
// read back already does (see sync). The caller holds n.mu.
func (n *nftConn) replace(want nftModel, inSync func(cur nftModel) bool) (changed bool, err error) {
	return n.sync(want, func(cur nftModel) nftChange {
		if inSync(cur) {
			return nftInSync
		}
		return nftRewrite
	}, nil)
}

// read reads table t back from the kernel. The caller holds n.mu.
func (n *nftConn) read(t *nftables.Table) (nftModel, error) {
	var cur nftModel
	err := n.withConn(func(c *nftables.Conn) error {
		var err error
		cur, _, _, err = n.readTable(c, t)
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
	elems  map[string][]setKey
}

// desiredNFT builds the table Apply installs.
func desiredNFT(allow allowList) nftModel {
	t := nftTable()
	m := nftModel{table: t, exists: true, rules: map[string][]*nftables.Rule{}, elems: map[string][]setKey{}}
	s4 := &nftables.Set{Table: t, ID: nftAllow4ID, Name: nftAllow4, KeyType: nftables.TypeIPAddr, Interval: true}
	s6 := &nftables.Set{Table: t, ID: nftAllow6ID, Name: nftAllow6, KeyType: nftables.TypeIP6Addr, Interval: true}
	m.sets = []*nftables.Set{s4, s6}
	m.elems[nftAllow4] = setElements(wire.PrefixRanges(allow.v4))
	m.elems[nftAllow6] = setElements(wire.PrefixRanges(allow.v6))

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
func setElements(rs []wire.AddrRange) []setKey {
	out := make([]setKey, 0, 2*len(rs))
	for _, r := range rs {
		out = append(out, setKey{key: r.First.AsSlice()})
		if next := r.Last.Next(); next.IsValid() {
			out = append(out, setKey{key: next.AsSlice(), end: true})
		}
	}
	return out
}

// elementRanges decodes an interval set's elements back into ranges.
func elementRanges(elems []setKey) []wire.AddrRange {
	es := sortedElements(elems)
	out := make([]wire.AddrRange, 0, (len(es)+1)/2)
	for i, e := range es {
		if e.end {
			continue
		}
		first, ok := netip.AddrFromSlice(e.key)
		if !ok {
			continue
		}
		last := maxAddr(first)
		if i+1 < len(es) {
			if next, ok := netip.AddrFromSlice(es[i+1].key); ok {
				last = next.Prev()
			}
		}
		out = append(out, wire.AddrRange{First: first, Last: last})
	}
	return out
}

// queue adds the model's objects to the connection's batch.
func (m nftModel) queue(c *nftables.Conn) error {
	c.AddTable(m.table)
	for _, s := range m.sets {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("adding set %s: %w", s.Name, err)
		}
		// A netlink attribute holds at most 64 KiB and the element list is
		// one attribute, so a large set goes in several messages of the
		// same batch (still one transaction).
		for chunk := range slices.Chunk(m.elems[s.Name], nftElementsPerMessage) {
			if err := c.SetAddElements(s, libraryElements(chunk)); err != nil {
				return fmt.Errorf("adding elements to set %s: %w", s.Name, err)
			}
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

// readTable reads one of Warden's inet tables (the quarantine's or a
// blocklist's) back from the kernel, and the ruleset generation the
// reading is exactly true of (ok false when the ruleset changed while it
// was read, or the generation could not be read).
//
// Reading a large set back costs a second: when the ruleset generation
// has not moved since the table was last read or written whole (see sync),
// the kernel's table is still that one, and it is returned without
// reading. Every committed transaction, by hand or by another program, on
// any table, moves the generation, so drift is never hidden, only a
// re-read saved. The caller holds n.mu.
func (n *nftConn) readTable(c *nftables.Conn, t *nftables.Table) (m nftModel, gen uint32, ok bool, err error) {
	gen, gerr := n.generation()
	if k, found := n.known[t.Name]; found && gerr == nil && k.gen == gen {
		return k.model, gen, true, nil
	}
	delete(n.known, t.Name)
	if m, err = readTableNow(c, n.dumpSetElements, t); err != nil {
		return m, 0, false, err
	}
	// The reading took several dumps: it is one state only if no
	// transaction committed in between.
	after, aerr := n.generation()
	if gerr != nil || aerr != nil || after != gen {
		return m, 0, false, nil
	}
	n.remember(t, gen, m)
	return m, gen, true, nil
}

// remember records that the kernel held m as table t at generation gen.
// The caller holds n.mu.
func (n *nftConn) remember(t *nftables.Table, gen uint32, m nftModel) {
	if n.known == nil {
		n.known = map[string]knownTable{}
	}
	n.known[t.Name] = knownTable{gen: gen, model: m}
}

// readTableNow reads table t: its chains and rules, and its sets with
// their elements (through elements).
func readTableNow(c *nftables.Conn, elements func(*nftables.Table, *nftables.Set) ([]setKey, error), t *nftables.Table) (nftModel, error) {
	m := nftModel{table: t, rules: map[string][]*nftables.Rule{}, elems: map[string][]setKey{}}
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
		elems, err := elements(t, s)
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
			fmt.Fprintf(&s, "  range %s-%s\n", r.First, r.Last)
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
	ps := setPrefixes(m.elems[set])
	if src != dst && len(ps) > 0 {
		fs.Unexpected = append(fs.Unexpected, fmt.Sprintf("set %s used one way only", set))
	}
	if !src || !dst {
		return nil
	}
	return ps
}

package netfilter

// Large interval sets (the IoC blocklist holds up to wire.MaxIOCPrefixes
// prefixes, twice as many elements): reading them back fast, and changing
// a few prefixes without rewriting them all.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink/nl"
	"github.com/warden-ir/warden/agent/wire"
	"golang.org/x/sys/unix"
)

// nftChange is what a table read back needs to become the wanted one.
type nftChange int

const (
	// nftInSync: nothing to write.
	nftInSync nftChange = iota
	// nftRewrite: replace the whole table.
	nftRewrite
	// nftPatchSets: the table's structure is as wanted and only set
	// elements differ; change just those ranges.
	nftPatchSets
)

// sync makes want.table hold exactly want (nothing at all when
// !want.exists) in one netlink transaction, as judge decides from the
// table read back: not at all, by patching set elements, or by replacing
// the table wholesale. Either way packets see the old table or the new,
// never a mix. A patch costs the ranges that changed where a rewrite costs
// every element (replacing 1% of 100,000 prefixes: milliseconds instead of
// a second). A patch the kernel refuses, which changes nothing, is logged
// to log (when not nil) and followed by a rewrite. The caller holds n.mu.
func (n *nftConn) sync(want nftModel, judge func(cur nftModel) nftChange, log *slog.Logger) (changed bool, err error) {
	t := want.table
	var cur nftModel
	var gen uint32
	var known bool
	how := nftInSync
	err = n.withConn(func(c *nftables.Conn) error {
		var err error
		if cur, gen, known, err = n.readTable(c, t); err != nil {
			return err
		}
		switch how = judge(cur); how {
		case nftInSync:
			return nil
		case nftPatchSets:
			return commit(c, t, func() error { return queueSetPatch(c, cur, want) })
		default:
			return commit(c, t, func() error { return queueRewrite(c, cur, want) })
		}
	})
	if err != nil && how == nftPatchSets {
		// withConn dropped the connection with whatever the kernel still
		// had to say; rewrite on a fresh one.
		if log != nil {
			log.Warn("the kernel refused a patch of the set elements; rewriting the table", "table", t.Name, "error", err.Error())
		}
		perr := err
		err = n.withConn(func(c *nftables.Conn) error {
			return commit(c, t, func() error { return queueRewrite(c, cur, want) })
		})
		if err != nil {
			err = errors.Join(fmt.Errorf("patching set elements: %w", perr), err)
		}
	}
	if err != nil || how == nftInSync {
		return false, err
	}
	// One generation after the reading, the only transaction since is
	// ours: the kernel holds exactly want. (A refused batch does not move
	// the generation.)
	delete(n.known, t.Name)
	if after, gerr := n.generation(); known && gerr == nil && after == gen+1 {
		n.remember(t, after, want)
	}
	return true, nil
}

// commit queues a batch with queue and sends it as one transaction.
func commit(c *nftables.Conn, t *nftables.Table, queue func() error) error {
	if err := queue(); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return commitError(t, err)
	}
	return nil
}

// queueRewrite replaces cur wholesale by want. Create-then-delete keeps
// the delete safe should the table vanish meanwhile; the whole batch is one
// transaction, so packets see the old table or the new, never none.
func queueRewrite(c *nftables.Conn, cur, want nftModel) error {
	if cur.exists {
		c.AddTable(want.table)
		c.DelTable(want.table)
	}
	if want.exists {
		return want.queue(c)
	}
	return nil
}

// queueSetPatch changes the elements of want's sets from cur's to want's:
// every range of cur that want lacks is deleted (its start and end
// elements, as the kernel holds them), every range of want that cur lacks
// is added. The judge only asks for it when cur's structure is intact and
// its elements are well formed (wellFormedIntervals).
func queueSetPatch(c *nftables.Conn, cur, want nftModel) error {
	for _, s := range want.sets {
		gone, added := diffRanges(elementRanges(cur.elems[s.Name]), elementRanges(want.elems[s.Name]))
		for _, step := range []struct {
			elems []setKey
			queue func(*nftables.Set, []nftables.SetElement) error
			what  string
		}{{setElements(gone), c.SetDeleteElements, "deleting"}, {setElements(added), c.SetAddElements, "adding"}} {
			for chunk := range slices.Chunk(step.elems, nftElementsPerMessage) {
				if err := step.queue(s, libraryElements(chunk)); err != nil {
					return fmt.Errorf("%s elements of set %s: %w", step.what, s.Name, err)
				}
			}
		}
	}
	return nil
}

// diffRanges compares two sorted lists of disjoint ranges: gone are the
// ranges only cur holds, added those only want holds. A range whose end
// moved is both.
func diffRanges(cur, want []wire.AddrRange) (gone, added []wire.AddrRange) {
	i, j := 0, 0
	for i < len(cur) || j < len(want) {
		switch {
		case j == len(want):
			gone = append(gone, cur[i])
			i++
		case i == len(cur):
			added = append(added, want[j])
			j++
		case cur[i] == want[j]:
			i, j = i+1, j+1
		case compareRanges(cur[i], want[j]) < 0:
			gone = append(gone, cur[i])
			i++
		default:
			added = append(added, want[j])
			j++
		}
	}
	return gone, added
}

func compareRanges(a, b wire.AddrRange) int {
	if c := a.First.Compare(b.First); c != 0 {
		return c
	}
	return a.Last.Compare(b.Last)
}

// wellFormedIntervals reports whether an interval set's elements are what
// setElements writes: sorted by key they alternate start, end, start, end,
// with no key twice; only the last range may lack its end (it runs to the
// top of the address space). Anything else (an element added by hand next to a
// range, say) is left to a rewrite, which needs no reading of it.
func wellFormedIntervals(elems []setKey) bool {
	es := sortedElements(elems)
	for i, e := range es {
		if i > 0 && bytes.Equal(es[i-1].key, e.key) {
			return false
		}
		if e.end != (i%2 == 1) {
			return false
		}
	}
	return true
}

func sortedElements(elems []setKey) []setKey {
	es := slices.Clone(elems)
	slices.SortFunc(es, func(a, b setKey) int { return bytes.Compare(a.key, b.key) })
	return es
}

// setPrefixes is the normal form (wire.NormalizePrefixes) of what an
// interval set's elements cover. elementRanges gives sorted, disjoint
// ranges, so joining the adjacent ones is all the merging left to do.
func setPrefixes(elems []setKey) []netip.Prefix {
	rs := elementRanges(elems)
	joined := rs[:0]
	for _, r := range rs {
		if n := len(joined); n > 0 && joined[n-1].Last.Next() == r.First {
			joined[n-1].Last = r.Last
			continue
		}
		joined = append(joined, r)
	}
	return wire.RangePrefixes(joined)
}

// dumpSetElements reads the elements of set s of table t with a netlink
// dump of its own, in the connection's namespace. The kernel walks an
// interval set from its first element again for every buffer of the dump
// it fills, so the number of buffers decides the cost: google/nftables
// reads 4 KiB at a time (200,000 elements: about two seconds), this reads
// the 32 KiB the kernel fills at most (a quarter of that). A dump the
// kernel marks interrupted (the set changed under it) is read again.
func (n *nftConn) dumpSetElements(t *nftables.Table, s *nftables.Set) ([]setKey, error) {
	const attempts = 3
	var err error
	for range attempts {
		var elems []setKey
		if elems, err = n.dumpSetElementsOnce(t, s); !errors.Is(err, nl.ErrDumpInterrupted) {
			return elems, err
		}
	}
	return nil, fmt.Errorf("reading set %s: changed under %d reads in a row: %w", s.Name, attempts, err)
}

func (n *nftConn) dumpSetElementsOnce(t *nftables.Table, s *nftables.Set) ([]setKey, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETSETELEM, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(t.Family), Version: unix.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(unix.NFTA_SET_ELEM_LIST_TABLE, nl.ZeroTerminated(t.Name)))
	req.AddData(nl.NewRtAttr(unix.NFTA_SET_ELEM_LIST_SET, nl.ZeroTerminated(s.Name)))
	var keys []setKey
	var perr error
	err := n.ns.Do(func() error {
		// The socket is made here, inside the namespace, and closed
		// before Do returns.
		return req.ExecuteIter(unix.NETLINK_NETFILTER, unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM, func(msg []byte) bool {
			keys, perr = appendSetKeys(keys, msg)
			return perr == nil
		})
	})
	if err = errors.Join(err, perr); err != nil {
		return nil, fmt.Errorf("dumping elements of set %s: %w", s.Name, err)
	}
	return keys, nil
}

// setKey is what a set of addresses holds of an element: its key, and
// whether it ends an interval. Models keep elements in this form, a
// quarter of the library's SetElement (which has room for maps, timeouts
// and comments): a large IoC set is 200,000 of them.
type setKey struct {
	key []byte
	end bool
}

// libraryElements converts elements for google/nftables, a message's worth
// at a time.
func libraryElements(keys []setKey) []nftables.SetElement {
	out := make([]nftables.SetElement, len(keys))
	for i, k := range keys {
		out[i] = nftables.SetElement{Key: k.key, IntervalEnd: k.end}
	}
	return out
}

// nlaType is an attribute's type without the nested and byte-order flags.
func nlaType(a uint16) uint16 { return a &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) }

// appendSetKeys decodes one NFT_MSG_NEWSETELEM message (after its netlink
// header): an nfgenmsg, then the list of elements, each with its key and
// flags. Only what a set of addresses holds is kept.
func appendSetKeys(out []setKey, msg []byte) ([]setKey, error) {
	if len(msg) < nl.SizeofNfgenmsg {
		return out, fmt.Errorf("set element message of %d bytes is too short", len(msg))
	}
	attrs, err := nl.ParseRouteAttr(msg[nl.SizeofNfgenmsg:])
	if err != nil {
		return out, fmt.Errorf("decoding set element message: %w", err)
	}
	for _, a := range attrs {
		if nlaType(a.Attr.Type) != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		list, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return out, fmt.Errorf("decoding set element list: %w", err)
		}
		for _, item := range list {
			e, err := decodeSetElement(item.Value)
			if err != nil {
				return out, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func decodeSetElement(b []byte) (setKey, error) {
	var e setKey
	fields, err := nl.ParseRouteAttr(b)
	if err != nil {
		return e, fmt.Errorf("decoding set element: %w", err)
	}
	for _, f := range fields {
		switch nlaType(f.Attr.Type) {
		case unix.NFTA_SET_ELEM_KEY:
			data, err := nl.ParseRouteAttr(f.Value)
			if err != nil {
				return e, fmt.Errorf("decoding set element key: %w", err)
			}
			for _, d := range data {
				if nlaType(d.Attr.Type) == unix.NFTA_DATA_VALUE {
					e.key = slices.Clone(d.Value)
				}
			}
		case unix.NFTA_SET_ELEM_FLAGS:
			if len(f.Value) >= 4 {
				e.end = binary.BigEndian.Uint32(f.Value)&unix.NFT_SET_ELEM_INTERVAL_END != 0
			}
		}
	}
	if e.key == nil {
		return e, errors.New("decoding set element: no key")
	}
	return e, nil
}

// generation reads the kernel's nftables ruleset generation in the
// connection's namespace: a counter every committed transaction, of any
// table, raises by one, and nothing else changes.
func (n *nftConn) generation() (uint32, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN, 0)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: unix.NFNETLINK_V0})
	var gen uint32
	found := false
	err := n.ns.Do(func() error {
		return req.ExecuteIter(unix.NETLINK_NETFILTER, unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN, func(msg []byte) bool {
			if len(msg) < nl.SizeofNfgenmsg {
				return false
			}
			attrs, err := nl.ParseRouteAttr(msg[nl.SizeofNfgenmsg:])
			if err != nil {
				return false
			}
			for _, a := range attrs {
				if nlaType(a.Attr.Type) == unix.NFTA_GEN_ID && len(a.Value) == 4 {
					gen, found = binary.BigEndian.Uint32(a.Value), true
				}
			}
			return false
		})
	})
	if err == nil && !found {
		err = errors.New("no generation id in the answer")
	}
	if err != nil {
		return 0, fmt.Errorf("reading the nftables ruleset generation: %w", err)
	}
	return gen, nil
}

package netfilter

// The blocklists: on every healthy gateway, drop all traffic from and to a
// compromised peer's addresses (the peer blocklist; issue #4, revoke_peer
// "block its addresses"), and from and to the remote addresses threat
// intelligence names (the IoC blocklist; issue #18, block_ioc). Both are
// the same code over different names (blocklistNames): each owns its own
// table or chain, and neither they nor the quarantine, which runs on the
// compromised gateway itself, ever read or write each other's.
//
// Both backends drop at the prerouting and output hooks, at the raw priority
// (-300), before connection tracking: prerouting sees every packet that will
// be delivered locally (input) or forwarded, output every packet the host
// sends, so the two hooks cover input, output and forward in both directions,
// and an ESTABLISHED accept anywhere later (filter, mangle, another nftables
// table) never sees a blocked packet. In iptables that means table raw, not
// filter: the quarantine's jump must be the first rule of filter's
// INPUT/OUTPUT/FORWARD, and two owners of "position 1" in one chain would
// move each other down on every reconcile.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
)

// Blocklist drops every packet from or to a set of prefixes, IPv4 and IPv6,
// on input, output and forward: the peer blocklist (NewBlocklist) or the
// IoC blocklist (NewIOCBlocklist). Every method is safe for concurrent
// use; calls are serialised.
type Blocklist interface {
	// Set makes the blocked prefixes exactly ps, normalised by
	// NormalizeBlock; an empty ps removes every trace of the blocklist. Set
	// may be called any number of times with the same prefixes: when the
	// kernel already holds exactly that blocklist it writes nothing and
	// reports changed=false; otherwise (new prefixes, or drift such as a
	// rule deleted by hand) it rewrites the blocklist in one atomic change
	// per transaction (nftables: one for both families, however many
	// prefixes; iptables: one iptables-restore per family) and reports
	// changed=true. It refuses,
	// with ErrInvalidBlock, a prefix NormalizeBlock refuses and a prefix
	// holding one of the host's own addresses (the host would cut itself
	// off, management included); a refused Set changes nothing.
	Set(ctx context.Context, ps []netip.Prefix) (changed bool, err error)
	// Observe reads the blocklist back from the kernel.
	Observe(ctx context.Context) (BlockState, error)
	// Close releases the backend.
	Close() error
}

// BlockState is a blocklist as read back from the kernel.
type BlockState struct {
	// Backend is "nftables" or "iptables".
	Backend string
	// Prefixes are the prefixes Warden's blocklist holds, merged into the
	// fewest prefixes and sorted, IPv4 first (wire.NormalizePrefixes). Each is dropped in both
	// directions on every path when Enforced is true; when it is false,
	// Faults says where a prefix may get through.
	Prefixes []netip.Prefix
	// Enforced reports that the blocklist is installed and intact: every
	// prefix is dropped, from and to, at prerouting (input and forward) and
	// output, for both families, evaluated before anything that could
	// accept it, with no rule in Warden's chains that Set did not write.
	Enforced bool
	// Installed reports that some part of Warden's blocklist exists.
	Installed bool
	// Faults lists how an installed blocklist differs from what Set writes
	// (a hook missing, a rule evaluated before the drop, a prefix dropped
	// one way only, a foreign rule). It is empty when Enforced.
	Faults []string
}

// Absent reports that no trace of Warden's blocklist remains.
func (s BlockState) Absent() bool { return !s.Installed }

// Drift lists how the observed blocklist differs from what Set(want)
// installs; it is empty when they match. want is normalised first, and an
// invalid want is an error wrapping ErrInvalidBlock.
func (s BlockState) Drift(want []netip.Prefix) ([]string, error) {
	w, err := NormalizeBlock(want)
	if err != nil {
		return nil, err
	}
	if len(w) == 0 {
		if s.Installed {
			return []string{fmt.Sprintf("blocklist installed (blocking %v), want none", s.Prefixes)}, nil
		}
		return nil, nil
	}
	var out []string
	if !s.Installed {
		out = append(out, "blocklist missing")
	}
	out = append(out, s.Faults...)
	if !slices.Equal(s.Prefixes, w) {
		out = append(out, fmt.Sprintf("blocks %v, want %v", s.Prefixes, w))
	}
	return out, nil
}

// invalidBlockError is the type of ErrInvalidBlock. It also matches
// ErrInvalidSpec, so that callers which already treat a refused quarantine
// spec as terminal treat a refused blocklist the same way.
type invalidBlockError struct{}

func (invalidBlockError) Error() string { return "invalid blocklist" }

func (invalidBlockError) Is(target error) bool { return target == ErrInvalidSpec }

// ErrInvalidBlock is wrapped by Set, NormalizeBlock and Drift for prefixes
// they refuse. errors.Is(err, ErrInvalidSpec) is true for it as well. It is
// terminal: retrying cannot help.
var ErrInvalidBlock error = invalidBlockError{}

// NormalizeBlock validates prefixes for a blocklist and returns them in the
// form Observe reports (wire.NormalizePrefixes): IPv4-mapped IPv6 prefixes
// become IPv4, host bits are cleared, duplicates, overlaps and adjacent
// prefixes are merged, and the result is sorted, IPv4 first. It refuses an
// invalid prefix, a /0 (it would block everything) and a prefix
// overlapping loopback.
func NormalizeBlock(ps []netip.Prefix) ([]netip.Prefix, error) {
	b, err := newBlockList(ps)
	if err != nil {
		return nil, err
	}
	return b.all(), nil
}

// blockList is a blocklist's prefixes per family, merged and sorted.
type blockList struct{ v4, v6 []netip.Prefix }

var loopbacks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func newBlockList(ps []netip.Prefix) (blockList, error) {
	var v4, v6 []netip.Prefix
	for _, p := range ps {
		if !p.IsValid() {
			return blockList{}, fmt.Errorf("%w: prefix %v is not valid", ErrInvalidBlock, p)
		}
		p = wire.CanonicalPrefix(p)
		if p.Bits() == 0 {
			return blockList{}, fmt.Errorf("%w: prefix %v would block everything", ErrInvalidBlock, p)
		}
		for _, lo := range loopbacks {
			if p.Overlaps(lo) {
				return blockList{}, fmt.Errorf("%w: prefix %v overlaps loopback %v: the host's own services would break", ErrInvalidBlock, p, lo)
			}
		}
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return blockList{v4: mergePrefixes(v4), v6: mergePrefixes(v6)}, nil
}

func (b blockList) empty() bool { return len(b.v4) == 0 && len(b.v6) == 0 }

func (b blockList) all() []netip.Prefix { return append(slices.Clone(b.v4), b.v6...) }

func (b blockList) family(f Family) []netip.Prefix {
	if f == IPv4 {
		return b.v4
	}
	return b.v6
}

// refuseOwnAddresses fails when a blocked prefix holds an address of one of
// the namespace's interfaces: dropping it would cut the host off from
// everything, its management network and the controller included.
func refuseOwnAddresses(ns netns.Namespace, b blockList) error {
	if b.empty() {
		return nil
	}
	var addrs []netlink.Addr
	err := ns.Do(func() error {
		var err error
		addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL)
		return err
	})
	if err != nil {
		return fmt.Errorf("listing the host's addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		for _, p := range b.all() {
			if p.Contains(ip) {
				return fmt.Errorf("%w: prefix %v holds this host's own address %v: blocking it would cut the host off", ErrInvalidBlock, p, ip)
			}
		}
	}
	return nil
}

// blocklistNames names one blocklist's objects in the kernel: its
// nftables table and its chain in iptables' table raw. The peer blocklist
// and the IoC blocklist are the same code over different names, so the two
// never read or write each other's rules.
type blocklistNames struct {
	what     string // "blocklist" or "IoC blocklist", for logs and errors
	nftTable string // an inet table
	iptChain string // a chain in table raw, IPv4 and IPv6
}

var (
	// peerBlocklist keeps revoked peers out (revoke_peer).
	peerBlocklist = blocklistNames{what: "blocklist", nftTable: NFTBlockTable, iptChain: BlockChain}
	// iocBlocklist keeps out the remote addresses of threat intelligence
	// (block_ioc).
	iocBlocklist = blocklistNames{what: "IoC blocklist", nftTable: NFTIOCTable, iptChain: IOCChain}
)

// NewBlocklist returns the peer blocklist (table "inet warden_block",
// chain WARDEN-BLOCK) on the backend named by backend ("nftables" or
// "iptables"), bound to the calling thread's network namespace. An empty
// backend picks nftables when the kernel supports it and falls back to
// iptables; both drop before any rule of the other, so the choice does not
// depend on the quarantine's backend. Errors wrap ErrUnavailable when the
// backend cannot run here.
func NewBlocklist(backend string, log *slog.Logger) (Blocklist, error) {
	return newBlocklist(peerBlocklist, backend, log)
}

// NewIOCBlocklist returns the IoC blocklist (table "inet warden_ioc",
// chain WARDEN-IOC), chosen and bound as NewBlocklist does. It holds sets
// of up to wire.MaxIOCPrefixes prefixes; on nftables the whole set is one
// netlink transaction, and a packet is matched in logarithmic time, while
// on iptables every prefix costs two rules evaluated one after another:
// prefer nftables for large sets.
func NewIOCBlocklist(backend string, log *slog.Logger) (Blocklist, error) {
	return newBlocklist(iocBlocklist, backend, log)
}

func newBlocklist(names blocklistNames, backend string, log *slog.Logger) (Blocklist, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Each case returns a nil interface on error, never a typed nil pointer.
	switch backend {
	case BackendNFTables:
		b, err := newNFTBlocklist(names, log)
		if err != nil {
			return nil, err
		}
		return b, nil
	case BackendIPTables:
		b, err := newIPTablesBlocklist(names, log)
		if err != nil {
			return nil, err
		}
		return b, nil
	case "":
		nft, nerr := newNFTBlocklist(names, log)
		if nerr == nil {
			return nft, nil
		}
		if !errors.Is(nerr, ErrUnavailable) {
			return nil, nerr
		}
		ipt, ierr := newIPTablesBlocklist(names, log)
		if ierr != nil {
			return nil, errors.Join(nerr, ierr)
		}
		log.Info("nftables unavailable, "+names.what+" falls back to iptables", "reason", nerr)
		return ipt, nil
	default:
		return nil, fmt.Errorf("%s backend %q: want %s, %s or empty for automatic", names.what, backend, BackendNFTables, BackendIPTables)
	}
}

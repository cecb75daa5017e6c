package netfilter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/warden-ir/warden/agent/wire"
	"golang.org/x/sys/unix"
)

// KillFlows deletes, in the calling thread's network namespace, every
// conntrack entry (IPv4 and IPv6) whose addresses all lie outside keep:
// original and reply source and destination, so NATed flows to a kept
// address survive. Loopback flows are kept too; the quarantine accepts them
// anyway. It returns how many entries were deleted.
//
// The kernel dumps the table and KillFlows deletes entry by entry, so it is
// not atomic: call it only after Apply, when the drop rules already stop
// new packets, and established sessions then die for good. Killing is
// idempotent; a second call finds nothing left to kill (new flows outside
// keep cannot be created under the quarantine).
func KillFlows(ctx context.Context, keep []netip.Prefix) (int, error) {
	return KillFlowsRecording(ctx, keep, nil)
}

// KillFlowsRecording is KillFlows that hands each flow it is about to
// delete to record first, with the kernel's byte and packet counts and
// start time (where accounting and timestamps are on): the connection
// records an investigation reads after the quarantine ended them. record
// may be called from two goroutines at once (one per family); nil records
// nothing.
func KillFlowsRecording(ctx context.Context, keep []netip.Prefix, record func(wire.Flow)) (int, error) {
	f := outsideFilter{keep: make([]netip.Prefix, 0, len(keep)), record: record}
	for _, p := range keep {
		if p.IsValid() {
			f.keep = append(f.keep, wire.CanonicalPrefix(p))
		}
	}
	// One handle per family reuses its socket for the dump and every
	// delete (the package-level functions would open and close a socket
	// per flow). Both handles are opened here, on the calling thread, so
	// their sockets live in its network namespace; the two dumps then run
	// side by side, since each walks the whole conntrack hash table
	// (~13 ms on a large host even when empty).
	fams := []struct {
		name   Family
		family netlink.InetFamily
	}{{IPv4, unix.AF_INET}, {IPv6, unix.AF_INET6}}
	handles := make([]*netlink.Handle, len(fams))
	for i := range fams {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			for _, o := range handles[:i] {
				o.Close()
			}
			return 0, fmt.Errorf("opening conntrack netlink: %w", err)
		}
		handles[i] = h
	}
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	counts := make([]uint, len(fams))
	errs := make([]error, len(fams))
	var wg sync.WaitGroup
	for i, fam := range fams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = handles[i].ConntrackDeleteFilters(netlink.ConntrackTable, fam.family, f)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("killing %s conntrack flows: %w", fam.name, errs[i])
			}
		}()
	}
	wg.Wait()
	return int(counts[0] + counts[1]), errors.Join(errs...)
}

// outsideFilter matches flows with no address in keep.
type outsideFilter struct {
	keep   []netip.Prefix
	record func(wire.Flow)
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f outsideFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	for _, ip := range []net.IP{flow.Forward.SrcIP, flow.Forward.DstIP, flow.Reverse.SrcIP, flow.Reverse.DstIP} {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a.IsLoopback() {
			return false
		}
		for _, p := range f.keep {
			if p.Contains(a) {
				return false
			}
		}
	}
	if f.record != nil {
		f.record(FlowOf(flow, time.Now().UTC()))
	}
	return true
}

// FlowOf is a conntrack entry as a connection record seen at seen.
func FlowOf(c *netlink.ConntrackFlow, seen time.Time) wire.Flow {
	addr := func(ip net.IP) string {
		if a, ok := netip.AddrFromSlice(ip); ok {
			return a.Unmap().String()
		}
		return ""
	}
	f := wire.Flow{Proto: ProtocolName(c.Forward.Protocol), Src: addr(c.Forward.SrcIP), Dst: addr(c.Forward.DstIP),
		SrcPort: c.Forward.SrcPort, DstPort: c.Forward.DstPort,
		OrigBytes: c.Forward.Bytes, ReplyBytes: c.Reverse.Bytes, OrigPackets: c.Forward.Packets, ReplyPackets: c.Reverse.Packets,
		SeenAt: seen}
	// A tracked flow has carried at least one packet: no packet counted
	// means the kernel does not count.
	f.Accounted = c.Forward.Packets+c.Reverse.Packets > 0
	if c.TimeStart > 0 {
		f.Start = time.Unix(0, int64(c.TimeStart)).UTC()
	}
	if tcp, ok := c.ProtoInfo.(*netlink.ProtoInfoTCP); ok && int(tcp.State) < len(tcpStates) {
		f.State = tcpStates[tcp.State]
	}
	return f
}

// tcpStates are conntrack's TCP states by number.
var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// TCPStateName names conntrack's TCP state s ("" when it is unknown).
func TCPStateName(s uint8) string {
	if int(s) < len(tcpStates) {
		return tcpStates[s]
	}
	return ""
}

// ProtocolName names an IP protocol number as connection records do
// ("tcp", "udp", "icmpv6", … or the number).
func ProtocolName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "icmpv6"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return fmt.Sprint(p)
}

// DumpFlows reads the calling thread's conntrack table (IPv4 and IPv6) as
// connection records. It changes nothing.
func DumpFlows(ctx context.Context) ([]wire.Flow, error) {
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening conntrack netlink: %w", err)
	}
	defer h.Close()
	now := time.Now().UTC()
	var out []wire.Flow
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		list, err := h.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return out, fmt.Errorf("dumping conntrack: %w", err)
		}
		for _, c := range list {
			out = append(out, FlowOf(c, now))
		}
	}
	return out, nil
}

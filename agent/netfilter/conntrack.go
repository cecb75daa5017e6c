package netfilter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

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
	f := outsideFilter{keep: make([]netip.Prefix, 0, len(keep))}
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
type outsideFilter struct{ keep []netip.Prefix }

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
	return true
}

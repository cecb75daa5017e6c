package capture

import (
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warden-ir/warden/agent/netfilter"
)

// flowRecord is one entry of the connection tracking table: the flows the
// gateway forwarded or made, which no socket on the gateway shows (a LAN
// host's connection to a C2 server through it, say).
type flowRecord struct {
	Family   string `json:"family"`
	Protocol string `json:"protocol"`
	// Original is the direction the flow started in; Reply the other one
	// (after NAT, where they differ).
	Original flowTuple `json:"original"`
	Reply    flowTuple `json:"reply"`
	// State is TCP's (ESTABLISHED, SYN_SENT, …); empty for other
	// protocols.
	State string `json:"state,omitempty"`
	// Started is when the kernel started tracking it (only with
	// nf_conntrack_timestamp on).
	Started *time.Time `json:"started,omitempty"`
	// TimeoutSeconds is how long the entry lives without traffic.
	TimeoutSeconds uint32 `json:"timeout_seconds"`
	Mark           uint32 `json:"mark,omitempty"`
	Zone           uint16 `json:"zone,omitempty"`
}

type flowTuple struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
	// Packets and Bytes are counted only with nf_conntrack_acct on.
	Packets uint64 `json:"packets,omitempty"`
	Bytes   uint64 `json:"bytes,omitempty"`
}

type conntrackReport struct {
	Flows      []flowRecord `json:"flows"`
	Incomplete []string     `json:"incomplete,omitempty"`
}

// collectConntrack dumps the connection tracking table, IPv4 and IPv6.
// Under a quarantine that keeps its flows (isolate with keep_flows), this
// is the record of what the attacker had open when the drop rules went in.
func collectConntrack() (conntrackReport, error) {
	var rep conntrackReport
	err := dumpPerFamily("conntrack", func(family int) ([]*netlink.ConntrackFlow, error) {
		return netlink.ConntrackTableList(netlink.ConntrackTable, netlink.InetFamily(family))
	}, &rep.Incomplete, func(fam captureFamily, f *netlink.ConntrackFlow) {
		rec := flowRecord{Family: fam.name, Protocol: netfilter.ProtocolName(f.Forward.Protocol),
			Original: tupleOf(f.Forward), Reply: tupleOf(f.Reverse), TimeoutSeconds: f.TimeOut, Mark: f.Mark, Zone: f.Zone}
		if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok {
			rec.State = netfilter.TCPStateName(tcp.State)
		}
		if f.TimeStart != 0 {
			t := time.Unix(0, int64(f.TimeStart)).UTC()
			rec.Started = &t
		}
		rep.Flows = append(rep.Flows, rec)
	})
	if err != nil {
		return rep, err
	}
	if rep.Flows == nil {
		rep.Flows = []flowRecord{}
	}
	return rep, nil
}

func tupleOf(t netlink.IPTuple) flowTuple {
	addr := func(ip []byte, port uint16) string {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return ""
		}
		return netip.AddrPortFrom(a.Unmap(), port).String()
	}
	return flowTuple{Src: addr(t.SrcIP, t.SrcPort), Dst: addr(t.DstIP, t.DstPort), Packets: t.Packets, Bytes: t.Bytes}
}

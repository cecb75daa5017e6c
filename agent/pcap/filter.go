package pcap

import (
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/warden-ir/warden/agent/wire"
)

// Match evaluates a parsed capture filter on one packet; the zero filter
// matches everything.
func Match(f wire.CaptureFilter, lt layers.LinkType, data []byte) bool {
	if f.Op == "" && f.Kind == "" {
		return true
	}
	return decode(lt, data).match(f)
}

// facts are what a filter looks at.
type facts struct {
	src, dst         netip.Addr
	sport, dport     uint16
	v4, v6           bool
	tcp, udp         bool
	icmp, icmp6, any bool
}

func decode(lt layers.LinkType, data []byte) facts {
	var first gopacket.Decoder = layers.LayerTypeEthernet
	if lt == layers.LinkTypeRaw || lt == layers.LinkTypeIPv4 || lt == layers.LinkTypeIPv6 {
		first = layers.LayerTypeIPv4
		if len(data) > 0 && data[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
	}
	p := gopacket.NewPacket(data, first, gopacket.Lazy)
	var f facts
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		f.v4 = true
		f.src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		f.dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
	}
	if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		f.v6 = true
		f.src, _ = netip.AddrFromSlice(ip.SrcIP)
		f.dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	if t, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		f.tcp, f.sport, f.dport = true, uint16(t.SrcPort), uint16(t.DstPort)
	}
	if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		f.udp, f.sport, f.dport = true, uint16(u.SrcPort), uint16(u.DstPort)
	}
	f.icmp = p.Layer(layers.LayerTypeICMPv4) != nil
	f.icmp6 = p.Layer(layers.LayerTypeICMPv6) != nil
	return f
}

func (f facts) match(c wire.CaptureFilter) bool {
	switch c.Op {
	case "and":
		for _, ch := range c.Children {
			if !f.match(ch) {
				return false
			}
		}
		return true
	case "or":
		for _, ch := range c.Children {
			if f.match(ch) {
				return true
			}
		}
		return false
	case "not":
		return !f.match(c.Children[0])
	}
	switch c.Kind {
	case "net":
		src := f.src.IsValid() && c.Net.Contains(f.src.Unmap())
		dst := f.dst.IsValid() && c.Net.Contains(f.dst.Unmap())
		return pick(c.Dir, src, dst)
	case "port":
		if !f.tcp && !f.udp {
			return false
		}
		return pick(c.Dir, f.sport == c.Port, f.dport == c.Port)
	case "proto":
		return map[string]bool{"tcp": f.tcp, "udp": f.udp, "icmp": f.icmp, "icmp6": f.icmp6, "ip": f.v4, "ip6": f.v6}[c.Proto]
	}
	return false
}

func pick(dir string, src, dst bool) bool {
	switch dir {
	case "src":
		return src
	case "dst":
		return dst
	}
	return src || dst
}

package pcap

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// afPacket reads every interface of the calling thread's network
// namespace through one AF_PACKET socket bound to no interface: incoming
// and outgoing packets alike, each with the index of its interface.
type afPacket struct {
	fd  int
	buf []byte
	ifs []Interface
}

var _ Source = (*afPacket)(nil)

// OpenAFPacket opens the live source. The socket lives in the calling
// thread's network namespace (call it there).
func OpenAFPacket() (Source, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("opening an AF_PACKET socket: %w", err)
	}
	// A read waits a quarter second at most, so a stop is seen quickly.
	tv := unix.NsecToTimeval((250 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting the capture socket's timeout: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	// The interfaces are listed here, in the socket's namespace.
	ifs, err := listInterfaces()
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	return &afPacket{fd: fd, buf: make([]byte, 1<<16), ifs: ifs}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (a *afPacket) Interfaces() ([]Interface, error) { return a.ifs, nil }

func listInterfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []Interface
	for _, i := range ifs {
		lt := layers.LinkTypeEthernet
		if len(i.HardwareAddr) == 0 && i.Flags&net.FlagLoopback == 0 {
			lt = layers.LinkTypeRaw // tun devices (WireGuard, kernel-libipsec): IP without a link header
		}
		out = append(out, Interface{Index: i.Index, Name: i.Name, LinkType: lt})
	}
	return out, nil
}

func (a *afPacket) Read() (Packet, bool, error) {
	n, from, err := unix.Recvfrom(a.fd, a.buf, 0)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return Packet{}, false, nil
	}
	if err != nil {
		return Packet{}, false, fmt.Errorf("reading packets: %w", err)
	}
	ll, ok := from.(*unix.SockaddrLinklayer)
	if !ok {
		return Packet{}, false, nil
	}
	data := make([]byte, n)
	copy(data, a.buf[:n])
	return Packet{At: time.Now(), Interface: ll.Ifindex, Data: data, Length: n}, true, nil
}

func (a *afPacket) Close() error { return unix.Close(a.fd) }

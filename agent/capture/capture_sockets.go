package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// socketRecord is one TCP or UDP socket, as netstat -anp would show it.
type socketRecord struct {
	Protocol  string        `json:"protocol"` // tcp, tcp6, udp, udp6
	State     string        `json:"state"`
	Listening bool          `json:"listening"`
	Local     string        `json:"local"`
	Remote    string        `json:"remote"`
	UID       uint32        `json:"uid"`
	Inode     uint64        `json:"inode"`
	RxQueue   uint32        `json:"rx_queue"`
	TxQueue   uint32        `json:"tx_queue"`
	Processes []socketOwner `json:"processes,omitempty"`
}

// socketOwner is a process holding a socket open.
type socketOwner struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

type connectionsReport struct {
	Sockets []socketRecord `json:"sockets"`
	// Incomplete lists anything that may be missing: an interrupted dump,
	// processes whose descriptors could not be read.
	Incomplete []string `json:"incomplete,omitempty"`
}

// tcpStateNames are the kernel's TCP states (include/net/tcp_states.h). UDP
// reuses ESTABLISHED for connected sockets and CLOSE for unconnected ones,
// which ss calls UNCONN.
func tcpStateName(proto string, st uint8) string {
	if strings.HasPrefix(proto, "udp") {
		switch st {
		case netlink.TCP_ESTABLISHED:
			return "ESTABLISHED"
		case netlink.TCP_CLOSE:
			return "UNCONN"
		}
	}
	switch st {
	case netlink.TCP_ESTABLISHED:
		return "ESTABLISHED"
	case netlink.TCP_SYN_SENT:
		return "SYN_SENT"
	case netlink.TCP_SYN_RECV:
		return "SYN_RECV"
	case netlink.TCP_FIN_WAIT1:
		return "FIN_WAIT1"
	case netlink.TCP_FIN_WAIT2:
		return "FIN_WAIT2"
	case netlink.TCP_TIME_WAIT:
		return "TIME_WAIT"
	case netlink.TCP_CLOSE:
		return "CLOSE"
	case netlink.TCP_CLOSE_WAIT:
		return "CLOSE_WAIT"
	case netlink.TCP_LAST_ACK:
		return "LAST_ACK"
	case netlink.TCP_LISTEN:
		return "LISTEN"
	case netlink.TCP_CLOSING:
		return "CLOSING"
	case netlink.TCP_NEW_SYN_REC:
		return "NEW_SYN_RECV"
	}
	return "UNKNOWN_" + strconv.Itoa(int(st))
}

func socketListening(proto string, st uint8) bool {
	if strings.HasPrefix(proto, "udp") {
		return st == netlink.TCP_CLOSE
	}
	return st == netlink.TCP_LISTEN
}

// collectConnections lists TCP and UDP sockets (IPv4 and IPv6) of the
// calling thread's network namespace, each with the processes holding it.
// The live system is asked over sock_diag; when that fails, or when Root is
// a fixture tree, /proc/thread-self/net/{tcp,tcp6,udp,udp6} are parsed.
func collectConnections(ctx context.Context, opt Options) ([]byte, string, error) {
	var (
		rep    connectionsReport
		source string
	)
	if opt.live() {
		socks, incomplete, err := socketsFromSockDiag()
		if err == nil {
			rep.Sockets, rep.Incomplete, source = socks, incomplete, "netlink sock_diag, /proc/*/fd"
		} else {
			rep.Incomplete = append(rep.Incomplete, "sock_diag failed, fell back to /proc: "+err.Error())
		}
	}
	if source == "" {
		socks, err := socketsFromProcNet(opt.path("/proc/thread-self/net"))
		if err != nil {
			return nil, "", err
		}
		rep.Sockets, source = socks, opt.path("/proc/thread-self/net")+"/{tcp,tcp6,udp,udp6}, /proc/*/fd"
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}

	owners, incomplete, err := socketOwners(ctx, opt.path("/proc"))
	if err != nil {
		rep.Incomplete = append(rep.Incomplete, "mapping sockets to processes: "+err.Error())
	}
	rep.Incomplete = append(rep.Incomplete, incomplete...)
	for i := range rep.Sockets {
		rep.Sockets[i].Processes = owners[rep.Sockets[i].Inode]
	}
	slices.SortFunc(rep.Sockets, func(a, b socketRecord) int {
		return strings.Compare(a.Protocol+" "+a.Local+" "+a.Remote, b.Protocol+" "+b.Local+" "+b.Remote)
	})
	b, err := marshalEvidence(rep)
	return b, source, err
}

// socketsFromSockDiag dumps TCP and UDP sockets of both families. A dump the
// kernel reports as interrupted (the table changed under it) is retried, and
// kept with a note if it stays interrupted.
func socketsFromSockDiag() ([]socketRecord, []string, error) {
	var (
		out        []socketRecord
		incomplete []string
	)
	for _, q := range []struct {
		proto  string
		family uint8
		dump   func(uint8) ([]*netlink.Socket, error)
	}{
		{"tcp", unix.AF_INET, netlink.SocketDiagTCP},
		{"tcp6", unix.AF_INET6, netlink.SocketDiagTCP},
		{"udp", unix.AF_INET, netlink.SocketDiagUDP},
		{"udp6", unix.AF_INET6, netlink.SocketDiagUDP},
	} {
		var (
			socks []*netlink.Socket
			err   error
		)
		for range 3 {
			if socks, err = q.dump(q.family); !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		switch {
		case errors.Is(err, netlink.ErrDumpInterrupted):
			incomplete = append(incomplete, q.proto+" dump interrupted three times; kept the last")
		case err != nil:
			return nil, nil, fmt.Errorf("dumping %s sockets: %w", q.proto, err)
		}
		for _, s := range socks {
			out = append(out, socketRecord{
				Protocol:  q.proto,
				State:     tcpStateName(q.proto, s.State),
				Listening: socketListening(q.proto, s.State),
				Local:     sockDiagEndpoint(q.family, s.ID.Source, s.ID.SourcePort),
				Remote:    sockDiagEndpoint(q.family, s.ID.Destination, s.ID.DestinationPort),
				UID:       s.UID,
				Inode:     uint64(s.INode),
				RxQueue:   s.RQueue,
				TxQueue:   s.WQueue,
			})
		}
	}
	return out, incomplete, nil
}

// sockDiagEndpoint formats an address the way /proc parsing does: netlink
// hands IPv4 addresses back in 16-byte form, which would otherwise print as
// IPv4-mapped IPv6.
func sockDiagEndpoint(family uint8, ip net.IP, port uint16) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		a = netip.IPv4Unspecified()
	}
	if family == unix.AF_INET {
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, port).String()
}

// socketsFromProcNet parses the tcp, tcp6, udp and udp6 tables in dir. A
// missing table (IPv6 disabled) is skipped; at least one must exist.
func socketsFromProcNet(dir string) ([]socketRecord, error) {
	var (
		out   []socketRecord
		found int
	)
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open(filepath.Join(dir, proto))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("opening %s socket table: %w", proto, err)
		}
		socks, err := parseProcNetSockets(f, proto)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, proto), err)
		}
		found++
		out = append(out, socks...)
	}
	if found == 0 {
		return nil, fmt.Errorf("reading socket tables: none in %s", dir)
	}
	return out, nil
}

// parseProcNetSockets parses one /proc/net/{tcp,tcp6,udp,udp6} table:
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
func parseProcNetSockets(r io.Reader, proto string) ([]socketRecord, error) {
	var out []socketRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	header := true
	for sc.Scan() {
		if header {
			header = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("short socket line %q", sc.Text())
		}
		local, err := parseProcNetEndpoint(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseProcNetEndpoint(f[2])
		if err != nil {
			return nil, err
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("parsing socket state %q: %w", f[3], err)
		}
		txq, rxq, _ := strings.Cut(f[4], ":")
		tx, _ := strconv.ParseUint(txq, 16, 32)
		rx, _ := strconv.ParseUint(rxq, 16, 32)
		uid, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing socket uid %q: %w", f[7], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing socket inode %q: %w", f[9], err)
		}
		out = append(out, socketRecord{
			Protocol:  proto,
			State:     tcpStateName(proto, uint8(st)),
			Listening: socketListening(proto, uint8(st)),
			Local:     local.String(),
			Remote:    remote.String(),
			UID:       uint32(uid),
			Inode:     inode,
			RxQueue:   uint32(rx),
			TxQueue:   uint32(tx),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading socket table: %w", err)
	}
	return out, nil
}

// parseProcNetEndpoint decodes "0100007F:1F90" or a 32-hex-digit IPv6
// address. The kernel prints each 32-bit word of the network-order address
// as a host-order integer, so each word is written back in native order.
func parseProcNetEndpoint(s string) (netip.AddrPort, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok || (len(addrHex) != 8 && len(addrHex) != 32) {
		return netip.AddrPort{}, fmt.Errorf("parsing socket address %q: unexpected form", s)
	}
	raw := make([]byte, len(addrHex)/2)
	for i := 0; i < len(addrHex); i += 8 {
		w, err := strconv.ParseUint(addrHex[i:i+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("parsing socket address %q: %w", s, err)
		}
		binary.NativeEndian.PutUint32(raw[i/2:], uint32(w))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("parsing socket port %q: %w", s, err)
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// socketOwners maps socket inodes to the processes holding them, from the
// "socket:[inode]" links in /proc/<pid>/fd. Processes that exit mid-walk are
// skipped silently; others that cannot be read are listed as incomplete.
func socketOwners(ctx context.Context, procDir string) (map[uint64][]socketOwner, []string, error) {
	pids, err := listProcessIDs(procDir)
	if err != nil {
		return nil, nil, err
	}
	owners := make(map[uint64][]socketOwner)
	var incomplete []string
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return owners, incomplete, err
		}
		fdDir := filepath.Join(procDir, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				incomplete = append(incomplete, fmt.Sprintf("pid %d: reading descriptors: %v", pid, err))
			}
			continue
		}
		var comm string
		seen := make(map[uint64]bool)
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			ino, ok := socketLinkInode(target)
			if !ok || seen[ino] {
				continue
			}
			seen[ino] = true
			if comm == "" {
				comm = readTrimmedFile(filepath.Join(procDir, strconv.Itoa(pid), "comm"))
			}
			owners[ino] = append(owners[ino], socketOwner{PID: pid, Comm: comm})
		}
	}
	return owners, incomplete, nil
}

func socketLinkInode(target string) (uint64, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// listProcessIDs returns the numeric entries of a /proc directory, ascending.
func listProcessIDs(procDir string) ([]int, error) {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", procDir, err)
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

func readTrimmedFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// TCPConnect opens a TCP connection from namespace ns to addr and closes it.
// It returns nil only when the three-way handshake completed within timeout.
func TCPConnect(ctx context.Context, ns string, addr netip.AddrPort, timeout time.Duration) error {
	conn, err := dialTCP(ctx, ns, addr.String(), timeout)
	if err != nil {
		return fmt.Errorf("connecting over TCP from %q to %s: %w", ns, addr, err)
	}
	return conn.Close()
}

// UDPEcho sends one datagram from namespace ns to an echo server at addr and
// returns nil only when the same bytes came back within timeout. The socket
// is unconnected, so a reply counts whichever local address the server's
// kernel picked as its source (a multi-homed gateway answers from the
// address on its route back, not the one that was asked).
func UDPEcho(ctx context.Context, ns string, addr netip.AddrPort, timeout time.Duration) error {
	conn, err := listenUDP(ns)
	if err != nil {
		return fmt.Errorf("opening UDP socket in %q: %w", ns, err)
	}
	defer conn.Close()
	if err := exchangePacket(ctx, conn, addr, timeout); err != nil {
		return fmt.Errorf("echoing over UDP from %q to %s: %w", ns, addr, err)
	}
	return nil
}

// listenUDP opens an unconnected UDP socket, on any local address, in
// namespace ns.
func listenUDP(ns string) (*net.UDPConn, error) {
	return doValue(ns, func() (*net.UDPConn, error) { return net.ListenUDP("udp", nil) })
}

// dialTCP connects over TCP from namespace ns to addr; a timeout of 0 is
// none.
func dialTCP(ctx context.Context, ns, addr string, timeout time.Duration) (net.Conn, error) {
	return doValue(ns, func() (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		return d.DialContext(ctx, "tcp", addr)
	})
}

func exchangePacket(ctx context.Context, conn *net.UDPConn, to netip.AddrPort, timeout time.Duration) error {
	stop, err := bindDeadline(ctx, conn, timeout)
	if err != nil {
		return err
	}
	defer stop()
	msg := token()
	if _, err := conn.WriteToUDPAddrPort(msg, to); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	buf := make([]byte, 2*len(msg))
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return fmt.Errorf("reading the echo: %w", err)
		}
		if bytes.Equal(buf[:n], msg) {
			return nil
		}
	}
}

// bindDeadline ends conn's reads and writes after timeout, or as soon as
// ctx ends; stop releases ctx once the exchange is over.
func bindDeadline(ctx context.Context, conn interface{ SetDeadline(time.Time) error }, timeout time.Duration) (stop func() bool, err error) {
	if err := conn.SetDeadline(deadline(ctx, timeout)); err != nil {
		return nil, fmt.Errorf("setting deadline: %w", err)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) }), nil
}

func deadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return d
}

func token() []byte {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return []byte(hex.EncodeToString(b) + "\n")
}

// exchange writes a random token on a stream and reads it back.
func exchange(ctx context.Context, conn net.Conn, timeout time.Duration) error {
	stop, err := bindDeadline(ctx, conn, timeout)
	if err != nil {
		return err
	}
	defer stop()
	msg := token()
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo returned %q, want %q", got, msg)
	}
	return nil
}

// Ping sends one ICMP echo request (ICMPv6 for an IPv6 address) from
// namespace ns to addr and returns nil when the matching echo reply came
// within timeout or before ctx ended. It runs no ping binary: the request
// goes out on a raw ICMP socket created inside ns (binding it there), which
// needs CAP_NET_RAW; unprivileged datagram ICMP is not used because
// net.ipv4.ping_group_range disables it by default. Every raw ICMP socket of
// the namespace sees every echo reply, so the reply must match this
// request's source address, identifier, sequence number and random payload:
// concurrent pings from one namespace do not answer each other.
func Ping(ctx context.Context, ns string, addr netip.Addr, timeout time.Duration) error {
	addr = addr.Unmap()
	conn, err := doValue(ns, func() (*icmp.PacketConn, error) { return listenICMP(addr.Is6()) })
	if err != nil {
		return fmt.Errorf("opening a raw ICMP socket in %q: %w", ns, err)
	}
	defer conn.Close()
	if err := echoICMP(ctx, conn, addr, timeout); err != nil {
		return fmt.Errorf("pinging %s from %q: %w", addr, ns, err)
	}
	return nil
}

// listenICMP opens a raw ICMP (or ICMPv6) socket in the calling thread's
// namespace that the kernel hands echo replies only: a raw socket also
// receives requests, errors and, for ICMPv6, all neighbour discovery.
func listenICMP(v6 bool) (*icmp.PacketConn, error) {
	if v6 {
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", "")
		if err != nil {
			return nil, err
		}
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		if err := c.IPv6PacketConn().SetICMPFilter(&f); err != nil {
			return nil, errors.Join(fmt.Errorf("filtering ICMPv6 to echo replies: %w", err), c.Close())
		}
		return c, nil
	}
	c, err := icmp.ListenPacket("ip4:icmp", "")
	if err != nil {
		return nil, err
	}
	var f ipv4.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv4.ICMPTypeEchoReply)
	if err := c.IPv4PacketConn().SetICMPFilter(&f); err != nil {
		return nil, errors.Join(fmt.Errorf("filtering ICMP to echo replies: %w", err), c.Close())
	}
	return c, nil
}

// echoICMP sends one echo request to addr on conn and waits for its reply.
func echoICMP(ctx context.Context, conn *icmp.PacketConn, addr netip.Addr, timeout time.Duration) error {
	stop, err := bindDeadline(ctx, conn, timeout)
	if err != nil {
		return err
	}
	defer stop()

	var id [4]byte
	_, _ = rand.Read(id[:])
	want := &icmp.Echo{ID: int(id[0])<<8 | int(id[1]), Seq: int(id[2])<<8 | int(id[3]), Data: token()}
	req := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: want}
	replyType, proto := icmp.Type(ipv4.ICMPTypeEchoReply), 1 // IANA protocol numbers
	if addr.Is6() {
		// The kernel fills in the ICMPv6 checksum, which covers a
		// pseudo-header this socket does not know yet.
		req.Type, replyType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	b, err := req.Marshal(nil)
	if err != nil {
		return fmt.Errorf("encoding the echo request: %w", err)
	}
	if _, err := conn.WriteTo(b, &net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()}); err != nil {
		return fmt.Errorf("sending the echo request: %w", errors.Join(ctx.Err(), err))
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("waiting for the echo reply: %w", errors.Join(ctx.Err(), err))
		}
		if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(addr.AsSlice()) {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		if got, ok := m.Body.(*icmp.Echo); ok && got.ID == want.ID && got.Seq == want.Seq && bytes.Equal(got.Data, want.Data) {
			return nil
		}
	}
}

// EchoServer is a TCP and UDP echo server running inside a namespace: the
// lab's stand-in for a C2 server, a controller, or any service.
type EchoServer struct {
	tcp net.Listener
	udp net.PacketConn

	wg    sync.WaitGroup
	conns connSet
}

// ServeEcho starts TCP and UDP echo servers on addr inside namespace ns.
// Listening on [::]:port serves IPv4 and IPv6 alike. Close stops both.
func ServeEcho(ns string, addr netip.AddrPort) (*EchoServer, error) {
	s := &EchoServer{}
	err := Do(ns, func() error {
		var err error
		if s.tcp, err = net.Listen("tcp", addr.String()); err != nil {
			return err
		}
		if s.udp, err = net.ListenPacket("udp", addr.String()); err != nil {
			return errors.Join(err, s.tcp.Close())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("starting echo server on %s in %q: %w", addr, ns, err)
	}
	s.wg.Add(2)
	go s.serveTCP()
	go s.serveUDP()
	return s, nil
}

func (s *EchoServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		if !s.conns.add(c) {
			_ = c.Close()
			return
		}
		s.wg.Add(1) // serveTCP's own count keeps Close waiting until here
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(c, c)
			_ = c.Close()
			s.conns.remove(c)
		}()
	}
}

func (s *EchoServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. an ICMP error queued on the socket
		}
		_, _ = s.udp.WriteTo(buf[:n], from)
	}
}

// Close stops the servers and closes every open connection. It is
// idempotent.
func (s *EchoServer) Close() error {
	if !s.conns.close() {
		return nil
	}
	err := errors.Join(s.tcp.Close(), s.udp.Close())
	s.wg.Wait()
	return err
}

// Session is a long-lived TCP connection to an echo server, used to prove
// that an ESTABLISHED flow is cut.
type Session struct {
	conn net.Conn

	mu     sync.Mutex
	failed error
}

// OpenSession connects from namespace ns to the echo server at addr and
// checks the session works once.
func OpenSession(ctx context.Context, ns string, addr netip.AddrPort) (*Session, error) {
	conn, err := dialTCP(ctx, ns, addr.String(), 0)
	if err != nil {
		return nil, fmt.Errorf("opening session from %q to %s: %w", ns, addr, err)
	}
	s := &Session{conn: conn}
	if err := s.Alive(5 * time.Second); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return s, nil
}

// LocalAddr and RemoteAddr are the session's ends, as its connection
// tracking entry names them.
func (s *Session) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// Alive writes a token on the session and returns nil when the echo came
// back within timeout. Once Alive has failed the session is dead for good
// (bytes may be left in flight), and every later call fails too.
func (s *Session) Alive(timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("session %s -> %s already dead: %w", s.conn.LocalAddr(), s.conn.RemoteAddr(), s.failed)
	}
	if err := exchange(context.Background(), s.conn, timeout); err != nil {
		s.failed = err
		return fmt.Errorf("session %s -> %s: %w", s.conn.LocalAddr(), s.conn.RemoteAddr(), err)
	}
	return nil
}

// Close closes the session. It is idempotent.
func (s *Session) Close() error {
	err := s.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

package netlab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Relay carries connections from the host into a lab namespace: a process
// in the host's namespace, which has no route into the lab, connects to
// the relay on host loopback, and for each connection the relay dials
// target from a socket created inside namespace ns, then splices bytes.
// TLS stays end to end (the relay sees ciphertext), and every connection
// becomes a new connection from ns, so reaching target through the relay
// still proves the path from ns (the demo's controller reaches its agent
// this way, from the management network through the gateway's quarantine).
type Relay struct {
	ln     net.Listener
	ns     string
	target netip.AddrPort

	wg    sync.WaitGroup
	conns connSet
}

// StartRelay listens on a free loopback port and relays each connection
// to target from namespace ns. Close stops it.
func StartRelay(ns string, target netip.AddrPort) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the relay to %s: %w", target, err)
	}
	r := &Relay{ln: ln, ns: ns, target: target}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// Addr is host:port on loopback.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

func (r *Relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.splice(c)
		}()
	}
}

func (r *Relay) splice(in net.Conn) {
	out, err := dialTCP(context.Background(), r.ns, r.target.String(), 10*time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	if !r.conns.add(in, out) {
		_ = in.Close()
		_ = out.Close()
		return
	}
	defer r.conns.remove(in, out)
	var g sync.WaitGroup
	g.Add(2)
	pipe := func(dst, src net.Conn) {
		defer g.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go pipe(out, in)
	go pipe(in, out)
	g.Wait()
	_ = in.Close()
	_ = out.Close()
}

// Close stops accepting, cuts every relayed connection and waits.
func (r *Relay) Close() error {
	r.conns.close()
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

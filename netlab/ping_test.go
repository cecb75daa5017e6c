package netlab_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// TestPing pings across a real lab: the C2 server and the site's LAN host
// answer over IPv4 and IPv6; an address where no host lives does not, nor
// does anything once the context is cancelled.
func TestPing(t *testing.T) {
	netlabtest.Skip(t)
	lab := netlabtest.New(t, netlab.Options{Prefix: "pingt", Sites: []string{"a"}})
	site := lab.Sites()[0]
	gw, c2 := site.Gateway, lab.C2()

	tests := map[string]struct {
		from string
		to   netip.Addr
		want bool
	}{
		"gateway to c2 v4":              {gw.NS, c2.V4, true},
		"gateway to c2 v6":              {gw.NS, c2.V6, true},
		"c2 to lan host through gw v4":  {c2.NS, site.LAN.V4, true},
		"c2 to lan host through gw v6":  {c2.NS, site.LAN.V6, true},
		"gateway to an empty address":   {gw.NS, netip.MustParseAddr("198.18.0.254"), false},
		"gateway to an empty address 6": {gw.NS, netip.MustParseAddr("fd00:18::fe"), false},
		"gateway to an unrouted net":    {gw.NS, netip.MustParseAddr("192.0.2.1"), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := netlab.Ping(t.Context(), tc.from, tc.to, 2*time.Second)
			if (err == nil) != tc.want {
				t.Fatalf("Ping(%s -> %s) = %v, want reachable %t", tc.from, tc.to, err, tc.want)
			}
		})
	}

	t.Run("concurrent pings from one namespace each get their own reply", func(t *testing.T) {
		// Every raw ICMP socket of the namespace sees every reply; a
		// mismatch would make the unreachable ones succeed.
		var g errgroup.Group
		for i := range 8 {
			to, want := c2.Addrs()[i%2], true
			if i%4 == 3 {
				to, want = netip.MustParseAddr("198.18.0.253"), false
			}
			g.Go(func() error {
				err := netlab.Ping(t.Context(), gw.NS, to, 2*time.Second)
				if (err == nil) != want {
					return errors.Join(errors.New("ping to "+to.String()+" came out wrong"), err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		// The timeout is far beyond the test's patience: only the
		// context can end this ping.
		err := netlab.Ping(ctx, gw.NS, netip.MustParseAddr("198.18.0.254"), time.Hour)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Ping with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

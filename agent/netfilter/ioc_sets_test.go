package netfilter

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
)

// iocSet is a threat-intelligence-like set of exactly n prefixes in normal
// form, the same for the same seed: about 85% IPv4 hosts, 10% IPv4
// networks (/22 to /28) and 5% IPv6 (hosts, /64s and /48s). Addresses come
// from 20.0.0.0-99.255.255.255 and 2a00::/12, far from loopback and from
// the documentation and private ranges the tests' own namespaces use.
func iocSet(tb testing.TB, seed uint64, n int) []netip.Prefix {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 18))
	var ps []netip.Prefix
	for {
		for len(ps) < n {
			ps = append(ps, randomIOC(rng))
		}
		norm, err := wire.NormalizePrefixes(ps)
		if err != nil {
			tb.Fatal(err)
		}
		// Merging swallows a few (a host inside a network); top up.
		if len(norm) == n {
			return norm
		}
		ps = norm
		if len(ps) > n {
			ps = ps[:n]
		}
	}
}

func randomIOC(rng *rand.Rand) netip.Prefix {
	switch r := rng.IntN(100); {
	case r < 85:
		return netip.PrefixFrom(randomV4(rng), 32)
	case r < 95:
		return netip.PrefixFrom(randomV4(rng), 22+rng.IntN(7)).Masked()
	default:
		var b [16]byte
		b[0], b[1] = 0x2a, byte(rng.IntN(16))
		for i := 2; i < 16; i++ {
			b[i] = byte(rng.UintN(256))
		}
		bits := [...]int{128, 128, 64, 48}[rng.IntN(4)]
		return netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked()
	}
}

func randomV4(rng *rand.Rand) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(20 + rng.IntN(80)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))})
}

// iocVariant is set with a share of its prefixes (1% is 0.01) replaced by
// others, in normal form.
func iocVariant(tb testing.TB, set []netip.Prefix, seed uint64, share float64) []netip.Prefix {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 2026))
	out := make([]netip.Prefix, len(set))
	copy(out, set)
	for range int(float64(len(set)) * share) {
		out[rng.IntN(len(out))] = randomIOC(rng)
	}
	norm, err := wire.NormalizePrefixes(out)
	if err != nil {
		tb.Fatal(err)
	}
	return norm
}

package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func prefixesOf(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestNormalizePrefixes(t *testing.T) {
	tests := map[string]struct {
		in      []netip.Prefix
		want    string
		wantErr string
	}{
		"empty":                 {nil, "[]", ""},
		"single host":           {prefixesOf("198.19.0.10/32"), "[198.19.0.10/32]", ""},
		"host bits cleared":     {prefixesOf("198.19.0.77/24"), "[198.19.0.0/24]", ""},
		"contained":             {prefixesOf("10.1.0.0/16", "10.0.0.0/8"), "[10.0.0.0/8]", ""},
		"adjacent halves":       {prefixesOf("198.19.0.128/25", "198.19.0.0/25"), "[198.19.0.0/24]", ""},
		"adjacent, unaligned":   {prefixesOf("10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30"), "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/30]", ""},
		"overlap to odd end":    {prefixesOf("10.0.0.0/24", "10.0.1.0/25"), "[10.0.0.0/24 10.0.1.0/25]", ""},
		"duplicates":            {prefixesOf("fd00:19::/64", "fd00:19::/64", "fd00:19::1/128"), "[fd00:19::/64]", ""},
		"top of ipv4":           {prefixesOf("255.255.255.0/24", "255.255.254.0/24"), "[255.255.254.0/23]", ""},
		"top of ipv6":           {prefixesOf("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/121", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff80/121"), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120]", ""},
		"nested at ipv6's top":  {prefixesOf("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120]", ""},
		"ipv4 top, then ipv6":   {prefixesOf("2001:db8::/32", "255.255.255.255/32", "::/128"), "[255.255.255.255/32 ::/128 2001:db8::/32]", ""},
		"mapped becomes ipv4":   {prefixesOf("::ffff:192.0.2.9/128", "192.0.2.8/32"), "[192.0.2.8/31]", ""},
		"sorted, ipv4 first":    {prefixesOf("fd00::/16", "203.0.113.0/24", "10.0.0.0/8"), "[10.0.0.0/8 203.0.113.0/24 fd00::/16]", ""},
		"everything is a set":   {prefixesOf("0.0.0.0/1", "128.0.0.0/1", "::/0"), "[0.0.0.0/0 ::/0]", ""},
		"low halves of ipv6":    {prefixesOf("::/1", "8000::/1"), "[::/0]", ""},
		"crossing the 64th bit": {prefixesOf("2001:db8::ffff:ffff:ffff:ffff/128", "2001:db8:0:1::/128"), "[2001:db8::ffff:ffff:ffff:ffff/128 2001:db8:0:1::/128]", ""},
		"invalid":               {[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}, "", "prefixes[1]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := NormalizePrefixes(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NormalizePrefixes error = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got); s != tc.want {
				t.Fatalf("NormalizePrefixes = %s, want %s", s, tc.want)
			}
			again, err := NormalizePrefixes(got)
			if err != nil || !slices.Equal(again, got) {
				t.Fatalf("normalising the normal form gave %v, %v", again, err)
			}
			if PrefixDigest(tc.in) != PrefixDigest(got) {
				t.Fatal("the digest of the input differs from the digest of its normal form")
			}
		})
	}
}

func TestAddrRangePrefixes(t *testing.T) {
	tests := map[string]struct {
		first, last string
		want        string
	}{
		"aligned block":    {"10.0.0.0", "10.0.0.255", "[10.0.0.0/24]"},
		"one address":      {"10.0.0.7", "10.0.0.7", "[10.0.0.7/32]"},
		"unaligned":        {"10.0.0.1", "10.0.0.6", "[10.0.0.1/32 10.0.0.2/31 10.0.0.4/31 10.0.0.6/32]"},
		"to the top":       {"255.255.255.254", "255.255.255.255", "[255.255.255.254/31]"},
		"whole ipv4":       {"0.0.0.0", "255.255.255.255", "[0.0.0.0/0]"},
		"ipv6":             {"fd00::", "fd00::ffff", "[fd00::/112]"},
		"whole ipv6":       {"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "[::/0]"},
		"backwards":        {"10.0.0.9", "10.0.0.1", "[]"},
		"mixed families":   {"10.0.0.1", "fd00::1", "[]"},
		"across 64 bits":   {"::ffff:ffff:ffff:ffff", "0:0:0:1::", "[::ffff:ffff:ffff:ffff/128 0:0:0:1::/128]"},
		"ipv6 upper block": {"8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "[8000::/1]"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := AddrRange{netip.MustParseAddr(tc.first), netip.MustParseAddr(tc.last)}
			if got := fmt.Sprint(r.Prefixes()); got != tc.want {
				t.Errorf("Prefixes = %s, want %s", got, tc.want)
			}
		})
	}
	if got := (AddrRange{}).Prefixes(); len(got) != 0 {
		t.Errorf("the zero range covers %v", got)
	}
}

func TestPrefixRangesSkipsInvalid(t *testing.T) {
	got := PrefixRanges([]netip.Prefix{{}, netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("192.0.2.128/25")})
	want := []AddrRange{{netip.MustParseAddr("192.0.2.0"), netip.MustParseAddr("192.0.2.255")}}
	if !slices.Equal(got, want) {
		t.Fatalf("PrefixRanges = %v, want %v", got, want)
	}
}

func TestPrefixDigest(t *testing.T) {
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	tests := map[string]struct {
		in   []netip.Prefix
		want string
	}{
		"empty":          {nil, sum("")},
		"one per line":   {prefixesOf("192.0.2.7/32", "2001:db8::/32"), sum("192.0.2.7/32\n2001:db8::/32\n")},
		"normalised":     {prefixesOf("2001:db8::1/32", "192.0.2.1/25", "192.0.2.128/25"), sum("192.0.2.0/24\n2001:db8::/32\n")},
		"invalid is out": {[]netip.Prefix{{}, netip.MustParsePrefix("192.0.2.7/32")}, sum("192.0.2.7/32\n")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := PrefixDigest(tc.in); got != tc.want {
				t.Fatalf("PrefixDigest = %s, want %s", got, tc.want)
			}
		})
	}
	if PrefixDigest(prefixesOf("192.0.2.7/32")) == PrefixDigest(prefixesOf("192.0.2.8/32")) {
		t.Fatal("two sets share a digest")
	}
}

func TestIOCBlockJSON(t *testing.T) {
	b, err := json.Marshal(IOCBlockParams{})
	if err != nil || string(b) != "{}" {
		t.Fatalf("an observe encodes as %s, %v; want {}", b, err)
	}
	var res IOCBlockResult
	if err := json.Unmarshal([]byte(`{"changed":true,"backend":"nftables","count":2,"digest":"ab","enforced":true,"took":"1.5s"}`), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Count != 2 || res.Took != Duration(1500e6) {
		t.Fatalf("decoded %+v", res)
	}
	if !slices.Contains(Kinds(), KindIOCBlock) {
		t.Fatalf("Kinds() = %v lacks %s", Kinds(), KindIOCBlock)
	}
}

// universe is a small block of one family whose addresses a test can
// enumerate: 256 addresses starting at base, made of aligned blocks of
// 1<<hostBits addresses (a universe that straddles a boundary is made of
// smaller blocks).
type universe struct {
	base     netip.Addr
	hostBits int
}

// prefix is an aligned prefix of at most the universe's block size holding
// the address at off.
func (u universe) prefix(off byte, hostBits int) netip.Prefix {
	a := u.base
	for range off {
		a = a.Next()
	}
	return netip.PrefixFrom(a, a.BitLen()-min(hostBits, u.hostBits)).Masked()
}

// covered marks which of the universe's addresses ps covers.
func (u universe) covered(ps []netip.Prefix) [256]bool {
	var out [256]bool
	a := u.base
	for i := range out {
		for _, p := range ps {
			if p.Contains(a) {
				out[i] = true
				break
			}
		}
		a = a.Next()
	}
	return out
}

// minimalCover is the fewest aligned prefixes covering exactly the marked
// addresses, in order: a block wholly marked is one prefix, one with
// nothing marked is none, any other is its two halves' covers.
func (u universe) minimalCover(marked [256]bool) []netip.Prefix {
	var walk func(off, hostBits int) []netip.Prefix
	walk = func(off, hostBits int) []netip.Prefix {
		size := 1 << hostBits
		all, none := true, true
		for _, m := range marked[off : off+size] {
			all, none = all && m, none && !m
		}
		switch {
		case none:
			return nil
		case all:
			return []netip.Prefix{u.prefix(byte(off), hostBits)}
		}
		return append(walk(off, hostBits-1), walk(off+size/2, hostBits-1)...)
	}
	var out []netip.Prefix
	for off := 0; off < 256; off += 1 << u.hostBits {
		out = append(out, walk(off, u.hostBits)...)
	}
	return out
}

var universes = []universe{
	{netip.MustParseAddr("10.0.0.0"), 8},
	{netip.MustParseAddr("255.255.255.0"), 8},
	{netip.MustParseAddr("2001:db8::ff00"), 8},
	{netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00"), 8},
	{netip.MustParseAddr("2001:db8::ffff:ffff:ffff:ff80"), 7}, // crosses the 64th bit
}

// prefixesFromBytes reads a list of prefixes inside the universes from
// data, two bytes a prefix: which universe and how wide, then the offset.
func prefixesFromBytes(data []byte) ([]netip.Prefix, [][256]bool) {
	var ps []netip.Prefix
	for i := 0; i+1 < len(data); i += 2 {
		u := universes[int(data[i]>>4)%len(universes)]
		ps = append(ps, u.prefix(data[i+1], int(data[i]&0x0f)%9))
	}
	var marks [][256]bool
	for _, u := range universes {
		marks = append(marks, u.covered(ps))
	}
	return ps, marks
}

// checkNormalForm fails unless got is the minimal cover of what in covers,
// universe by universe, IPv4 universes first.
func checkNormalForm(t *testing.T, in []netip.Prefix) {
	t.Helper()
	got, err := NormalizePrefixes(in)
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Prefix
	for _, fam := range []bool{true, false} {
		var fw []netip.Prefix
		for _, u := range universes {
			if u.base.Is4() == fam {
				fw = append(fw, u.minimalCover(u.covered(in))...)
			}
		}
		slices.SortFunc(fw, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		want = append(want, fw...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("NormalizePrefixes(%v)\n = %v\nwant %v", in, got, want)
	}
	if len(got) > len(in) {
		t.Fatalf("normal form of %d prefixes holds %d", len(in), len(got))
	}
	if PrefixDigest(in) != PrefixDigest(got) {
		t.Fatal("digest differs between a list and its normal form")
	}
}

func TestNormalizePrefixesIsMinimalCover(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2026))
	for i := range 500 {
		data := make([]byte, 2*(1+rng.IntN(40)))
		for j := range data {
			data[j] = byte(rng.UintN(256))
		}
		in, _ := prefixesFromBytes(data)
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkNormalForm(t, in) })
	}
}

func FuzzNormalizePrefixes(f *testing.F) {
	f.Add([]byte{0x00, 0x07})
	f.Add([]byte{0x18, 0x00, 0x18, 0x01})             // the whole top IPv4 block and one address
	f.Add([]byte{0x10, 0xff, 0x30, 0xff})             // top of IPv4, top of IPv6
	f.Add([]byte{0x47, 0x00, 0x40, 0x7f, 0x40, 0x80}) // across the 64th bit
	f.Fuzz(func(t *testing.T, data []byte) {
		in, _ := prefixesFromBytes(data)
		checkNormalForm(t, in)
	})
}

func BenchmarkNormalizePrefixes100k(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	ps := make([]netip.Prefix, 0, 100_000)
	for len(ps) < 95_000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(rng.UintN(224)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))}), 32-int(rng.UintN(9))))
	}
	for len(ps) < 100_000 {
		var a [16]byte
		a[0], a[1] = 0x20, 0x01
		for i := 2; i < 16; i++ {
			a[i] = byte(rng.UintN(256))
		}
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(a), 48+int(rng.UintN(81))))
	}
	for b.Loop() {
		if _, err := NormalizePrefixes(ps); err != nil {
			b.Fatal(err)
		}
	}
}

package baseline

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// realisticSizes are the sizes of the hashed files on a Debian 12 amd64
// gateway, rounded.
var realisticSizes = map[string]int{
	"/usr/sbin/sshd":              950 << 10,
	"/usr/lib/ipsec/charon":       20 << 10,
	"/usr/sbin/swanctl":           70 << 10,
	"/usr/bin/wg":                 100 << 10,
	"/usr/sbin/nft":               30 << 10,
	"/usr/sbin/xtables-nft-multi": 250 << 10,
	"/usr/bin/sudo":               280 << 10,
	"/usr/bin/su":                 70 << 10,
	"/usr/bin/login":              50 << 10,
	"/usr/bin/passwd":             70 << 10,
	"/usr/lib/x86_64-linux-gnu/security/pam_unix.so": 60 << 10,
}

// newRealisticGateway is the passing fixture with real-sized binaries, a
// dpkg database of 750 packages (about 700 KB, like a small Debian 12
// server) and 200 sockets, 40 of them listening on loopback.
func newRealisticGateway(tb testing.TB) *gatewayFixture {
	f := newGatewayFixture(tb)
	rng := rand.New(rand.NewPCG(7, 7))
	for p, size := range realisticSizes {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(rng.UintN(256))
		}
		f.write(p, string(buf))
	}
	var status strings.Builder
	status.WriteString(goodDpkgStatus())
	for i := range 744 {
		status.WriteString(dpkgStanza(fmt.Sprintf("lib-filler%03d", i), "amd64", fmt.Sprintf("%d.%d.%d-%d+deb12u%d", i%7, i%13, i%5, 1+i%3, i%9), "install ok installed"))
	}
	f.write("/var/lib/dpkg/status", status.String())
	for i := range 160 {
		f.sockets = append(f.sockets, socket{"tcp", "10.99.0.5:22", fmt.Sprintf("10.99.0.%d:%d", 10+i%200, 40000+i), 0x01})
	}
	for i := range 40 {
		f.sockets = append(f.sockets, socket{"tcp", fmt.Sprintf("127.0.0.1:%d", 9000+i), "0.0.0.0:0", tcpListen})
	}
	return f
}

// defaultOnRealisticGateway loads the shipped baseline and a realistic
// gateway tree recorded against it, and checks that the tree passes.
func defaultOnRealisticGateway(b *testing.B) (*Baseline, Env) {
	b.Helper()
	bl, env, rep := evaluateRecorded(b, newRealisticGateway(b))
	if !rep.Passed {
		b.Fatalf("fixture does not pass: %+v", rep.Counts)
	}
	return bl, env
}

// BenchmarkEvaluateDefault evaluates the shipped baseline (26 checks, all
// passing, every integrity file hashed) against a realistic gateway tree.
// This is the work one agent does per drift check; the fleet figure is
// this time per gateway, spread over the gateways' own CPUs.
func BenchmarkEvaluateDefault(b *testing.B) {
	bl, env := defaultOnRealisticGateway(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := bl.Evaluate(b.Context(), env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateDefaultParallel is the same evaluation run on every CPU
// at once: the rate a controller would reach evaluating fixture trees
// (captured evidence) itself instead of on the gateways.
func BenchmarkEvaluateDefaultParallel(b *testing.B) {
	bl, env := defaultOnRealisticGateway(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bl.Evaluate(b.Context(), env); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCompareDebianVersions(b *testing.B) {
	for b.Loop() {
		CompareDebianVersions("1:9.2p1-2+deb12u6", "1:9.2p1-2+deb12u10")
	}
}

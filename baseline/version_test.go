package baseline

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

func TestCompareDebianVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		// From the brief and Debian policy §5.6.12.
		{"1:2.0", "3.0", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0-1", "1.0-1+deb12u1", -1},
		{"1.0~~", "1.0~~a", -1},
		{"1.0~~a", "1.0~", -1},
		{"1.0~", "1.0", -1},
		{"1.0", "1.0a", -1},
		// dpkg's own test cases (lib/dpkg/t/t-version.c).
		{"0:0-0", "0:0-0", 0},
		{"0:0-0", "0:0", 0},
		{"0:0-0", "0:0-1", -1},
		{"0:0-0", "1:0-0", -1},
		{"0:a-0", "0:b-0", -1},
		{"1:0-0", "0:1-0", 1},
		{"0:1.0-0", "0:1.0-0", 0},
		{"0:1.1-0", "0:1.0-0", 1},
		{"0:2.50-0", "0:2.5-0", 1},
		{"0:1.00-0", "0:1.0-0", 0},
		{"0:0a-0", "0:0b-0", -1},
		{"0:0a-0", "0:0-0", 1},
		{"0:0~-0", "0:0-0", -1},
		{"0:0~a-0", "0:0~b-0", -1},
		{"0:a~-0", "0:a-0", -1},
		{"0:0.0-0", "0:0-0", 1},
		{"0:0-0.0", "0:0-0", 1},
		{"0:0-a", "0:0-0", 1},
		// Letters sort before other characters; leading zeros are ignored.
		{"1.0a", "1.0+", -1},
		{"1.0+", "1.0.", -1},
		{"1.002", "1.2", 0},
		{"1.0-0", "1.0", 0},
		{"2.0.0", "2.0.0.0", -1},
		// Real Debian 12 versions.
		{"1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u10", -1},
		{"1:9.2p1-2+deb12u6", "1:9.2p1-2+deb12u3", 1},
		{"9.9p1-1", "1:9.2p1-2+deb12u3", -1},
		{"3.0.19-1~deb12u2", "3.0.19-1", -1},
		{"3.0.19-1~deb12u2", "3.0.15-1~deb12u1", 1},
		{"5.9.8-5+deb12u6", "5.9.8-5+deb12u1", 1},
		{"1.0.20210914-1+b1", "1.0.20210914-1", 1},
		{"2.36-9+deb12u14", "2.36-9+deb12u9", 1},
		// Hyphens in the upstream version: the revision follows the last.
		{"1.2-3-4", "1.2-3-5", -1},
		{"1.2-3-4", "1.2-4-1", -1},
	}
	for _, tc := range tests {
		t.Run(tc.a+" vs "+tc.b, func(t *testing.T) {
			if got := CompareDebianVersions(tc.a, tc.b); got != tc.want {
				t.Errorf("CompareDebianVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := CompareDebianVersions(tc.b, tc.a); got != -tc.want {
				t.Errorf("CompareDebianVersions(%q, %q) = %d, want %d (antisymmetry)", tc.b, tc.a, got, -tc.want)
			}
		})
	}
}

// TestCompareDebianVersionsAgainstDpkg checks random versions built from
// the characters that matter against dpkg itself, when it is installed.
func TestCompareDebianVersionsAgainstDpkg(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg is not installed")
	}
	if testing.Short() {
		t.Skip("runs dpkg a few hundred times")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	part := func(alphabet string, n int) string {
		var b strings.Builder
		for range 1 + rng.IntN(n) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	version := func() string {
		v := fmt.Sprint(rng.IntN(3)) + part("0123456789.~+ab", 6)
		if rng.IntN(3) == 0 {
			v = fmt.Sprintf("%d:%s", rng.IntN(3), v)
		}
		if rng.IntN(2) == 0 {
			v += "-" + part("0123456789.~+ab", 4)
		}
		return v
	}
	for i := range 300 {
		a, b := version(), version()
		if i%10 == 0 {
			b = a[:len(a)-1] + "~"
		}
		for _, op := range []string{"lt", "eq", "gt"} {
			err := exec.CommandContext(t.Context(), dpkg, "--compare-versions", a, op, b).Run()
			var exitErr *exec.ExitError
			if err != nil && !errors.As(err, &exitErr) {
				t.Fatal(err)
			}
			dpkgSays := err == nil
			got := CompareDebianVersions(a, b)
			ours := map[string]bool{"lt": got < 0, "eq": got == 0, "gt": got > 0}[op]
			if dpkgSays != ours {
				t.Errorf("%q %s %q: dpkg says %v, we say %v (compare = %d)", a, op, b, dpkgSays, ours, got)
			}
		}
	}
}

func TestParseDebianVersion(t *testing.T) {
	good := map[string]DebianVersion{
		"1:9.2p1-2+deb12u3": {1, "9.2p1", "2+deb12u3"},
		"3.0.19-1~deb12u2":  {0, "3.0.19", "1~deb12u2"},
		"1.2-3-4":           {0, "1.2-3", "4"},
		" 2.0 ":             {0, "2.0", ""},
		"0:1.0":             {0, "1.0", ""},
	}
	for in, want := range good {
		got, err := ParseDebianVersion(in)
		if err != nil || got != want {
			t.Errorf("ParseDebianVersion(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if v, _ := ParseDebianVersion("1:9.2p1-2+deb12u3"); v.String() != "1:9.2p1-2+deb12u3" {
		t.Errorf("String() = %q", v.String())
	}
	bad := map[string]string{
		"":          "empty",
		"1.0 2":     "embedded spaces",
		":1.0":      "epoch in version is empty",
		"a:1.0":     "epoch in version is not a non-negative number",
		"-1:1.0":    "not a non-negative number",
		"1.0-":      "revision number is empty",
		"1:":        "version number is empty",
		"abc":       "does not start with a digit",
		"1.0_beta":  "invalid character",
		"1.0-1:2":   "epoch",
		"1.0-deb_1": "invalid character",
	}
	for in, want := range bad {
		if _, err := ParseDebianVersion(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDebianVersion(%q) error = %v, want it to mention %q", in, err, want)
		}
	}
}

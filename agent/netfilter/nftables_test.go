package netfilter

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/warden-ir/warden/agent/wire"
)

func TestSetElementsRoundTrip(t *testing.T) {
	tests := map[string]struct {
		in, want string
	}{
		"one prefix":      {"198.19.0.0/24", "198.19.0.0/24 ends 198.19.1.0"},
		"two prefixes":    {"10.0.0.0/8 198.19.0.10/32", "10.0.0.0/8 198.19.0.10/32 ends 11.0.0.0 198.19.0.11"},
		"runs to the top": {"255.255.255.0/24", "255.255.255.0/24 ends"},
		"ipv6":            {"fd00:19::/64", "fd00:19::/64 ends fd00:19:0:1::"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			elems := setElements(wire.PrefixRanges(mustPrefixes(strings.Fields(tc.in)...)))
			var ends []string
			for _, e := range elems {
				if e.end {
					ends = append(ends, fmt.Sprint(addrOf(e.key)))
				}
			}
			// The kernel hands elements back in its own order.
			for i, j := 0, len(elems)-1; i < j; i, j = i+1, j-1 {
				elems[i], elems[j] = elems[j], elems[i]
			}
			var back []string
			for _, r := range elementRanges(elems) {
				for _, p := range r.Prefixes() {
					back = append(back, p.String())
				}
			}
			got := strings.TrimSpace(strings.Join(back, " ") + " ends " + strings.Join(ends, " "))
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDesiredNFTObservesAsQuarantined(t *testing.T) {
	allow, err := allowListOf(labSpec())
	if err != nil {
		t.Fatal(err)
	}
	m := desiredNFT(allow)
	st := m.observe()
	if !st.Quarantined() {
		t.Fatalf("desired table not seen as a quarantine: %+v", st)
	}
	drift, err := st.Drift(labSpec())
	if err != nil || len(drift) > 0 {
		t.Fatalf("Drift = %q, %v", drift, err)
	}
	if m.text() != desiredNFT(allow).text() {
		t.Error("text is not deterministic")
	}

	// A rule someone slipped into the input chain, above the jump.
	m.rules["input"] = append([]*nftables.Rule{{Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}}, m.rules["input"]...)
	st = m.observe()
	if st.Quarantined() || st.IPv4.First || len(st.IPv6.Unexpected) != 1 {
		t.Errorf("tampered table observed as %+v", st)
	}
	if m.text() == desiredNFT(allow).text() {
		t.Error("tampered table renders like the desired one")
	}
}

func TestExprTextCoversWardensExpressions(t *testing.T) {
	allow, _ := allowListOf(labSpec())
	for _, rules := range desiredNFT(allow).rules {
		for _, r := range rules {
			for _, e := range r.Exprs {
				if s := exprText(e); strings.HasPrefix(s, "*expr.") {
					t.Errorf("expression %T has no canonical text: %s", e, s)
				}
			}
		}
	}
}

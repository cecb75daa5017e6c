package intake

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseSTIXPatternTargets(t *testing.T) {
	tests := map[string]struct {
		prefixes []string
		domains  []string
	}{
		// The STIX 2.1 specification's own examples and what feeds send.
		"[ipv4-addr:value = '198.51.100.1/32']":                                                                     {prefixes: []string{"198.51.100.1/32"}},
		"[ipv4-addr:value = '203.0.113.33']":                                                                        {prefixes: []string{"203.0.113.33/32"}},
		"[ipv4-addr:value == '203.0.113.0/24']":                                                                     {prefixes: []string{"203.0.113.0/24"}},
		"[ipv4-addr:value ISSUBSET '198.51.100.1/24']":                                                              {prefixes: []string{"198.51.100.0/24"}},
		"[ipv6-addr:value = '2001:0db8:dead:beef:dead:beef:dead:0001']":                                             {prefixes: []string{"2001:db8:dead:beef:dead:beef:dead:1/128"}},
		"[network-traffic:dst_ref.value ISSUBSET '2001:0db8:dead:beef:0000:0000:0000:0000/64']":                     {prefixes: []string{"2001:db8:dead:beef::/64"}},
		"[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '203.0.113.33/32']":        {prefixes: []string{"203.0.113.33/32"}},
		"[network-traffic:src_ref.type = 'ipv4-addr' AND network-traffic:src_ref.value = '1.2.3.4']":                {prefixes: []string{"1.2.3.4/32"}},
		"[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'example.com']":          {domains: []string{"example.com"}},
		"[domain-name:value = 'www.5z8.info']":                                                                      {domains: []string{"www.5z8.info"}},
		"[domain-name:value = 'C2.Example.ORG.']":                                                                   {domains: []string{"c2.example.org"}},
		"[ipv4-addr:value = '10.0.0.1' OR ipv4-addr:value = '10.0.0.2'] OR [ipv6-addr:value = '2001:db8::1']":       {prefixes: []string{"10.0.0.1/32", "10.0.0.2/32", "2001:db8::1/128"}},
		"([ipv4-addr:value = '10.0.0.2']) OR ([domain-name:value = 'a.example'] OR [ipv4-addr:value = '10.0.0.1'])": {prefixes: []string{"10.0.0.1/32", "10.0.0.2/32"}, domains: []string{"a.example"}},
		"[ipv4-addr:value IN ('192.0.2.1', '192.0.2.1', '192.0.2.0/31')]":                                           {prefixes: []string{"192.0.2.0/31", "192.0.2.1/32"}},
		"[network-traffic:dst_ref.value IN ('drop.example.net', '2001:db8::2')]":                                    {prefixes: []string{"2001:db8::2/128"}, domains: []string{"drop.example.net"}},
		// AND on one address narrows it: to the address inside the network,
		// to the family the type test names.
		"[ipv4-addr:value ISSUBSET '10.0.0.0/8' AND ipv4-addr:value = '10.1.2.3']":                                                                                                    {prefixes: []string{"10.1.2.3/32"}},
		"[(network-traffic:dst_ref.type = 'ipv4-addr' OR network-traffic:dst_ref.type = 'ipv6-addr') AND network-traffic:dst_ref.value IN ('192.0.2.7', 'x.example', '2001:db8::7')]": {prefixes: []string{"192.0.2.7/32", "2001:db8::7/128"}},
		"[network-traffic:dst_ref.type IN ('ipv6-addr') AND network-traffic:dst_ref.value = '2001:db8::/32']":                                                                         {prefixes: []string{"2001:db8::/32"}},
		// White space and comments as the grammar allows them.
		"/* c2 */ [ ipv4-addr:value\u00a0=\t'192.0.2.9' ] // end": {prefixes: []string{"192.0.2.9/32"}},
		// Escapes: \' and \\ only.
		`[domain-name:value = 'it\'s.example' OR ipv4-addr:value = '192.0.2.10']`: {prefixes: []string{"192.0.2.10/32"}, domains: nil},
	}
	for pattern, want := range tests {
		t.Run(pattern, func(t *testing.T) {
			got, err := ParseSTIXPattern(pattern)
			if strings.Contains(pattern, `it\'s`) {
				// "it's.example" is not a domain name: the escape is read,
				// and the value refused as a value.
				if err == nil || !strings.Contains(err.Error(), `'it's.example' is not a domain name`) {
					t.Fatalf("err %v, want the unescaped value named", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var prefixes []string
			for _, p := range got.Prefixes {
				prefixes = append(prefixes, p.String())
			}
			if !slices.Equal(prefixes, want.prefixes) || !slices.Equal(got.Domains, want.domains) {
				t.Errorf("got %v %v, want %v %v", prefixes, got.Domains, want.prefixes, want.domains)
			}
		})
	}
}

func TestParseSTIXPatternRefusesUnsupported(t *testing.T) {
	tests := map[string]string{ // pattern: error
		"[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '5.6.7.8']":                              "unsupported: AND between observation expressions (a block cannot wait for a second observation) (at offset 30)",
		"[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '5.6.7.8']":                       "unsupported: FOLLOWEDBY (a block cannot wait for a sequence of observations) (at offset 30)",
		"[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS":                                             "unsupported: WITHIN qualifier (a block cannot count or wait) (at offset 30)",
		"[ipv4-addr:value = '1.2.3.4'] REPEATS 5 TIMES WITHIN 1800 SECONDS":                            "unsupported: REPEATS qualifier (a block cannot count or wait) (at offset 30)",
		"[ipv4-addr:value = '1.2.3.4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'":     "unsupported: START qualifier (a block cannot count or wait) (at offset 30)",
		"[ipv4-addr:value = '1.2.3.4'] OR [ipv4-addr:value = '5.6.7.8'] WITHIN 5 SECONDS":              "unsupported: WITHIN qualifier",
		"[ipv4-addr:value != '1.2.3.4']":                                                               "unsupported: negated comparison on ipv4-addr:value (it matches almost every address) (at offset 1)",
		"[ipv4-addr:value NOT = '1.2.3.4']":                                                            "unsupported: negated comparison on ipv4-addr:value",
		"[ipv4-addr:value NOT ISSUBSET '10.0.0.0/8']":                                                  "unsupported: negated comparison",
		"[domain-name:value MATCHES '^evil']":                                                          "unsupported: MATCHES on domain-name:value (at offset 1)",
		"[domain-name:value LIKE '%.evil.example']":                                                    "unsupported: LIKE on domain-name:value",
		"[ipv4-addr:value ISSUPERSET '10.0.0.1']":                                                      "unsupported: ISSUPERSET on ipv4-addr:value",
		"[ipv4-addr:value > '10.0.0.1']":                                                               "unsupported: ordering comparison > on ipv4-addr:value",
		"[domain-name:value ISSUBSET 'example.com']":                                                   "unsupported: ISSUBSET on domain-name:value (it takes a network)",
		"[EXISTS ipv4-addr:value]":                                                                     "unsupported: EXISTS (at offset 1)",
		"[url:value = 'http://x4z9arb.cn/4712']":                                                       "unsupported: object type url",
		"[file:hashes.'SHA-256' = 'ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c']": "unsupported: object type file",
		"[network-traffic:dst_port = 443]":                                                             "unsupported: network-traffic:dst_port narrows the block to a port or protocol; Warden blocks whole addresses (at offset 1)",
		"[network-traffic:dst_ref.value = '1.2.3.4' AND network-traffic:dst_port = 443]":               "unsupported: network-traffic:dst_port narrows the block",
		"[network-traffic:protocols[*] = 'tcp' AND network-traffic:dst_ref.value = '1.2.3.4']":         "unsupported: object path network-traffic:protocols[*] (at offset 1)",
		"[domain-name:resolves_to_refs[*].value = '198.51.100.1/32']":                                  "unsupported: object path domain-name:resolves_to_refs[*].value",
		"[ipv4-addr:value = '1.2.3.4' AND domain-name:value = 'a.example']":                            "unsupported: AND between comparisons on different objects (ipv4-addr and domain-name): a block cannot require both (at offset 29)",
		"[network-traffic:src_ref.value = '1.2.3.4' AND network-traffic:dst_ref.value = '5.6.7.8']":    "unsupported: AND between comparisons on different objects (network-traffic:src_ref and network-traffic:dst_ref)",
		"[(ipv4-addr:value = '1.2.3.4' OR ipv6-addr:value = '::1') AND ipv4-addr:value = '1.2.3.4']":   "unsupported: AND between comparisons on different objects (- and ipv4-addr)",
		"[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '5.6.7.8']":                                "unsupported: the comparisons joined by AND have no address in common (at offset 29)",
		"[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = 'a.example']": "unsupported: the comparisons joined by AND have no address in common",
		"[network-traffic:dst_ref.type = 'ipv4-addr']":                                                 "unsupported: a type test alone names no address (it matches every address of the type) (at offset 32)",
		"[network-traffic:dst_ref.type = 'ipv4-addr' OR ipv4-addr:value = '1.2.3.4']":                  "unsupported: a type test alone names no address",
		"[network-traffic:dst_ref.type = 'mac-addr' AND network-traffic:dst_ref.value = '1.2.3.4']":    "unsupported: network-traffic:dst_ref.type = 'mac-addr' (only ipv4-addr, ipv6-addr and domain-name) (at offset 32)",
		"[ipv4-addr:value IN ()]":                                                                      "unsupported: IN with an empty set on ipv4-addr:value (it matches nothing)",
		"[ipv4addr:value = '10.0.0.0']":                                                                "unsupported: object type ipv4addr",
	}
	for pattern, want := range tests {
		t.Run(pattern, func(t *testing.T) {
			got, err := ParseSTIXPattern(pattern)
			var pe *PatternError
			if !errors.As(err, &pe) || !pe.Unsupported || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("got %v, %v\nwant %s…", got, err, want)
			}
		})
	}
}

func TestParseSTIXPatternRefusesMalformed(t *testing.T) {
	tests := map[string]string{ // pattern: error
		"":                                                                "malformed pattern at offset 0: expected '[' or '(', got end of pattern",
		"[ipv4-addr:value = '1.2.3.4'":                                    "malformed pattern at offset 28: expected ']', got end of pattern",
		"[ipv4-addr:value = '1.2.3.4]":                                    "malformed pattern at offset 19: unterminated string",
		`[ipv4-addr:value = '1.2.3.4\n']`:                                 `malformed pattern at offset 27: invalid escape in string (only \' and \\ are escapes)`,
		"[ipv4-addr:value = \"1.2.3.4\"]":                                 "malformed pattern at offset 19: unexpected character '\"'",
		"[ipv4-addr:value = '2001:db8::1']":                               "malformed pattern at offset 19: ipv4-addr:value: '2001:db8::1' is not an IPv4 address",
		"[ipv6-addr:value = '192.0.2.1']":                                 "malformed pattern at offset 19: ipv6-addr:value: '192.0.2.1' is not an IPv6 address",
		"[ipv4-addr:value = 'fe80::1%eth0']":                              "malformed pattern at offset 19: ipv4-addr:value: 'fe80::1%eth0' is not an address or CIDR",
		"[ipv4-addr:value = 'evil.example']":                              "malformed pattern at offset 19: ipv4-addr:value: 'evil.example' is not an address or CIDR",
		"[domain-name:value = '-not a name-']":                            "malformed pattern at offset 21: domain-name:value: '-not a name-' is not a domain name",
		"[ipv4-addr:value = 16909060]":                                    "malformed pattern at offset 19: ipv4-addr:value is compared with 16909060, not a string",
		"[ipv4-addr:value = '1.2.3.4'] and [x:y = 1]":                     "malformed pattern at offset 30: expected end of pattern, OR, AND or FOLLOWEDBY, got identifier and",
		"[network-traffic:dst-ref.value = '1.2.3.4']":                     "malformed pattern at offset 17: expected a property name (quote names with a hyphen), got identifier dst-ref",
		"[ipv4-addr:value = '1.2.3.4'] /* open":                           "malformed pattern at offset 37: unterminated comment",
		"[ipv4-addr:value = 007]":                                         "malformed pattern at offset 19: integer 007 has a leading zero",
		"[x:y = h'abc']":                                                  "malformed pattern at offset 7: invalid hex literal h'abc'",
		"[x:y[1 = 2]":                                                     "malformed pattern at offset 7: expected ']', got '='",
		strings.Repeat("(", 100) + "[x:y = 1]" + strings.Repeat(")", 100): "malformed pattern at offset 64: nested deeper than 64",
	}
	for pattern, want := range tests {
		t.Run(clip(pattern, 60), func(t *testing.T) {
			_, err := ParseSTIXPattern(pattern)
			var pe *PatternError
			if !errors.As(err, &pe) || pe.Unsupported || err.Error() != want {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
		})
	}
}

// TestParseSTIXPatternValidatorCases runs the OASIS pattern validator's
// STIX 2.1 test cases: a pattern it accepts is never called malformed
// (Warden may still refuse it as unsupported), and one it refuses for its
// syntax is malformed at the validator's own column.
func TestParseSTIXPatternValidatorCases(t *testing.T) {
	cases := validatorCases(t)
	if len(cases) < 30 {
		t.Fatalf("only %d cases read", len(cases))
	}
	for _, c := range cases {
		t.Run(c.pattern, func(t *testing.T) {
			_, err := ParseSTIXPattern(c.pattern)
			var pe *PatternError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want a PatternError (these are all outside the subset or malformed)", err)
			}
			if c.valid && !pe.Unsupported {
				t.Errorf("a valid pattern called malformed: %v", err)
			}
			if !c.valid && (pe.Unsupported || pe.Offset != c.offset) {
				t.Errorf("got %v, want malformed at offset %d", err, c.offset)
			}
		})
	}
}

type validatorCase struct {
	valid   bool
	offset  int
	pattern string
}

func validatorCases(tb testing.TB) []validatorCase {
	tb.Helper()
	var out []validatorCase
	for line := range strings.Lines(string(readTestdata(tb, "stix_patterns_validator.txt"))) {
		line = strings.TrimRight(line, "\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, rest, _ := strings.Cut(line, "\t")
		c := validatorCase{valid: kind == "valid", pattern: rest}
		if !c.valid {
			off, pattern, _ := strings.Cut(rest, "\t")
			n, err := strconv.Atoi(off)
			if err != nil {
				tb.Fatalf("bad line %q", line)
			}
			c.offset, c.pattern = n, pattern
		}
		out = append(out, c)
	}
	return out
}

func TestParseSTIXPatternRefusesHugePatterns(t *testing.T) {
	huge := "[ipv4-addr:value = '1.2.3.4'" + strings.Repeat(" OR ipv4-addr:value = '1.2.3.4'", maxPatternLen/30) + "]"
	_, err := ParseSTIXPattern(huge)
	if err == nil || !strings.Contains(err.Error(), "longer than 65536 bytes") {
		t.Fatalf("err %v", err)
	}
	// Just under the bound: a long chain of ORs is read, each address once.
	long := "[ipv4-addr:value = '1.2.3.4'" + strings.Repeat(" OR ipv4-addr:value = '1.2.3.4'", maxPatternLen/40) + "]"
	got, err := ParseSTIXPattern(long)
	if err != nil || len(got.Prefixes) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func FuzzSTIXPattern(f *testing.F) {
	for _, c := range validatorCases(f) {
		f.Add(c.pattern)
	}
	for _, s := range []string{
		"[ipv4-addr:value = '198.51.100.1/32']",
		"[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '203.0.113.33/32']",
		"[network-traffic:dst_ref.value IN ('drop.example.net', '2001:db8::2')] OR [domain-name:value = 'x.example']",
		"[(network-traffic:dst_ref.type = 'ipv4-addr' OR network-traffic:dst_ref.type = 'ipv6-addr') AND network-traffic:dst_ref.value ISSUBSET '10.0.0.0/8']",
		`[domain-name:value = 'a\\b\'c']`, "[", "(", "['", "/*", "t'", "b'=", "-", ".5", "[x:y[-1] = +.5]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		got, err := ParseSTIXPattern(pattern)
		if err != nil {
			var pe *PatternError
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > max(len(pattern), maxPatternLen) || pe.Msg == "" {
				t.Fatalf("error %T %v", err, err)
			}
			if len(got.Prefixes)+len(got.Domains) != 0 {
				t.Fatalf("error %v with targets %v", err, got)
			}
			return
		}
		if len(got.Prefixes)+len(got.Domains) == 0 {
			t.Fatal("no error and nothing to block")
		}
		if !slices.IsSortedFunc(got.Prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) }) {
			t.Fatalf("prefixes not sorted: %v", got.Prefixes)
		}
		for _, p := range got.Prefixes {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
				t.Fatalf("prefix %v not valid and masked", p)
			}
		}
		for _, d := range got.Domains {
			if n, ok := observableDomain(d); !ok || n != d {
				t.Fatalf("domain %q not normalised", d)
			}
		}
	})
}

package netfilter

import (
	"fmt"
	"slices"
	"testing"
)

// A table as `iptables -S` prints it: an ESTABLISHED accept above a stale
// jump, a duplicate jump, and a chain holding an out-of-date rule set.
const driftedTable = `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N WARDEN-QUARANTINE
-N SITE
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -j WARDEN-QUARANTINE
-A FORWARD -j WARDEN-QUARANTINE
-A OUTPUT -j WARDEN-QUARANTINE
-A OUTPUT -j WARDEN-QUARANTINE
-A SITE -j RETURN
-A WARDEN-QUARANTINE -i lo -j ACCEPT
-A WARDEN-QUARANTINE -o lo -j ACCEPT
-A WARDEN-QUARANTINE -s 10.0.0.0/8 -j ACCEPT
-A WARDEN-QUARANTINE -s 198.19.0.0/24 -j ACCEPT
-A WARDEN-QUARANTINE -d 198.19.0.0/24 -j ACCEPT
-A WARDEN-QUARANTINE -j DROP
`

func TestParseFilterTable(t *testing.T) {
	ft := quarantineChain.parse(driftedTable)
	if !ft.exists || len(ft.rules) != 6 {
		t.Fatalf("parsed %+v", ft)
	}
	if got := fmt.Sprint(ft.jumps); got != "map[FORWARD:[1] INPUT:[2] OUTPUT:[1 2]]" {
		t.Errorf("jumps = %s", got)
	}
	fs := ft.observeQuarantine(IPv4)
	if !fs.Installed || fs.First || !fs.Loopback || !fs.DropsRest || !slices.Equal(fs.Hooked, allHooks()) {
		t.Errorf("observe = %+v", fs)
	}
	if got := fmt.Sprint(fs.Allowed, fs.Unexpected); got != "[198.19.0.0/24] [-s 10.0.0.0/8 -j ACCEPT]" {
		t.Errorf("allowed, unexpected = %s", got)
	}
	if fs.Enforced() {
		t.Error("a drifted table reported as enforced")
	}
}

func TestIPTablesScripts(t *testing.T) {
	allow := mustPrefixes("198.19.0.0/24", "203.0.113.7/32")
	want := iptRules(IPv4, allow)
	// refill declares (so flushes) the chain and writes want into it.
	const refill = `*filter
:WARDEN-QUARANTINE - [0:0]
-A WARDEN-QUARANTINE -i lo -j ACCEPT
-A WARDEN-QUARANTINE -o lo -j ACCEPT
-A WARDEN-QUARANTINE -s 198.19.0.0/24 -j ACCEPT
-A WARDEN-QUARANTINE -d 198.19.0.0/24 -j ACCEPT
-A WARDEN-QUARANTINE -s 203.0.113.7/32 -j ACCEPT
-A WARDEN-QUARANTINE -d 203.0.113.7/32 -j ACCEPT
-A WARDEN-QUARANTINE -j DROP
`

	tests := map[string]struct {
		table      string
		inSync     bool
		wantApply  string
		wantRemove string
	}{
		"fresh table": {
			table: "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n",
			wantApply: refill + `-I INPUT 1 -j WARDEN-QUARANTINE
-I OUTPUT 1 -j WARDEN-QUARANTINE
-I FORWARD 1 -j WARDEN-QUARANTINE
COMMIT
`,
		},
		"drifted table": {
			table: driftedTable,
			wantApply: refill + `-D INPUT -j WARDEN-QUARANTINE
-I INPUT 1 -j WARDEN-QUARANTINE
-D OUTPUT -j WARDEN-QUARANTINE
-D OUTPUT -j WARDEN-QUARANTINE
-I OUTPUT 1 -j WARDEN-QUARANTINE
COMMIT
`,
			wantRemove: `*filter
-D INPUT -j WARDEN-QUARANTINE
-D OUTPUT -j WARDEN-QUARANTINE
-D OUTPUT -j WARDEN-QUARANTINE
-D FORWARD -j WARDEN-QUARANTINE
-F WARDEN-QUARANTINE
-X WARDEN-QUARANTINE
COMMIT
`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ft := quarantineChain.parse(tc.table)
			if got := ft.inSync(want); got != tc.inSync {
				t.Errorf("inSync = %t, want %t", got, tc.inSync)
			}
			if got := string(ft.applyScript(want)); got != tc.wantApply {
				t.Errorf("applyScript:\n%s\nwant:\n%s", got, tc.wantApply)
			}
			if got := string(ft.removeScript()); got != tc.wantRemove {
				t.Errorf("removeScript:\n%s\nwant:\n%s", got, tc.wantRemove)
			}
		})
	}

	t.Run("in sync", func(t *testing.T) {
		table := "-N WARDEN-QUARANTINE\n-A INPUT -j WARDEN-QUARANTINE\n-A INPUT -p tcp -j ACCEPT\n-A FORWARD -j WARDEN-QUARANTINE\n-A OUTPUT -j WARDEN-QUARANTINE\n"
		for _, r := range want {
			table += r + "\n"
		}
		ft := quarantineChain.parse(table)
		if !ft.inSync(want) {
			t.Error("identical table not in sync")
		}
		if fs := ft.observeQuarantine(IPv4); !fs.Enforced() || fmt.Sprint(fs.Allowed) != "[198.19.0.0/24 203.0.113.7/32]" {
			t.Errorf("observe = %+v", fs)
		}
	})

	t.Run("ipv6 accepts neighbour discovery", func(t *testing.T) {
		rules := iptRules(IPv6, mustPrefixes("fd00:19::/64"))
		if !slices.Contains(rules, "-A WARDEN-QUARANTINE -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -j ACCEPT") {
			t.Errorf("no neighbour solicitation rule in %q", rules)
		}
		if slices.Contains(iptRules(IPv4, nil), ndRules()[0]) {
			t.Error("IPv4 chain carries an ICMPv6 rule")
		}
	})
}

package inventory

import (
	"strings"
	"testing"
	"time"
)

func valid() Inventory {
	return Inventory{
		Sites: []Site{{Name: "hq", TimeZone: "Asia/Tokyo"}, {Name: "dc", TimeZone: "Europe/Berlin", BusinessHours: BusinessHours{Start: "22:00", End: "06:00", Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}}}},
		Gateways: []Gateway{
			{ID: "gw-hq", Site: "hq", VM: "vm-hq", Hostname: "gw-hq.example.net", Addresses: []string{"198.51.100.1", "2001:db8::1"}, ManagementNetworks: []string{"192.0.2.0/28"}},
			{ID: "gw-dc", Site: "dc", Addresses: []string{"198.51.100.2"}, ManagementNetworks: []string{"192.0.2.0/28"}},
		},
		Tunnels: []Tunnel{{A: "gw-hq", B: "gw-dc", Kind: KindWireGuard}},
	}
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		mutate func(*Inventory)
		want   []string
	}{
		"valid":                 {func(*Inventory) {}, nil},
		"unknown site":          {func(i *Inventory) { i.Gateways[1].Site = "mars" }, []string{`site: unknown site "mars"`}},
		"duplicate address":     {func(i *Inventory) { i.Gateways[1].Addresses = []string{"2001:db8::1"} }, []string{"duplicate address 2001:db8::1", `"gw-hq"`}},
		"no management network": {func(i *Inventory) { i.Gateways[0].ManagementNetworks = nil }, []string{"gw-hq", "management network"}},
		"tunnel to unknown":     {func(i *Inventory) { i.Tunnels[0].B = "gw-x" }, []string{`tunnel to unknown gateway "gw-x"`}},
		"tunnel to itself":      {func(i *Inventory) { i.Tunnels[0].B = "gw-hq" }, []string{"two different gateways"}},
		"tunnel kind":           {func(i *Inventory) { i.Tunnels[0].Kind = "openvpn" }, []string{`unknown kind "openvpn"`}},
		"bad CIDR":              {func(i *Inventory) { i.Gateways[0].ManagementNetworks = []string{"10.0.0.0/33"} }, []string{"is not a CIDR"}},
		"bad address":           {func(i *Inventory) { i.Gateways[0].Addresses = []string{"gw.example"} }, []string{"is not an IP address"}},
		"duplicate gateway":     {func(i *Inventory) { i.Gateways[1].ID = "gw-hq" }, []string{`duplicate gateway "gw-hq"`}},
		"wildcard id":           {func(i *Inventory) { i.Gateways[1].ID = "gw-*" }, []string{"wildcards"}},
		"bad time zone":         {func(i *Inventory) { i.Sites[0].TimeZone = "Tokyo" }, []string{`unknown time zone "Tokyo"`}},
		"bad business hours":    {func(i *Inventory) { i.Sites[0].BusinessHours.Start = "9am" }, []string{"business_hours.start"}},
		"bad business day":      {func(i *Inventory) { i.Sites[0].BusinessHours.Days = []string{"funday"} }, []string{`unknown day "funday"`}},
		"wireguard ok": {func(i *Inventory) {
			i.Gateways[0].WireGuard = &WireGuardEnd{Device: "wg0", Endpoint: "198.51.100.1:51820", PublicKey: "4SZuxRKKKtgDSzyks7CiW3R/mEgn8Z/9UMe1FBP/STQ="}
		}, nil},
		"wireguard device":     {func(i *Inventory) { i.Gateways[0].WireGuard = &WireGuardEnd{Device: "wg 0"} }, []string{"wireguard.device"}},
		"wireguard endpoint":   {func(i *Inventory) { i.Gateways[0].WireGuard = &WireGuardEnd{Device: "wg0", Endpoint: "host:51820"} }, []string{"wireguard.endpoint"}},
		"wireguard public key": {func(i *Inventory) { i.Gateways[0].WireGuard = &WireGuardEnd{Device: "wg0", PublicKey: "abc"} }, []string{"wireguard.public_key"}},
		"strongswan identity":  {func(i *Inventory) { i.Gateways[0].StrongSwan = &StrongSwanEnd{} }, []string{"strongswan.identity: is required"}},
		"strongswan certificate ok": {func(i *Inventory) {
			i.Gateways[0].StrongSwan = &StrongSwanEnd{Identity: "gw-hq.example", Auth: AuthPubkey, CertificateSerial: "0a:1b:ff"}
		}, nil},
		"strongswan auth":       {func(i *Inventory) { i.Gateways[0].StrongSwan = &StrongSwanEnd{Identity: "x", Auth: "eap"} }, []string{"strongswan.auth"}},
		"certificate serial":    {func(i *Inventory) { i.Gateways[0].StrongSwan = &StrongSwanEnd{Identity: "x", Auth: AuthPubkey} }, []string{"strongswan.certificate_serial"}},
		"serial without pubkey": {func(i *Inventory) { i.Gateways[0].StrongSwan = &StrongSwanEnd{Identity: "x", CertificateSerial: "01"} }, []string{"only with auth pubkey"}},
		"management nics ok": {func(i *Inventory) {
			i.Gateways[0].ManagementNICs = []string{"Network adapter 2", "00:50:56:AA:BB:CC"}
			i.Gateways[0].ManagementPortgroup = "mgmt-only"
		}, nil},
		"management nic blank":     {func(i *Inventory) { i.Gateways[0].ManagementNICs = []string{" "} }, []string{"gw-hq", "management_nics", "empty"}},
		"management nic padded":    {func(i *Inventory) { i.Gateways[0].ManagementNICs = []string{"Network adapter 2 "} }, []string{"management_nics", "spaces"}},
		"management nic bad mac":   {func(i *Inventory) { i.Gateways[0].ManagementNICs = []string{"00:50:56:zz:bb:cc"} }, []string{"management_nics", `"00:50:56:zz:bb:cc" is not a 48-bit MAC`}},
		"management nic short mac": {func(i *Inventory) { i.Gateways[0].ManagementNICs = []string{"00:50:56:aa:bb"} }, []string{"is not a 48-bit MAC"}},
		"management nic eui64":     {func(i *Inventory) { i.Gateways[0].ManagementNICs = []string{"00:50:56:aa:bb:cc:dd:ee"} }, []string{"is not a 48-bit MAC"}},
		"management nic duplicate label": {func(i *Inventory) {
			i.Gateways[0].ManagementNICs = []string{"Network adapter 2", "network adapter 2"}
		}, []string{"management_nics", "listed twice"}},
		"management nic duplicate mac": {func(i *Inventory) {
			i.Gateways[0].ManagementNICs = []string{"00:50:56:aa:bb:cc", "00-50-56-AA-BB-CC"}
		}, []string{"mac 00:50:56:aa:bb:cc is listed twice"}},
		"management nics without vm":        {func(i *Inventory) { i.Gateways[1].ManagementNICs = []string{"Network adapter 1"} }, []string{"gw-dc", "no vm"}},
		"management portgroup without nics": {func(i *Inventory) { i.Gateways[0].ManagementPortgroup = "mgmt-only" }, []string{"management_portgroup: needs management_nics"}},
		"several problems named":            {func(i *Inventory) { i.Gateways[1].Site = ""; i.Tunnels[0].Kind = "" }, []string{"site: is required", "kind: is required"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inv := valid()
			tc.mutate(&inv)
			err := inv.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestBusinessHoursInSiteTimeZone(t *testing.T) {
	inv := valid()
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
	hq, _ := inv.Site("hq")
	dc, _ := inv.Site("dc")
	tests := map[string]struct {
		site Site
		at   time.Time
		want bool
	}{
		"10:00 JST Wednesday":        {hq, time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC), true},
		"02:00 JST is 17:00 UTC":     {hq, time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC), false},
		"18:00 JST end is exclusive": {hq, time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), false},
		"Saturday 10:00 JST":         {hq, time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC), false},
		"night shift 23:00 Berlin":   {dc, time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC), true},
		"night shift 12:00 Berlin":   {dc, time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC), false},
		"night shift 05:59 Berlin":   {dc, time.Date(2026, 11, 26, 4, 59, 0, 0, time.UTC), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.site.InBusinessHours(tc.at); got != tc.want {
				t.Fatalf("got %t, want %t", got, tc.want)
			}
		})
	}
}

func TestGatewayByHost(t *testing.T) {
	inv := valid()
	for host, want := range map[string]string{
		"gw-hq.example.net:9100": "gw-hq", "198.51.100.2:9100": "gw-dc", "[2001:db8::1]:9100": "gw-hq",
		"2001:db8::1": "gw-hq", "vm-hq": "gw-hq", "gw-dc": "gw-dc", "db1:9100": "",
	} {
		g, ok := inv.GatewayByHost(host)
		if (want == "") == ok || g.ID != want {
			t.Errorf("%s: got %q %t, want %q", host, g.ID, ok, want)
		}
	}
}

func TestNICRefMatches(t *testing.T) {
	tests := map[string]struct {
		ref        string
		label, mac string
		want       bool
	}{
		"label":                 {ref: "Network adapter 2", label: "Network adapter 2", mac: "00:50:56:00:00:02", want: true},
		"label any case":        {ref: "network ADAPTER 2", label: "Network adapter 2", want: true},
		"other label":           {ref: "Network adapter 2", label: "Network adapter 1", want: false},
		"mac":                   {ref: "00:50:56:aa:bb:cc", label: "Network adapter 1", mac: "00:50:56:AA:BB:CC", want: true},
		"mac dashes":            {ref: "00-50-56-aa-bb-cc", mac: "00:50:56:aa:bb:cc", want: true},
		"other mac":             {ref: "00:50:56:aa:bb:cc", mac: "00:50:56:aa:bb:cd", want: false},
		"mac never as label":    {ref: "00:50:56:aa:bb:cc", label: "00:50:56:aa:bb:cc", want: false},
		"nic without mac (yet)": {ref: "00:50:56:aa:bb:cc", label: "Network adapter 1", want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := ParseNICRef(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Matches(tc.label, tc.mac); got != tc.want {
				t.Fatalf("%s matches (%q, %q) = %t, want %t", r, tc.label, tc.mac, got, tc.want)
			}
		})
	}
}

// The indexes Validate builds answer what the scans answer, and look-ups
// still find what was added after Validate or in an inventory never
// validated.
func TestLookupsWithAndWithoutIndex(t *testing.T) {
	validated := valid()
	if err := validated.Validate(); err != nil {
		t.Fatal(err)
	}
	byHand := valid()
	for name, inv := range map[string]*Inventory{"validated": &validated, "built by hand": &byHand} {
		t.Run(name, func(t *testing.T) {
			if g, ok := inv.Gateway("gw-dc"); !ok || g.Site != "dc" {
				t.Fatalf("Gateway(gw-dc) = %+v, %v", g, ok)
			}
			if _, ok := inv.Gateway("gw-nowhere"); ok {
				t.Fatal("found a gateway that does not exist")
			}
			if s, ok := inv.Site("dc"); !ok || s.TimeZone != "Europe/Berlin" {
				t.Fatalf("Site(dc) = %+v, %v", s, ok)
			}
			if _, ok := inv.Site("nowhere"); ok {
				t.Fatal("found a site that does not exist")
			}
			if ts := inv.TunnelsOf("gw-dc"); len(ts) != 1 || ts[0].A != "gw-hq" {
				t.Fatalf("TunnelsOf(gw-dc) = %+v", ts)
			}
			inv.Sites = append(inv.Sites, Site{Name: "branch"})
			inv.Gateways = append(inv.Gateways, Gateway{ID: "gw-branch", Site: "branch"})
			inv.Tunnels = append(inv.Tunnels, Tunnel{A: "gw-branch", B: "gw-dc", Kind: KindWireGuard})
			if g, ok := inv.Gateway("gw-branch"); !ok || g.Site != "branch" {
				t.Fatalf("a gateway added after Validate: %+v, %v", g, ok)
			}
			if _, ok := inv.Site("branch"); !ok {
				t.Fatal("a site added after Validate is not found")
			}
			if ts := inv.TunnelsOf("gw-dc"); len(ts) != 2 {
				t.Fatalf("tunnels of gw-dc after adding one: %+v", ts)
			}
		})
	}
}

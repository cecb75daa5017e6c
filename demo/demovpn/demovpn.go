// Package demovpn is the demo's VPN as data: the inventory `warden demo`
// runs against and the report tests render. It is a package of its own so
// that tests of packages the demo imports (report) share it without an
// import cycle; it must not import anything but the inventory.
package demovpn

import "github.com/warden-ir/warden/inventory"

// Inventory is the demo VPN: HQ in Tokyo, a branch in Osaka, a data centre
// in Singapore, fully meshed. Addresses are documentation ranges.
func Inventory() inventory.Inventory {
	return inventory.Inventory{
		Sites: []inventory.Site{
			{Name: "hq", TimeZone: "Asia/Tokyo", Networks: []string{"10.10.0.0/16"}},
			{Name: "osaka", TimeZone: "Asia/Tokyo", Networks: []string{"10.20.0.0/16"}},
			{Name: "dc", TimeZone: "Asia/Singapore", Networks: []string{"10.30.0.0/16"}},
		},
		Gateways: []inventory.Gateway{
			{ID: "gw-hq", Site: "hq", VM: "gw-hq", Hostname: "gw-hq.example.net", Addresses: []string{"198.51.100.10", "2001:db8:10::1"}, ManagementNetworks: []string{"192.0.2.0/28"}},
			{ID: "gw-osaka", Site: "osaka", VM: "gw-osaka", Hostname: "gw-osaka.example.net", Addresses: []string{"198.51.100.20", "2001:db8:20::1"}, ManagementNetworks: []string{"192.0.2.0/28"}},
			{ID: "gw-dc", Site: "dc", VM: "gw-dc", Hostname: "gw-dc.example.net", Addresses: []string{"198.51.100.30", "2001:db8:30::1"}, ManagementNetworks: []string{"192.0.2.0/28"}},
		},
		Tunnels: []inventory.Tunnel{
			{Name: "hq-osaka", A: "gw-hq", B: "gw-osaka", Kind: inventory.KindWireGuard},
			{Name: "hq-dc", A: "gw-hq", B: "gw-dc", Kind: inventory.KindStrongSwan},
			{Name: "osaka-dc", A: "gw-osaka", B: "gw-dc", Kind: inventory.KindWireGuard},
		},
	}
}

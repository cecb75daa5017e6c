// Package inventory describes the VPN that Warden protects: sites, the
// gateways that terminate tunnels there, and the tunnels between them.
//
// It owns the inventory types, their validation and look-ups (by id, by
// address, by VM). It must not talk to any provider: it is data read from
// configuration.
package inventory

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Tunnel kinds.
const (
	KindWireGuard  = "wireguard"
	KindStrongSwan = "strongswan"
)

// BusinessHours are the local working hours of a site.
type BusinessHours struct {
	// Start and End as "HH:MM" in the site's time zone. End is exclusive.
	Start string `mapstructure:"start" json:"start" yaml:"start"`
	End   string `mapstructure:"end" json:"end" yaml:"end"`
	// Days as three-letter lower-case names; default mon..fri.
	Days []string `mapstructure:"days" json:"days,omitempty" yaml:"days,omitempty"`
}

// Site is a location with one gateway (or an HA pair) and its networks.
type Site struct {
	Name          string        `mapstructure:"name" json:"name" yaml:"name"`
	TimeZone      string        `mapstructure:"time_zone" json:"time_zone" yaml:"time_zone"`
	BusinessHours BusinessHours `mapstructure:"business_hours" json:"business_hours" yaml:"business_hours"`
	// Networks protected behind the site's gateway (CIDRs).
	Networks []string `mapstructure:"networks" json:"networks,omitempty" yaml:"networks,omitempty"`

	loc *time.Location
	// Parsed business hours, set by Validate so deciding does not parse
	// "HH:MM" on every indicator.
	bhStart, bhEnd time.Duration
	bhDays         [7]bool
	bhParsed       bool
}

// Gateway is a Linux VM that terminates tunnels for a site.
type Gateway struct {
	ID   string `mapstructure:"id" json:"id" yaml:"id"`
	Site string `mapstructure:"site" json:"site" yaml:"site"`
	// VM is the vSphere VM name or inventory path ("/DC0/vm/gw-hq").
	VM string `mapstructure:"vm" json:"vm,omitempty" yaml:"vm,omitempty"`
	// Hostname is used to match alerts by instance label.
	Hostname string `mapstructure:"hostname" json:"hostname,omitempty" yaml:"hostname,omitempty"`
	// Addresses the gateway owns (tunnel endpoints, LAN side).
	Addresses []string `mapstructure:"addresses" json:"addresses" yaml:"addresses"`
	// ManagementNetworks stay reachable through any quarantine.
	ManagementNetworks []string `mapstructure:"management_networks" json:"management_networks" yaml:"management_networks"`
	// ManagementNICs name the virtual NICs of VM that carry the
	// management path, each by device label ("Network adapter 2") or MAC
	// address ("00:50:56:aa:bb:cc"). vSphere isolation keeps them on
	// their network, connected, and quarantines every other NIC. Without
	// them, vSphere isolation moves every NIC and the agent becomes
	// unreachable until release.
	ManagementNICs []string `mapstructure:"management_nics" json:"management_nics,omitempty" yaml:"management_nics,omitempty"`
	// ManagementPortgroup, when set, is a management-only distributed
	// portgroup that isolation moves the ManagementNICs to instead of
	// leaving them where they are.
	ManagementPortgroup string `mapstructure:"management_portgroup" json:"management_portgroup,omitempty" yaml:"management_portgroup,omitempty"`
	// Agent is the URL of warden agent on the gateway, if any.
	Agent string `mapstructure:"agent" json:"agent,omitempty" yaml:"agent,omitempty"`
	// WireGuard describes the gateway's WireGuard device, when it
	// terminates WireGuard tunnels.
	WireGuard *WireGuardEnd `mapstructure:"wireguard" json:"wireguard,omitempty" yaml:"wireguard,omitempty"`
	// StrongSwan describes the gateway's IKE side, when it terminates
	// strongSwan tunnels.
	StrongSwan *StrongSwanEnd `mapstructure:"strongswan" json:"strongswan,omitempty" yaml:"strongswan,omitempty"`
}

// WireGuardEnd is a gateway's WireGuard device.
type WireGuardEnd struct {
	// Device is the interface name on the gateway ("wg0").
	Device string `mapstructure:"device" json:"device" yaml:"device"`
	// Endpoint is where peers reach the device ("203.0.113.1:51820").
	Endpoint string `mapstructure:"endpoint" json:"endpoint,omitempty" yaml:"endpoint,omitempty"`
	// PublicKey is the device's public key (base64) as recorded at
	// onboarding. Warden trusts this record, not the gateway, to know which
	// key to revoke at the peers when the gateway is compromised.
	PublicKey string `mapstructure:"public_key" json:"public_key,omitempty" yaml:"public_key,omitempty"`
}

// StrongSwanEnd is a gateway's IKE side. Its peers name their connection
// to it, and the ids of the shared keys they hold for it ("<id>/…"), after
// the gateway's id.
type StrongSwanEnd struct {
	// Identity is the gateway's IKE identity, an owner of its shared keys.
	Identity string `mapstructure:"identity" json:"identity" yaml:"identity"`
	// Auth is how the gateway authenticates: "psk" (default: a
	// pre-shared key per pair) or "pubkey" (an X.509 certificate under the
	// CA Warden signs revocation lists with; see credentials.ca_cert_file).
	Auth string `mapstructure:"auth" json:"auth,omitempty" yaml:"auth,omitempty"`
	// CertificateSerial is the serial number (hex) of the gateway's
	// certificate, recorded at onboarding; revoking the gateway puts it on
	// the CRL every peer loads. Required with auth pubkey.
	CertificateSerial string `mapstructure:"certificate_serial" json:"certificate_serial,omitempty" yaml:"certificate_serial,omitempty"`
}

// StrongSwan authentication methods.
const (
	AuthPSK    = "psk"
	AuthPubkey = "pubkey"
)

// UsesCertificate reports whether the gateway authenticates IKE with a
// certificate.
func (s *StrongSwanEnd) UsesCertificate() bool { return s != nil && s.Auth == AuthPubkey }

// Serial parses CertificateSerial (hex, colons and a 0x prefix allowed).
func (s *StrongSwanEnd) Serial() (*big.Int, bool) {
	if s == nil {
		return nil, false
	}
	n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ReplaceAll(s.CertificateSerial, ":", ""), "0x"), 16)
	return n, ok && n.Sign() > 0
}

// Tunnel is a pairwise link between two gateways.
type Tunnel struct {
	Name string `mapstructure:"name" json:"name,omitempty" yaml:"name,omitempty"`
	A    string `mapstructure:"a" json:"a" yaml:"a"`
	B    string `mapstructure:"b" json:"b" yaml:"b"`
	Kind string `mapstructure:"kind" json:"kind" yaml:"kind"`
}

// Inventory is the whole VPN.
type Inventory struct {
	Sites    []Site    `mapstructure:"sites" json:"sites" yaml:"sites"`
	Gateways []Gateway `mapstructure:"gateways" json:"gateways" yaml:"gateways"`
	Tunnels  []Tunnel  `mapstructure:"tunnels" json:"tunnels" yaml:"tunnels"`

	// Look-up indexes, built by Validate so that a decision over a fleet
	// of thousands of gateways does not scan (and copy) every gateway.
	// Look-ups check the entry they find and scan when the index does not
	// cover the lists (an inventory built by hand, or grown after
	// Validate); an inventory whose items are rewritten in place must be
	// validated again.
	gatewayAt map[string]int
	siteAt    map[string]int
	tunnelsAt map[string][]int
	tunnelsN  int
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Validate checks the inventory and prepares time zones. Every problem is
// reported, joined, each naming the item and field.
func (inv *Inventory) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	sites := map[string]bool{}
	for i := range inv.Sites {
		s := &inv.Sites[i]
		where := fmt.Sprintf("inventory.sites[%d]", i)
		if s.Name == "" {
			add("%s.name: is required", where)
			continue
		}
		where = fmt.Sprintf("inventory.sites[%d] (%s)", i, s.Name)
		if sites[s.Name] {
			add("%s.name: duplicate site %q", where, s.Name)
		}
		sites[s.Name] = true
		tz := s.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			add("%s.time_zone: unknown time zone %q", where, s.TimeZone)
		}
		s.loc = loc
		bh := &s.BusinessHours
		if bh.Start == "" && bh.End == "" {
			bh.Start, bh.End = "09:00", "18:00"
		}
		if len(bh.Days) == 0 {
			bh.Days = []string{"mon", "tue", "wed", "thu", "fri"}
		}
		if _, err := parseClock(bh.Start); err != nil {
			add("%s.business_hours.start: %v", where, err)
		}
		if _, err := parseClock(bh.End); err != nil {
			add("%s.business_hours.end: %v", where, err)
		}
		for _, d := range bh.Days {
			if wd, ok := dayNames[strings.ToLower(d)]; !ok {
				add("%s.business_hours.days: unknown day %q (use mon..sun)", where, d)
			} else {
				s.bhDays[wd] = true
			}
		}
		if st, err1 := parseClock(bh.Start); err1 == nil {
			if en, err2 := parseClock(bh.End); err2 == nil {
				s.bhStart, s.bhEnd, s.bhParsed = st, en, true
			}
		}
		for _, n := range s.Networks {
			if _, err := netip.ParsePrefix(n); err != nil {
				add("%s.networks: %q is not a CIDR", where, n)
			}
		}
	}

	gws := map[string]bool{}
	addrOwner := map[netip.Addr]string{}
	for i := range inv.Gateways {
		g := &inv.Gateways[i]
		where := fmt.Sprintf("inventory.gateways[%d]", i)
		if g.ID == "" {
			add("%s.id: is required", where)
			continue
		}
		if strings.ContainsAny(g.ID, "*? /") {
			add("%s.id: %q must not contain wildcards, spaces or slashes", where, g.ID)
		}
		where = fmt.Sprintf("inventory.gateways[%d] (%s)", i, g.ID)
		if gws[g.ID] {
			add("%s.id: duplicate gateway %q", where, g.ID)
		}
		gws[g.ID] = true
		if g.Site == "" {
			add("%s.site: is required", where)
		} else if !sites[g.Site] {
			add("%s.site: unknown site %q", where, g.Site)
		}
		for _, a := range g.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				add("%s.addresses: %q is not an IP address", where, a)
				continue
			}
			if other, ok := addrOwner[ip]; ok {
				add("%s.addresses: duplicate address %s (also on gateway %q)", where, a, other)
				continue
			}
			addrOwner[ip] = g.ID
		}
		if len(g.ManagementNetworks) == 0 {
			add("%s.management_networks: a gateway needs at least one management network, or isolating it would lock responders out", where)
		}
		for _, n := range g.ManagementNetworks {
			if _, err := netip.ParsePrefix(n); err != nil {
				add("%s.management_networks: %q is not a CIDR", where, n)
			}
		}
		errs = append(errs, validateManagementNICs(where, *g)...)
		if wg := g.WireGuard; wg != nil {
			if wg.Device == "" || len(wg.Device) > 15 || strings.ContainsAny(wg.Device, "/ \t\n") {
				add("%s.wireguard.device: %q is not an interface name", where, wg.Device)
			}
			if _, err := netip.ParseAddrPort(wg.Endpoint); wg.Endpoint != "" && err != nil {
				add("%s.wireguard.endpoint: %q is not an address:port", where, wg.Endpoint)
			}
			if k, err := base64.StdEncoding.DecodeString(wg.PublicKey); wg.PublicKey != "" && (err != nil || len(k) != 32) {
				add("%s.wireguard.public_key: not a base64 WireGuard key", where)
			}
		}
		if ss := g.StrongSwan; ss != nil {
			if ss.Identity == "" {
				add("%s.strongswan.identity: is required", where)
			}
			switch ss.Auth {
			case "", AuthPSK:
				if ss.CertificateSerial != "" {
					add("%s.strongswan.certificate_serial: only with auth pubkey", where)
				}
			case AuthPubkey:
				if _, ok := ss.Serial(); !ok {
					add("%s.strongswan.certificate_serial: %q is not a positive hex serial number (required with auth pubkey)", where, ss.CertificateSerial)
				}
			default:
				add("%s.strongswan.auth: %q is not psk or pubkey", where, ss.Auth)
			}
		}
	}

	for i, t := range inv.Tunnels {
		where := fmt.Sprintf("inventory.tunnels[%d]", i)
		if t.Name != "" {
			where += " (" + t.Name + ")"
		}
		if t.A == "" || t.B == "" {
			add("%s: both ends a and b are required", where)
		}
		if t.A != "" && !gws[t.A] {
			add("%s.a: tunnel to unknown gateway %q", where, t.A)
		}
		if t.B != "" && !gws[t.B] {
			add("%s.b: tunnel to unknown gateway %q", where, t.B)
		}
		if t.A != "" && t.A == t.B {
			add("%s: a tunnel needs two different gateways, both ends are %q", where, t.A)
		}
		switch t.Kind {
		case KindWireGuard, KindStrongSwan:
		case "":
			add("%s.kind: is required (wireguard or strongswan)", where)
		default:
			add("%s.kind: unknown kind %q (wireguard or strongswan)", where, t.Kind)
		}
	}
	inv.index()
	return errors.Join(errs...)
}

// index builds the look-up indexes (the first of duplicates wins, as the
// scans do).
func (inv *Inventory) index() {
	inv.gatewayAt = make(map[string]int, len(inv.Gateways))
	for i, g := range inv.Gateways {
		if _, dup := inv.gatewayAt[g.ID]; !dup {
			inv.gatewayAt[g.ID] = i
		}
	}
	inv.siteAt = make(map[string]int, len(inv.Sites))
	for i, s := range inv.Sites {
		if _, dup := inv.siteAt[s.Name]; !dup {
			inv.siteAt[s.Name] = i
		}
	}
	inv.tunnelsAt, inv.tunnelsN = make(map[string][]int), len(inv.Tunnels)
	for i, t := range inv.Tunnels {
		inv.tunnelsAt[t.A] = append(inv.tunnelsAt[t.A], i)
		if t.B != t.A {
			inv.tunnelsAt[t.B] = append(inv.tunnelsAt[t.B], i)
		}
	}
}

// NICRef names one virtual NIC of a gateway's VM: by MAC address when MAC
// is set, else by device label.
type NICRef struct {
	Label string
	MAC   net.HardwareAddr
}

// ParseNICRef reads an entry of management_nics. An entry with a colon, or
// one that parses as a MAC address, is a MAC address and must be a 48-bit
// one (vSphere's); anything else is a device label, which must not be
// blank or padded with spaces.
func ParseNICRef(s string) (NICRef, error) {
	if mac, err := net.ParseMAC(s); err == nil || strings.Contains(s, ":") {
		if err != nil || len(mac) != 6 {
			return NICRef{}, fmt.Errorf("%q is not a 48-bit MAC address", s)
		}
		return NICRef{MAC: mac}, nil
	}
	if strings.TrimSpace(s) == "" {
		return NICRef{}, errors.New("an empty entry names no nic")
	}
	if strings.TrimSpace(s) != s {
		return NICRef{}, fmt.Errorf("label %q has leading or trailing spaces", s)
	}
	return NICRef{Label: s}, nil
}

// Matches reports whether a NIC with this label and MAC is the one r
// names. Labels compare case-insensitively, as people type them; MACs by
// value, whatever their notation.
func (r NICRef) Matches(label, mac string) bool {
	if r.MAC != nil {
		m, err := net.ParseMAC(mac)
		return err == nil && m.String() == r.MAC.String()
	}
	return strings.EqualFold(r.Label, label)
}

// String names the reference for messages.
func (r NICRef) String() string {
	if r.MAC != nil {
		return "mac " + r.MAC.String()
	}
	return fmt.Sprintf("%q", r.Label)
}

// key identifies what r names, for duplicate detection.
func (r NICRef) key() string {
	if r.MAC != nil {
		return "mac " + r.MAC.String()
	}
	return "label " + strings.ToLower(r.Label)
}

func validateManagementNICs(where string, g Gateway) []error {
	var errs []error
	seen := map[string]bool{}
	for _, s := range g.ManagementNICs {
		r, err := ParseNICRef(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.management_nics: %w", where, err))
			continue
		}
		if seen[r.key()] {
			errs = append(errs, fmt.Errorf("%s.management_nics: %s is listed twice", where, r))
		}
		seen[r.key()] = true
	}
	if len(g.ManagementNICs) > 0 && g.VM == "" {
		errs = append(errs, fmt.Errorf("%s.management_nics: names nics of a vm, but the gateway has no vm", where))
	}
	if g.ManagementPortgroup != "" && len(g.ManagementNICs) == 0 {
		errs = append(errs, fmt.Errorf("%s.management_portgroup: needs management_nics to say which nics move there", where))
	}
	if p := g.ManagementPortgroup; p != "" && strings.TrimSpace(p) != p {
		errs = append(errs, fmt.Errorf("%s.management_portgroup: %q has leading or trailing spaces", where, p))
	}
	return errs
}

func parseClock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// Gateway returns the gateway with the given id.
func (inv *Inventory) Gateway(id string) (Gateway, bool) {
	if i, ok := inv.gatewayAt[id]; ok && i < len(inv.Gateways) && inv.Gateways[i].ID == id && len(inv.gatewayAt) == len(inv.Gateways) {
		return inv.Gateways[i], true
	}
	for i := range inv.Gateways {
		if inv.Gateways[i].ID == id {
			return inv.Gateways[i], true
		}
	}
	return Gateway{}, false
}

// Site returns the site with the given name.
func (inv *Inventory) Site(name string) (Site, bool) {
	if i, ok := inv.siteAt[name]; ok && i < len(inv.Sites) && inv.Sites[i].Name == name && len(inv.siteAt) == len(inv.Sites) {
		return inv.Sites[i], true
	}
	for i := range inv.Sites {
		if inv.Sites[i].Name == name {
			return inv.Sites[i], true
		}
	}
	return Site{}, false
}

// GatewayByHost finds a gateway by hostname, VM name, id or address. The host
// may carry a ":port" suffix as Prometheus instance labels do.
func (inv *Inventory) GatewayByHost(host string) (Gateway, bool) {
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.Contains(host, "]") && strings.Count(host, ":") == 1 {
		host = h
	}
	if ap, err := netip.ParseAddrPort(host); err == nil {
		host = ap.Addr().String()
	}
	host = strings.Trim(host, "[]")
	for _, g := range inv.Gateways {
		if g.ID == host || (g.Hostname != "" && g.Hostname == host) || (g.VM != "" && g.VM == host) {
			return g, true
		}
		for _, a := range g.Addresses {
			if a == host {
				return g, true
			}
		}
	}
	return Gateway{}, false
}

// GatewaysAtSite lists the gateways of a site, sorted by id.
func (inv *Inventory) GatewaysAtSite(site string) []Gateway {
	var out []Gateway
	for _, g := range inv.Gateways {
		if g.Site == site {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// TunnelsOf lists the tunnels that have gw at one end.
func (inv *Inventory) TunnelsOf(gw string) []Tunnel {
	var out []Tunnel
	if inv.tunnelsAt != nil && inv.tunnelsN == len(inv.Tunnels) {
		for _, i := range inv.tunnelsAt[gw] {
			if t := &inv.Tunnels[i]; t.A == gw || t.B == gw {
				out = append(out, *t)
			}
		}
		return out
	}
	for i := range inv.Tunnels {
		if t := &inv.Tunnels[i]; t.A == gw || t.B == gw {
			out = append(out, *t)
		}
	}
	return out
}

// Peer returns the other end of t as seen from gw.
func (t Tunnel) Peer(gw string) string {
	if t.A == gw {
		return t.B
	}
	return t.A
}

// Location returns the site's time zone (UTC if unset or not validated).
func (s Site) Location() *time.Location {
	if s.loc != nil {
		return s.loc
	}
	if l, err := time.LoadLocation(s.TimeZone); err == nil && s.TimeZone != "" {
		return l
	}
	return time.UTC
}

// InBusinessHours reports whether t falls within the site's business hours,
// in the site's own time zone.
func (s Site) InBusinessHours(t time.Time) bool {
	lt := t.In(s.Location())
	if s.bhParsed {
		if !s.bhDays[lt.Weekday()] {
			return false
		}
		return inWindow(lt, s.bhStart, s.bhEnd)
	}
	bh := s.BusinessHours
	days := bh.Days
	if len(days) == 0 {
		days = []string{"mon", "tue", "wed", "thu", "fri"}
	}
	okDay := false
	for _, d := range days {
		if wd, ok := dayNames[strings.ToLower(d)]; ok && wd == lt.Weekday() {
			okDay = true
		}
	}
	if !okDay {
		return false
	}
	start, err1 := parseClock(orDefault(bh.Start, "09:00"))
	end, err2 := parseClock(orDefault(bh.End, "18:00"))
	if err1 != nil || err2 != nil {
		return false
	}
	return inWindow(lt, start, end)
}

func inWindow(lt time.Time, start, end time.Duration) bool {
	since := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute
	if start <= end {
		return since >= start && since < end
	}
	return since >= start || since < end // overnight shift
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

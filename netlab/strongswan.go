package netlab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/strongswan/govici/vici"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CharonPath is where Debian's strongswan-charon installs the IKE daemon.
const CharonPath = "/usr/lib/ipsec/charon"

// kernelLibipsecPlugin is what libcharon-extra-plugins installs for a
// userspace ESP data plane (this kernel has no ESP).
const kernelLibipsecPlugin = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"

// StrongSwanChild is the name of the one CHILD SA of every mesh tunnel.
const StrongSwanChild = "lan"

// StrongSwanOptions describe a strongSwan mesh.
type StrongSwanOptions struct {
	// Sites joined by the mesh (default: every site of the lab).
	Sites []string
	// Dir holds each site's strongswan.conf, VICI socket and charon log
	// (in tests: t.TempDir()). Required.
	Dir string
	// Certificates makes every site authenticate with an RSA certificate
	// issued by a lab CA (see StrongSwanMesh.CA) instead of a PSK: no
	// shared key is loaded, and charon checks peers against any CRL loaded
	// later over VICI (load-cert, type X509_CRL).
	Certificates bool
}

// StrongSwanSite is one site's charon.
type StrongSwanSite struct {
	Site string
	// Socket is the VICI socket's path; any namespace can use it.
	Socket string
	// Identity is the site's IKE identity (an FQDN).
	Identity string
	// Address is the gateway's WAN address, where IKE runs.
	Address netip.Addr
	// Networks are the site's LAN prefixes (its traffic selectors).
	Networks []netip.Prefix
	// Log is charon's log file.
	Log string
}

// StrongSwanMesh is a full mesh of IKEv2 tunnels between site gateways:
// one charon per gateway namespace, each with a private /run, its own
// strongswan.conf and VICI socket, make-before-break reauthentication, and
// kernel-libipsec for an ESP data plane in userspace (a TUN device ipsec0
// and routes in table 220, which charon installs itself).
//
// Conventions the strongSwan provider relies on: at site S the connection to
// peer P is named P, its CHILD SA is StrongSwanChild, and every shared key
// of that tunnel has an id starting with "P/". The lexically lower site of
// a pair initiates. Close stops every charon; the lab's Close does too.
//
// With StrongSwanOptions.Certificates the names are the same, but sites
// authenticate with certificates under one lab CA (CA, Certificate): each
// charon holds the CA (as a trust anchor), its own certificate and private
// key, all loaded over VICI, and no shared key.
type StrongSwanMesh struct {
	mesh[StrongSwanSite]
	psks map[[2]string][]byte
	pki  *labPKI // nil for a PSK mesh
}

// StrongSwanMesh starts charon in every chosen site's gateway namespace,
// loads a connection to every other site over VICI (PSK, or certificates
// with opt.Certificates), and establishes every tunnel (CHILD SAs
// installed). Needs the Debian packages
// strongswan-charon and libcharon-extra-plugins (see StrongSwanAvailable).
func (l *Lab) StrongSwanMesh(ctx context.Context, opt StrongSwanOptions) (*StrongSwanMesh, error) {
	if opt.Dir == "" {
		return nil, errors.New("starting strongSwan mesh: options need a Dir")
	}
	names := l.meshSiteNames(opt.Sites)
	m := &StrongSwanMesh{psks: map[[2]string][]byte{}}
	l.onClose(m.Close)
	for _, name := range names {
		s, ok := l.Site(name)
		if !ok {
			return nil, errors.Join(fmt.Errorf("starting strongSwan mesh: unknown site %q", name), m.Close())
		}
		dir := filepath.Join(opt.Dir, "strongswan-"+name)
		m.add(name, StrongSwanSite{
			Site:     name,
			Socket:   filepath.Join(dir, "charon.vici"),
			Identity: name + ".gw." + l.prefix + ".test",
			Address:  s.Gateway.V4,
			Networks: []netip.Prefix{s.Prefix4, s.Prefix6},
			Log:      filepath.Join(dir, "charon.log"),
		})
	}
	if opt.Certificates {
		ids := map[string]string{}
		for _, n := range m.order {
			ids[n] = m.sites[n].Identity
		}
		pki, err := newLabPKI(l.prefix, ids, time.Now())
		if err != nil {
			return nil, errors.Join(fmt.Errorf("starting strongSwan mesh: %w", err), m.Close())
		}
		m.pki = pki
	} else {
		for _, p := range sitePairs(names) {
			m.psks[p] = []byte(rand.Text()) // 26 base32 characters, 130 bits
		}
	}
	if err := m.start(ctx, l); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	return m, nil
}

func (m *StrongSwanMesh) start(ctx context.Context, l *Lab) error {
	for _, name := range m.order {
		ss := m.sites[name]
		site, _ := l.Site(name)
		dir := filepath.Dir(ss.Socket)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		_ = os.Remove(ss.Socket)
		conf := filepath.Join(dir, "strongswan.conf")
		if err := os.WriteFile(conf, []byte(charonConf(ss)), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", conf, err)
		}
		out := &syncBuffer{}
		d, err := startDaemon(daemonSpec{
			name:       "charon " + name,
			ns:         site.Gateway.NS,
			argv:       []string{CharonPath},
			env:        []string{"STRONGSWAN_CONF=" + conf, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
			privateRun: true,
			output:     out,
		})
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.started(name, d)
		m.mu.Unlock()
		if err := waitForSocket(ctx, d, ss.Socket, 15*time.Second); err != nil {
			return fmt.Errorf("%w; output: %s", err, out.String())
		}
	}
	for _, name := range m.order {
		if err := m.blockPlaintext(l, name); err != nil {
			return err
		}
		if err := m.loadSite(ctx, name); err != nil {
			return err
		}
	}
	for _, p := range sitePairs(m.order) {
		if err := m.Initiate(ctx, p[0], p[1]); err != nil {
			return fmt.Errorf("establishing %s <-> %s: %w", p[0], p[1], err)
		}
	}
	return nil
}

// charonConf is a site's strongswan.conf. The plugins are listed
// explicitly, rather than taken from Debian's /etc/strongswan.d (which with
// libcharon-extra-plugins loads dhcp, farp, eap-radius and more), so a lab
// charon does only what the mesh needs: IKEv2 with MODP and AES-CBC/SHA2
// (no x25519 or GCM plugin is installed), PSK or RSA certificates (gmp does
// RSA; x509, pkcs1 and pkcs8 parse; constraints and revocation check chains
// and loaded CRLs; mgf1 serves RSA-PSS), VICI, and kernel-libipsec. The
// certificate plugins are loaded in PSK meshes too, where they are idle.
func charonConf(s StrongSwanSite) string {
	return `charon {
  load = random nonce drbg aes sha1 sha2 mgf1 hmac kdf gmp x509 revocation constraints pem pkcs1 pkcs8 pubkey kernel-libipsec kernel-netlink socket-default vici
  make_before_break = yes
  install_routes = yes
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  plugins {
    vici {
      socket = unix://` + s.Socket + `
    }
  }
  filelog {
    lab {
      path = ` + s.Log + `
      time_format = %T
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
    }
  }
}
`
}

// blockPlaintext makes a gateway drop traffic for the other sites' LANs
// unless an IPsec SA carries it: the lab's internet routes every LAN in
// clear, a real one does not. charon's routes in table 220 (consulted
// first, rule priority 220) send that traffic into ipsec0 while a CHILD SA
// is up; without one, these unreachable routes in the main table apply.
func (m *StrongSwanMesh) blockPlaintext(l *Lab, name string) error {
	site, _ := l.Site(name)
	return Do(site.Gateway.NS, func() error {
		for _, peer := range m.order {
			if peer == name {
				continue
			}
			for _, p := range m.sites[peer].Networks {
				r := &netlink.Route{Dst: ipNet(p), Type: unix.RTN_UNREACHABLE}
				if err := netlink.RouteReplace(r); err != nil {
					return fmt.Errorf("adding an unreachable route for %s at %s: %w", p, name, err)
				}
			}
		}
		return nil
	})
}

// loadSite loads name's credentials and a connection to every peer: in
// certificate mode the CA, the site's certificate and key once; in PSK
// mode the pair's initial key (id "<peer>/lab") with each connection.
func (m *StrongSwanMesh) loadSite(ctx context.Context, name string) error {
	ss := m.sites[name]
	s, err := vici.NewSession(vici.WithSocketPath(ss.Socket))
	if err != nil {
		return fmt.Errorf("connecting to charon of %s: %w", name, err)
	}
	defer s.Close()
	if m.pki != nil {
		for _, c := range m.credentialMessages(name) {
			if err := callVICI(ctx, s, c); err != nil {
				return fmt.Errorf("loading %s at %s: %w", c.what, name, err)
			}
		}
	}
	for _, peer := range m.order {
		if peer == name {
			continue
		}
		if err := m.loadConnection(ctx, s, name, peer); err != nil {
			return err
		}
		if m.pki != nil {
			continue
		}
		key := viciCommand{what: "the shared key for " + peer, cmd: "load-shared", msg: map[string]any{
			"id":     peer + "/lab",
			"type":   "IKE",
			"data":   string(m.psks[pairKey(name, peer)]),
			"owners": []string{ss.Identity, m.sites[peer].Identity},
		}}
		if err := callVICI(ctx, s, key); err != nil {
			return fmt.Errorf("loading %s at %s: %w", key.what, name, err)
		}
	}
	return nil
}

// LoadConnection (re)loads site's connection to peer exactly as the mesh
// loaded it at start (load-conn replaces a connection of the same name).
// It loads no credential: in PSK mode the pair's key is whatever the
// provider left (a revoked pair's was unloaded), in certificate mode the
// CA, certificate and key loaded at start stay in charon, together with
// any CRL. Tests use it to show that a re-added connection still cannot
// authenticate a revoked peer. It is idempotent.
func (m *StrongSwanMesh) LoadConnection(ctx context.Context, site, peer string) error {
	ss, ok := m.sites[site]
	if !ok {
		return fmt.Errorf("loading a connection at unknown site %q", site)
	}
	if _, ok := m.sites[peer]; !ok || peer == site {
		return fmt.Errorf("loading a connection at %s to %q: not another site of the mesh", site, peer)
	}
	s, err := vici.NewSession(vici.WithSocketPath(ss.Socket))
	if err != nil {
		return fmt.Errorf("connecting to charon of %s: %w", site, err)
	}
	defer s.Close()
	return m.loadConnection(ctx, s, site, peer)
}

// loadConnection loads site's connection to peer, named peer, with the one
// CHILD SA StrongSwanChild between their LANs.
func (m *StrongSwanMesh) loadConnection(ctx context.Context, s *vici.Session, site, peer string) error {
	ss, ps := m.sites[site], m.sites[peer]
	local, remote := m.authSections(site, peer)
	conn := viciCommand{what: "connection " + peer, cmd: "load-conn", msg: map[string]any{
		peer: map[string]any{
			"version":      "2",
			"local_addrs":  []string{ss.Address.String()},
			"remote_addrs": []string{ps.Address.String()},
			"proposals":    []string{"aes128-sha256-modp2048"},
			"dpd_delay":    "5s",
			"local":        local,
			"remote":       remote,
			"children": map[string]any{
				StrongSwanChild: map[string]any{
					"local_ts":      prefixStrings(ss.Networks),
					"remote_ts":     prefixStrings(ps.Networks),
					"esp_proposals": []string{"aes128-sha256"},
					"start_action":  "none",
				},
			},
		},
	}}
	if err := callVICI(ctx, s, conn); err != nil {
		return fmt.Errorf("loading %s at %s: %w", conn.what, site, err)
	}
	return nil
}

// callVICI sends one command. Its errors name the command (and charon's
// errmsg), never the arguments, which may hold a key.
func callVICI(ctx context.Context, s *vici.Session, c viciCommand) error {
	msg, err := vici.MarshalMessage(c.msg)
	if err != nil {
		return fmt.Errorf("building the %s message: %w", c.cmd, err)
	}
	if _, err := s.Call(ctx, c.cmd, msg); err != nil {
		return fmt.Errorf("%s: %w", c.cmd, err)
	}
	return nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// Initiate asks from's charon to establish the tunnel to peer (IKE SA and
// CHILD SA) and returns once it is up, or charon's error. That error only
// says "establishing CHILD_SA 'lan' failed"; why (AUTHENTICATION_FAILED, a
// revoked certificate) is in the charon logs (Log). If the tunnel is
// already up, charon reuses its IKE SA, refuses a duplicate CHILD SA and
// Initiate fails without anyone authenticating: delete the IKE SAs at both
// ends first when a failure must prove something. Tests use it to show a
// revoked gateway can no longer authenticate.
func (m *StrongSwanMesh) Initiate(ctx context.Context, from, peer string) error {
	ss, ok := m.sites[from]
	if !ok {
		return fmt.Errorf("initiating from unknown site %q", from)
	}
	s, err := vici.NewSession(vici.WithSocketPath(ss.Socket))
	if err != nil {
		return fmt.Errorf("connecting to charon of %s: %w", from, err)
	}
	defer s.Close()
	in, err := vici.MarshalMessage(map[string]any{
		"child":   StrongSwanChild,
		"ike":     peer,
		"timeout": "10000",
	})
	if err != nil {
		return err
	}
	if _, err := s.Call(ctx, "initiate", in); err != nil {
		return fmt.Errorf("initiating %s -> %s: %w", from, peer, err)
	}
	return nil
}

// PresharedKey returns the pair's initial PSK (loaded under id "<peer>/lab"
// at both ends); false in a certificate mesh, which has none. It is a
// secret: tests use it to seed a credential store and to check it never
// leaks.
func (m *StrongSwanMesh) PresharedKey(a, b string) ([]byte, bool) {
	k, ok := m.psks[pairKey(a, b)]
	return k, ok
}

// Log returns a site's charon log (for failing tests, and for tests that
// must show why charon refused a peer). charon flushes every line
// (flush_line), so the log holds all charon wrote before the call.
func (m *StrongSwanMesh) Log(site string) string {
	b, err := os.ReadFile(m.sites[site].Log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Close stops every charon of the mesh and removes their sockets. It is
// idempotent.
func (m *StrongSwanMesh) Close() error {
	return m.stop(5*time.Second, func(s StrongSwanSite) string { return s.Socket })
}

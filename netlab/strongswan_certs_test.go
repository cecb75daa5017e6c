package netlab

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"
)

func TestLabPKI(t *testing.T) {
	now := time.Now()
	ids := map[string]string{"a": "a.gw.p.test", "b": "b.gw.p.test", "c": "c.gw.p.test"}
	p, err := newLabPKI("p", ids, now)
	if err != nil {
		t.Fatalf("newLabPKI: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	serials := map[string]string{p.ca.SerialNumber.String(): "the CA"}
	for site := range ids {
		c := p.certs[site]
		if prev, dup := serials[c.SerialNumber.String()]; dup {
			t.Errorf("site %s has the serial of %s", site, prev)
		}
		serials[c.SerialNumber.String()] = "site " + site
	}

	checks := map[string]func(site, id string, c *x509.Certificate) error{
		"subject CN is the identity": func(_, id string, c *x509.Certificate) error {
			if c.Subject.CommonName != id {
				return fmt.Errorf("CN = %q, want %q", c.Subject.CommonName, id)
			}
			return nil
		},
		"only DNS SAN is the identity": func(_, id string, c *x509.Certificate) error {
			if !slices.Equal(c.DNSNames, []string{id}) || len(c.IPAddresses)+len(c.EmailAddresses)+len(c.URIs) != 0 {
				return fmt.Errorf("SANs = %v %v %v %v, want DNS %s only", c.DNSNames, c.IPAddresses, c.EmailAddresses, c.URIs, id)
			}
			return nil
		},
		"chains to the CA for the identity": func(_, id string, c *x509.Certificate) error {
			_, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: id, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		},
		"valid for a day from now": func(_, _ string, c *x509.Certificate) error {
			if now.Before(c.NotBefore) || c.NotAfter.Before(now.Add(24*time.Hour-time.Second)) || c.NotAfter.After(now.Add(24*time.Hour)) {
				return fmt.Errorf("valid %s to %s, want from before %s for a day", c.NotBefore, c.NotAfter, now)
			}
			return nil
		},
		"RSA 2048 key matching the site's": func(site, _ string, c *x509.Certificate) error {
			pub, ok := c.PublicKey.(*rsa.PublicKey)
			if !ok || pub.N.BitLen() != 2048 || !pub.Equal(&p.keys[site].PublicKey) {
				return fmt.Errorf("public key %T is not the site's RSA 2048 key", c.PublicKey)
			}
			return nil
		},
		"not a CA": func(_, _ string, c *x509.Certificate) error {
			if c.IsCA {
				return errors.New("site certificate is a CA")
			}
			return nil
		},
	}
	for name, check := range checks {
		t.Run(name, func(t *testing.T) {
			for site, id := range ids {
				if err := check(site, id, p.certs[site]); err != nil {
					t.Errorf("site %s: %v", site, err)
				}
			}
		})
	}

	// charon finds the CRLs of a CA by the CA's subject key identifier,
	// matched against the CRL's authority key identifier.
	t.Run("CRL names the CA by its key id", func(t *testing.T) {
		der := revocationList(t, p.ca, p.caKey, p.certs["a"].SerialNumber)
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(p.ca); err != nil {
			t.Errorf("CRL signature: %v", err)
		}
		if len(p.ca.SubjectKeyId) == 0 || !bytes.Equal(crl.AuthorityKeyId, p.ca.SubjectKeyId) {
			t.Errorf("CRL authority key id = %x, want the CA's subject key id %x", crl.AuthorityKeyId, p.ca.SubjectKeyId)
		}
	})
}

// revocationList is a CRL of the lab CA, number 1, valid from a minute ago
// for an hour, revoking serial.
func revocationList(t *testing.T, ca *x509.Certificate, signer crypto.Signer, serial *big.Int) []byte {
	t.Helper()
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: serial, RevocationTime: now.Add(-time.Minute)}},
		Number:                    big.NewInt(1),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(time.Hour),
	}, ca, signer)
	if err != nil {
		t.Fatalf("CreateRevocationList: %v", err)
	}
	return der
}

// strongSwanMesh builds a lab and a strongSwan mesh over all its sites,
// both torn down when the test ends.
func strongSwanMesh(t *testing.T, prefix string, certificates bool, sites ...string) (*Lab, *StrongSwanMesh) {
	t.Helper()
	skipStrongSwan(t)
	lab := newLab(t, prefix, sites...)
	m, err := lab.StrongSwanMesh(t.Context(), StrongSwanOptions{Dir: t.TempDir(), Certificates: certificates})
	if err != nil {
		t.Fatalf("StrongSwanMesh: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range sites {
				t.Logf("charon log of %s:\n%s", s, m.Log(s))
			}
		}
	})
	for _, s := range sites {
		site, _ := lab.Site(s)
		serve(t, lab, site.LAN.NS)
	}
	return lab, m
}

// lanEcho sends a UDP echo from from's LAN host to to's, over IPv4 and
// IPv6, and returns the first failure.
func lanEcho(t *testing.T, lab *Lab, from, to string, timeout time.Duration) error {
	t.Helper()
	f, _ := lab.Site(from)
	d, _ := lab.Site(to)
	for _, a := range d.LAN.Addrs() {
		if err := lab.UDPEcho(t.Context(), f.LAN.NS, netip.AddrPortFrom(a, echoPort), timeout); err != nil {
			return err
		}
	}
	return nil
}

// viciSession opens a session to a site's charon and marshals in for it;
// the caller closes the session.
func viciSession(ss StrongSwanSite, in map[string]any) (*vici.Session, *vici.Message, error) {
	msg, err := vici.MarshalMessage(in)
	if err != nil {
		return nil, nil, err
	}
	s, err := vici.NewSession(vici.WithSocketPath(ss.Socket))
	if err != nil {
		return nil, nil, err
	}
	return s, msg, nil
}

// viciCall sends one command to a site's charon.
func viciCall(ctx context.Context, ss StrongSwanSite, cmd string, in map[string]any) (*vici.Message, error) {
	s, msg, err := viciSession(ss, in)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Call(ctx, cmd, msg)
}

// viciStream sends a streaming command (list-certs, list-sas) and returns
// its events. It subscribes with a large buffer rather than use govici's
// CallStreaming (see providers/strongswan): once Call returns, every event
// of the command is in the buffer.
func viciStream(ctx context.Context, ss StrongSwanSite, cmd, event string, in map[string]any) ([]*vici.Message, error) {
	s, msg, err := viciSession(ss, in)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	events := make(chan vici.Event, 1024)
	s.NotifyEvents(events)
	if err := s.Subscribe(event); err != nil {
		return nil, err
	}
	if _, err := s.Call(ctx, cmd, msg); err != nil {
		return nil, err
	}
	var out []*vici.Message
	for {
		select {
		case ev := <-events:
			if ev.Name == event && ev.Message != nil {
				out = append(out, ev.Message)
			}
		default:
			return out, nil
		}
	}
}

// ikeSAs counts the IKE SAs of connection conn at a site.
func ikeSAs(ctx context.Context, ss StrongSwanSite, conn string) (int, error) {
	evs, err := viciStream(ctx, ss, "list-sas", "list-sa", map[string]any{"ike": conn, "noblock": "yes"})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ev := range evs {
		if _, ok := ev.Get(conn).(*vici.Message); ok {
			n++
		}
	}
	return n, nil
}

// waitNoIKESA waits until site holds no IKE SA of connection conn (after
// the peer deleted it), or fails the test.
func waitNoIKESA(t *testing.T, m *StrongSwanMesh, site, conn string) {
	t.Helper()
	ss, _ := m.Site(site)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := ikeSAs(ctx, ss, conn)
		if err == nil && n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s still holds %d IKE SA(s) of %s (err %v)", site, n, conn, err)
		case <-tick.C:
		}
	}
}

// terminateIKE deletes site's IKE SAs with peer (force: charon waits for
// the peer's DELETE response at most until the timeout, as Warden must for
// a compromised peer) and waits until the peer has deleted its end too:
// Initiate on a live IKE SA fails without authenticating anyone, so only a
// fresh IKE SA proves what a CRL does.
func terminateIKE(t *testing.T, m *StrongSwanMesh, site, peer string) {
	t.Helper()
	ss, _ := m.Site(site)
	if _, err := viciCall(t.Context(), ss, "terminate", map[string]any{"ike": peer, "force": "yes", "timeout": "5000"}); err != nil {
		t.Fatalf("terminating %s's IKE SA with %s: %v", site, peer, err)
	}
	waitNoIKESA(t, m, site, peer)
	waitNoIKESA(t, m, peer, site)
}

func TestStrongSwanMeshAuthentication(t *testing.T) {
	tests := map[string]struct {
		prefix       string
		certificates bool
		// authLog is what charon logs once it has verified the peer.
		authLog string
	}{
		"psk":          {prefix: "nlsspsk", authLog: "with pre-shared key successful"},
		"certificates": {prefix: "nlsscert", certificates: true, authLog: "with RSA_EMSA_PKCS1_SHA2_256 successful"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			lab, m := strongSwanMesh(t, tc.prefix, tc.certificates, "a", "b")
			if err := lanEcho(t, lab, "a", "b", okWait); err != nil {
				t.Fatalf("LAN to LAN through the tunnel: %v", err)
			}
			for _, s := range []string{"a", "b"} {
				if log := m.Log(s); !strings.Contains(log, tc.authLog) {
					t.Errorf("charon of %s never logged %q", s, tc.authLog)
				}
			}
			_, psk := m.PresharedKey("a", "b")
			ca, signer := m.CA()
			cert, hasCert := m.Certificate("a")
			if psk == tc.certificates || (ca != nil) != tc.certificates || (signer != nil) != tc.certificates || hasCert != tc.certificates {
				t.Fatalf("PresharedKey %v, CA %v/%v, Certificate %v: want a PSK xor certificates (certificates=%v)",
					psk, ca != nil, signer != nil, hasCert, tc.certificates)
			}
			if !tc.certificates {
				return
			}
			ss, _ := m.Site("a")
			if cert.Subject.CommonName != ss.Identity {
				t.Errorf("certificate CN = %q, want %q", cert.Subject.CommonName, ss.Identity)
			}
			// charon holds the CA and the site's certificate with its key.
			evs, err := viciStream(t.Context(), ss, "list-certs", "list-cert", map[string]any{"type": "X509", "flag": "ANY"})
			if err != nil {
				t.Fatalf("list-certs: %v", err)
			}
			got := map[string]string{}
			for _, ev := range evs {
				data, _ := ev.Get("data").(string)
				switch data {
				case string(ca.Raw):
					got["ca"] = fmt.Sprint(ev.Get("flag"), " ", ev.Get("has_privkey"))
				case string(cert.Raw):
					got["own"] = fmt.Sprint(ev.Get("flag"), " ", ev.Get("has_privkey"))
				}
			}
			if want := map[string]string{"ca": "CA <nil>", "own": "NONE yes"}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("list-certs at a: flag and has_privkey %v, want %v", got, want)
			}
		})
	}
}

// TestStrongSwanCRLRevokesPeer proves the path Warden's revocation takes in
// a certificate mesh: a CRL loaded at one site over VICI makes its charon
// refuse the revoked peer, however the connection is re-established or
// re-added, while every other peer still authenticates.
func TestStrongSwanCRLRevokesPeer(t *testing.T) {
	lab, m := strongSwanMesh(t, "nlsscrl", true, "a", "b", "c")
	ctx := t.Context()
	for _, p := range [][2]string{{"a", "b"}, {"c", "b"}, {"a", "c"}} {
		if err := lanEcho(t, lab, p[0], p[1], okWait); err != nil {
			t.Fatalf("before revocation, %s LAN to %s LAN: %v", p[0], p[1], err)
		}
	}

	ca, signer := m.CA()
	certA, _ := m.Certificate("a")
	crl := revocationList(t, ca, signer, certA.SerialNumber)
	b, _ := m.Site("b")
	if _, err := viciCall(ctx, b, "load-cert", map[string]any{"type": "X509_CRL", "flag": "NONE", "data": string(crl)}); err != nil {
		t.Fatalf("loading the CRL at b: %v", err)
	}
	// Warden reads loaded CRLs back: list-certs streams them as list-cert
	// events carrying the DER.
	evs, err := viciStream(ctx, b, "list-certs", "list-cert", map[string]any{"type": "X509_CRL"})
	if err != nil {
		t.Fatalf("listing CRLs at b: %v", err)
	}
	if len(evs) != 1 || evs[0].Get("type") != "X509_CRL" || evs[0].Get("data") != string(crl) {
		t.Fatalf("list-certs X509_CRL at b: %d events %v, want one X509_CRL carrying the loaded DER", len(evs), evs)
	}

	terminateIKE(t, m, "b", "a")
	terminateIKE(t, m, "b", "c")

	if err := m.Initiate(ctx, "a", "b"); err == nil {
		t.Fatal("Initiate(a, b) succeeded with a's certificate revoked at b")
	}
	if !strings.Contains(m.Log("b"), "certificate was revoked") {
		t.Error("b refused a, but its log does not say a's certificate was revoked")
	}
	if err := m.Initiate(ctx, "b", "a"); err == nil {
		t.Error("Initiate(b, a) succeeded with a's certificate revoked at b")
	}
	if err := lanEcho(t, lab, "a", "b", failWait); err == nil {
		t.Error("a LAN reached b LAN after a's revocation")
	}

	if err := m.Initiate(ctx, "c", "b"); err != nil {
		t.Fatalf("Initiate(c, b) after a's revocation: %v", err)
	}
	// b checked c against the CRL (it holds no entry for c).
	if !strings.Contains(m.Log("b"), "certificate status is good") {
		t.Error("b accepted c without finding its status good in the CRL")
	}
	if err := lanEcho(t, lab, "c", "b", okWait); err != nil {
		t.Errorf("c LAN to b LAN after a's revocation: %v", err)
	}
	// The CRL is b's alone: a and c still trust each other.
	if err := lanEcho(t, lab, "a", "c", okWait); err != nil {
		t.Errorf("a LAN to c LAN (no CRL loaded there): %v", err)
	}

	// Re-adding the connection, twice, brings no way back for a.
	if _, err := viciCall(ctx, b, "unload-conn", map[string]any{"name": "a"}); err != nil {
		t.Fatalf("unloading connection a at b: %v", err)
	}
	for range 2 {
		if err := m.LoadConnection(ctx, "b", "a"); err != nil {
			t.Fatalf("LoadConnection(b, a): %v", err)
		}
	}
	if err := m.Initiate(ctx, "a", "b"); err == nil {
		t.Error("Initiate(a, b) succeeded through a re-added connection with a's certificate revoked")
	}
	if err := m.Initiate(ctx, "b", "a"); err == nil {
		t.Error("Initiate(b, a) succeeded through a re-added connection with a's certificate revoked")
	}
}

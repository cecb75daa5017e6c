package netlab

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/sync/errgroup"
)

// This file holds the certificate mode of the strongSwan mesh: a lab CA,
// one certificate per site, and the VICI shapes that load them.
//
// The only public-key plugins of Debian's charon here are gmp (RSA) and
// pubkey/pkcs1/pkcs8/x509: there is no openssl plugin, so no ECDSA or
// Ed25519, and every key is RSA.

// labKeyBits is the RSA modulus size of the lab CA and every site key.
const labKeyBits = 2048

// labCertLifetime is how long the CA and site certificates are valid.
const labCertLifetime = 24 * time.Hour

// labPKI is a certificate mesh's credentials. The private keys never leave
// it except into charon over VICI (and the CA's signer through CA, for
// tests that must issue a CRL).
type labPKI struct {
	ca    *x509.Certificate
	caKey *rsa.PrivateKey
	certs map[string]*x509.Certificate // by site
	keys  map[string]*rsa.PrivateKey   // by site
}

// newLabPKI issues a lab CA named after the lab prefix and, for every site,
// a certificate whose subject CN and only DNS SAN are the site's IKE
// identity. Certificates are valid from a minute before now (small clock
// differences) for labCertLifetime, and carry distinct random serials.
func newLabPKI(prefix string, identities map[string]string, now time.Time) (*labPKI, error) {
	sites := make([]string, 0, len(identities))
	for s := range identities {
		sites = append(sites, s)
	}
	keys, err := generateRSAKeys(1 + len(sites))
	if err != nil {
		return nil, err
	}
	p := &labPKI{caKey: keys[0], certs: map[string]*x509.Certificate{}, keys: map[string]*rsa.PrivateKey{}}
	serials := map[string]bool{}
	notBefore, notAfter := now.Add(-time.Minute), now.Add(labCertLifetime)

	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Warden lab CA " + prefix, Organization: []string{"Warden netlab"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// SubjectKeyId is left to CreateCertificate (a truncated SHA-256
		// since Go 1.25). CRLs issued with this certificate carry it as
		// their authority key identifier, and charon (5.9) looks a CA's
		// CRLs up by that identifier, so any value works.
	}
	if p.ca, err = issue(caTmpl, caTmpl, &p.caKey.PublicKey, p.caKey, serials); err != nil {
		return nil, fmt.Errorf("issuing the lab CA certificate: %w", err)
	}
	for i, site := range sites {
		key := keys[1+i]
		id := identities[site]
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: id, Organization: []string{"Warden netlab"}},
			DNSNames:              []string{id},
			NotBefore:             notBefore,
			NotAfter:              notAfter,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		}
		cert, err := issue(tmpl, p.ca, &key.PublicKey, p.caKey, serials)
		if err != nil {
			return nil, fmt.Errorf("issuing the certificate of site %s: %w", site, err)
		}
		p.certs[site], p.keys[site] = cert, key
	}
	return p, nil
}

// issue gives tmpl a serial not in serials, signs it with parent's key and
// parses the result back, so the returned certificate has Raw set (its DER,
// as sent to charon).
func issue(tmpl, parent *x509.Certificate, pub *rsa.PublicKey, signer crypto.Signer, serials map[string]bool) (*x509.Certificate, error) {
	var err error
	if tmpl.SerialNumber, err = uniqueSerial(serials); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// uniqueSerial draws a random positive 127-bit serial not in seen, and
// records it there.
func uniqueSerial(seen map[string]bool) (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("drawing a certificate serial: %w", err)
		}
		if n.Sign() == 0 || seen[n.String()] {
			continue
		}
		seen[n.String()] = true
		return n, nil
	}
}

// generateRSAKeys generates n RSA keys in parallel: 2048-bit generation is
// the slow part of starting a certificate mesh.
func generateRSAKeys(n int) ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, n)
	var g errgroup.Group
	for i := range keys {
		g.Go(func() error {
			k, err := rsa.GenerateKey(rand.Reader, labKeyBits)
			keys[i] = k
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("generating RSA keys: %w", err)
	}
	return keys, nil
}

// authSections returns the local and remote authentication sections of
// site's connection to peer: PSK by identity, or in certificate mode the
// site's own certificate and the lab CA as the only CA the peer's
// certificate may chain to. VICI takes certificates as data, not file
// names (swanctl sends the files' contents): DER here.
func (m *StrongSwanMesh) authSections(site, peer string) (local, remote map[string]any) {
	ss, ps := m.sites[site], m.sites[peer]
	if m.pki == nil {
		return map[string]any{"auth": "psk", "id": ss.Identity},
			map[string]any{"auth": "psk", "id": ps.Identity}
	}
	return map[string]any{
			"auth":  "pubkey",
			"id":    ss.Identity,
			"certs": []string{string(m.pki.certs[site].Raw)},
		}, map[string]any{
			"auth":    "pubkey",
			"id":      ps.Identity,
			"cacerts": []string{string(m.pki.ca.Raw)},
		}
}

// credentialMessages are the VICI messages that load site's credentials in
// certificate mode, in order: the CA (load-cert, flag CA: charon trusts it
// as an anchor), the site's certificate (load-cert, flag NONE) and its
// private key (load-key, PKCS #1 DER). They hold the key: never log them.
func (m *StrongSwanMesh) credentialMessages(site string) []viciCommand {
	return []viciCommand{
		{what: "the lab CA certificate", cmd: "load-cert", msg: map[string]any{
			"type": "X509", "flag": "CA", "data": string(m.pki.ca.Raw),
		}},
		{what: "the site certificate", cmd: "load-cert", msg: map[string]any{
			"type": "X509", "flag": "NONE", "data": string(m.pki.certs[site].Raw),
		}},
		{what: "the site private key", cmd: "load-key", msg: map[string]any{
			"type": "RSA", "data": string(x509.MarshalPKCS1PrivateKey(m.pki.keys[site])),
		}},
	}
}

// viciCommand is one VICI command with its arguments and, for errors, what
// it loads (never the arguments themselves: some are secrets).
type viciCommand struct {
	what string
	cmd  string
	msg  map[string]any
}

// CA returns the lab CA's certificate and signer, for tests that must issue
// a CRL (x509.CreateRevocationList). Both are nil for a PSK mesh.
func (m *StrongSwanMesh) CA() (*x509.Certificate, crypto.Signer) {
	if m.pki == nil {
		return nil, nil
	}
	return m.pki.ca, m.pki.caKey
}

// Certificate returns site's certificate in a certificate mesh; false for a
// PSK mesh or an unknown site.
func (m *StrongSwanMesh) Certificate(site string) (*x509.Certificate, bool) {
	if m.pki == nil {
		return nil, false
	}
	c, ok := m.pki.certs[site]
	return c, ok
}

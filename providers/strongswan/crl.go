package strongswan

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"

	"github.com/warden-ir/warden/actions"
)

// LoadCRL loads a certificate revocation list (DER) into site's charon.
// With the revocation plugin, charon then refuses every certificate the
// CRL lists when a peer authenticates, whatever connection matches it. A
// newer CRL of the same issuer replaces an older one.
func (p *Provider) LoadCRL(ctx context.Context, site string, crl []byte) error {
	if len(crl) == 0 {
		return actions.Terminal(fmt.Errorf("loading a CRL at %q: empty CRL", site))
	}
	c, _, err := p.conn(ctx, site)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Call(ctx, "load-cert", msg(map[string]any{"type": "X509_CRL", "flag": "NONE", "data": string(crl)})); err != nil {
		return fmt.Errorf("loading a CRL at %q: %w", site, err)
	}
	p.log.InfoContext(ctx, "loaded CRL", "site", site)
	return nil
}

// VerifyCRL reads back the CRLs site's charon holds and checks that one,
// signed by issuer, revokes serial. It returns an error wrapping
// actions.ErrNotVerified otherwise.
func (p *Provider) VerifyCRL(ctx context.Context, site string, issuer *x509.Certificate, serial *big.Int) error {
	c, _, err := p.conn(ctx, site)
	if err != nil {
		return err
	}
	defer c.Close()
	evs, err := c.Stream(ctx, "list-certs", "list-cert", msg(map[string]any{"type": "X509_CRL"}))
	if err != nil {
		return fmt.Errorf("listing the CRLs at %q: %w", site, err)
	}
	for _, ev := range evs {
		if der := str(ev.Get("data")); der != "" && CRLRevokes([]byte(der), issuer, serial) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q holds no CRL from %s revoking serial %s", actions.ErrNotVerified, site, issuer.Subject, serial.Text(16))
}

// CRLRevokes reports whether der is a CRL signed by issuer that revokes
// serial.
func CRLRevokes(der []byte, issuer *x509.Certificate, serial *big.Int) bool {
	crl, err := x509.ParseRevocationList(der)
	if err != nil || crl.CheckSignatureFrom(issuer) != nil {
		return false
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

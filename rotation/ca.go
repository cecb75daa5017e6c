package rotation

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"time"
)

// CA is the certificate authority of IPsec gateways that authenticate
// with certificates: revoking one of them means a CRL signed here, loaded
// by every peer. Its key never prints, marshals or logs.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewCA returns a CA from its certificate and key; the key must match.
func NewCA(cert *x509.Certificate, key crypto.Signer) (*CA, error) {
	if cert == nil || key == nil {
		return nil, errors.New("a CA needs a certificate and a key")
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA certificate", cert.Subject)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("the CA key does not belong to certificate %q", cert.Subject)
	}
	return &CA{cert: cert, key: key}, nil
}

// LoadCAFiles reads a PEM CA certificate and its PEM private key (PKCS#8,
// PKCS#1 or EC). The key file must be a regular file neither group nor
// others may read or write.
func LoadCAFiles(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("reading the CA certificate %s: no PEM CERTIFICATE block", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate %s: %w", certFile, err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("reading the CA key %s: mode %v, want a regular file with mode 0600 or stricter", keyFile, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the CA key: %w", err)
	}
	defer clear(keyPEM)
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("reading the CA key %s: no PEM block", keyFile)
	}
	defer clear(kb.Bytes)
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("reading the CA key %s: unsupported PEM block %q", keyFile, kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the CA key %s (contents not shown)", keyFile)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the CA key %s cannot sign", keyFile)
	}
	return NewCA(cert, signer)
}

// Certificate is the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CRL returns a DER CRL signed by the CA that revokes serials, valid from
// a minute before now (clock skew) for a week. number must grow with every
// CRL issued, so peers replace an older one.
func (ca *CA) CRL(serials []*big.Int, number *big.Int, now time.Time) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, 0, len(serials))
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.UTC(),
			ReasonCode: 1}) // keyCompromise
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Issuer:                    pkix.Name{},
		Number:                    number,
		ThisUpdate:                now.Add(-time.Minute).UTC(),
		NextUpdate:                now.Add(7 * 24 * time.Hour).UTC(),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing a CRL: %w", err)
	}
	return der, nil
}

// String, GoString, Format and LogValue keep the key out of every
// rendering.
func (ca *CA) String() string               { return "CA " + ca.cert.Subject.String() }
func (ca *CA) GoString() string             { return ca.String() }
func (ca *CA) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, ca.String()) }
func (ca *CA) LogValue() slog.Value         { return slog.StringValue(ca.String()) }
func (ca *CA) MarshalJSON() ([]byte, error) { return json.Marshal(ca.String()) }

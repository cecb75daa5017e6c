// Package mtls loads the mutual-TLS material the controller and `warden
// agent` present to each other, and builds the one TLS configuration each
// side uses: TLS 1.3 only, the peer's certificate verified against the
// configured CA and never against the system roots.
//
// It owns only the loading, those two configurations and the error log of
// a server speaking them (ServerErrorLog). It must not
// decide who may connect (the agent checks the controller's identity in
// the certificate; the controller checks the agent's host name), must not
// create keys (agent.Init does, for labs) and must not log key material.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Files names one side's material: its own certificate and key (PEM), and
// the CA bundle the other side's certificate must chain to.
type Files struct {
	CertFile string
	KeyFile  string
	CAFile   string
	// CertName and CAName say what the certificate and the CA are in
	// errors ("agent certificate", "client CA").
	CertName string
	CAName   string
}

// Material is loaded, parsed mutual-TLS material.
type Material struct {
	Cert tls.Certificate
	// CAs holds only the configured CA bundle.
	CAs *x509.CertPool
}

// Load reads and parses f. A CA file without any PEM certificate is an
// error, so a wrong file cannot leave a side trusting nobody unnoticed.
func Load(f Files) (Material, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return Material{}, fmt.Errorf("loading %s: %w", f.CertName, err)
	}
	pemCA, err := os.ReadFile(f.CAFile)
	if err != nil {
		return Material{}, fmt.Errorf("reading %s: %w", f.CAName, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return Material{}, fmt.Errorf("reading %s %s: no PEM certificate in it", f.CAName, f.CAFile)
	}
	return Material{Cert: cert, CAs: pool}, nil
}

// Server is the configuration of the side that listens (the agent): TLS
// 1.3, and a client certificate that chains to the CA is required.
func (m Material) Server() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.CAs,
	}
}

// Client is the configuration of the side that dials (the controller): TLS
// 1.3, presenting its certificate, trusting only the CA.
func (m Material) Client() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: m.CAs, Certificates: []tls.Certificate{m.Cert}}
}

// Server loads f and returns the listening side's configuration.
func (f Files) Server() (*tls.Config, error) {
	m, err := Load(f)
	if err != nil {
		return nil, err
	}
	return m.Server(), nil
}

// Client loads f and returns the dialling side's configuration.
func (f Files) Client() (*tls.Config, error) {
	m, err := Load(f)
	if err != nil {
		return nil, err
	}
	return m.Client(), nil
}

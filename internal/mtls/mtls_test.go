package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki writes a CA and two leaf certificates signed by it (a server's for
// "agent.test" and a client's) into a temporary directory.
type pki struct{ dir string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	// issue makes a P-256 key and a certificate of tmpl for it, signed by
	// parent with parentKey (self-signed when parent is nil).
	issue := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		return key, der
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caKey, caDER := issue(caTmpl, nil, nil)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	for i, leaf := range []struct {
		name  string
		usage x509.ExtKeyUsage
		dns   []string
	}{{"server", x509.ExtKeyUsageServerAuth, []string{"agent.test"}}, {"client", x509.ExtKeyUsageClientAuth, nil}} {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: leaf.name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: leaf.dns,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{leaf.usage}}
		key, der := issue(tmpl, ca, caKey)
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		write(leaf.name+".pem", "CERTIFICATE", der)
		write(leaf.name+"-key.pem", "PRIVATE KEY", kder)
	}
	return pki{dir: dir}
}

func (p pki) files(leaf string) Files {
	return Files{
		CertFile: filepath.Join(p.dir, leaf+".pem"), KeyFile: filepath.Join(p.dir, leaf+"-key.pem"),
		CAFile: filepath.Join(p.dir, "ca.pem"), CertName: leaf + " certificate", CAName: "test CA",
	}
}

func TestLoadRefuses(t *testing.T) {
	p := newPKI(t)
	notPEM := filepath.Join(p.dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		edit func(f *Files)
		want string
	}{
		"missing key":    {func(f *Files) { f.KeyFile = filepath.Join(p.dir, "nope.pem") }, "loading server certificate"},
		"key of another": {func(f *Files) { f.KeyFile = filepath.Join(p.dir, "client-key.pem") }, "loading server certificate"},
		"missing CA":     {func(f *Files) { f.CAFile = filepath.Join(p.dir, "nope.pem") }, "reading test CA"},
		"CA without PEM": {func(f *Files) { f.CAFile = notPEM }, "no PEM certificate in it"},
	} {
		t.Run(name, func(t *testing.T) {
			f := p.files("server")
			tc.edit(&f)
			if _, err := Load(f); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestHandshake: a client and a server built from the same CA complete a
// TLS 1.3 handshake, each verifying the other; a client without a
// certificate is refused.
func TestHandshake(t *testing.T) {
	p := newPKI(t)
	srv, err := Load(p.files("server"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Load(p.files("client"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		client *tls.Config
		wantOK bool
	}{
		"mutual":         {cli.Client(), true},
		"no client cert": {&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: cli.CAs}, false},
	} {
		t.Run(name, func(t *testing.T) {
			// A loopback connection, not net.Pipe: the two sides write
			// at once (an alert, the client's first byte), which an
			// unbuffered pipe would deadlock.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			b, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			sc := tls.Server(a, srv.Server())
			cc := tls.Client(b, func() *tls.Config { c := tc.client.Clone(); c.ServerName = "agent.test"; return c }())
			done := make(chan error, 1)
			go func() {
				err := sc.HandshakeContext(t.Context())
				if err == nil {
					// TLS 1.3 verifies the client's certificate after the
					// client's handshake returns: read to see the verdict.
					_, err = sc.Read(make([]byte, 1))
				}
				// Unblock the client's write, whatever the verdict.
				_ = a.Close()
				done <- err
			}()
			cerr := cc.HandshakeContext(t.Context())
			if cerr == nil {
				_, cerr = cc.Write([]byte{1})
			}
			serr := <-done
			if tc.wantOK && (cerr != nil || serr != nil) {
				t.Fatalf("handshake: client %v, server %v", cerr, serr)
			}
			if !tc.wantOK && serr == nil {
				t.Fatal("server accepted a client without a certificate")
			}
			if tc.wantOK && cc.ConnectionState().Version != tls.VersionTLS13 {
				t.Fatalf("version %x, want TLS 1.3", sc.ConnectionState().Version)
			}
		})
	}
}

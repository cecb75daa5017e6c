package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	written, err := Init(dir, []string{"gw-hq.example", "192.0.2.10", "2001:db8::10"}, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 6 {
		t.Fatalf("wrote %v", written)
	}
	for _, k := range []string{CAKeyFile, AgentKeyFile, ControllerKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", k, fi.Mode().Perm())
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, CAFile)))

	tests := map[string]struct {
		cert, key string
		opts      x509.VerifyOptions
		check     func(t *testing.T, c *x509.Certificate)
	}{
		"agent serves its names": {
			cert: AgentCertFile, key: AgentKeyFile,
			opts: x509.VerifyOptions{Roots: roots, DNSName: "gw-hq.example", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
			check: func(t *testing.T, c *x509.Certificate) {
				if err := c.VerifyHostname("192.0.2.10"); err != nil {
					t.Fatal(err)
				}
				if err := c.VerifyHostname("2001:db8::10"); err != nil {
					t.Fatal(err)
				}
				if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
					t.Fatalf("agent usages %v", c.ExtKeyUsage)
				}
			},
		},
		"controller authenticates as a client": {
			cert: ControllerCertFile, key: ControllerKeyFile,
			opts: x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			check: func(t *testing.T, c *x509.Certificate) {
				if c.Subject.CommonName != "warden-controller" {
					t.Fatalf("CN %q", c.Subject.CommonName)
				}
				if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
					t.Fatalf("controller usages %v", c.ExtKeyUsage)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, tc.cert), filepath.Join(dir, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			c, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Verify(tc.opts); err != nil {
				t.Fatalf("chain does not verify: %v", err)
			}
			tc.check(t, c)
		})
	}
	ca := readCert(t, filepath.Join(dir, CAFile))
	if !ca.IsCA || !ca.MaxPathLenZero {
		t.Fatalf("CA constraints: IsCA %v MaxPathLenZero %v", ca.IsCA, ca.MaxPathLenZero)
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
		_, err := Init(dir, []string{"gw"}, InitOptions{})
		if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "already holds") {
			t.Fatalf("second Init: %v", err)
		}
		after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
		if string(before) != string(after) {
			t.Fatalf("CA key changed")
		}
		if _, err := Init(dir, []string{"gw"}, InitOptions{Overwrite: true}); err != nil {
			t.Fatalf("Init with overwrite: %v", err)
		}
		if c := readCert(t, filepath.Join(dir, AgentCertFile)); c.VerifyHostname("gw") != nil || len(c.IPAddresses) != 0 {
			t.Fatalf("overwritten agent certificate: %v %v", c.DNSNames, c.IPAddresses)
		}
		if fi, _ := os.Stat(filepath.Join(dir, AgentKeyFile)); fi.Mode().Perm() != 0o600 {
			t.Fatalf("overwritten key mode %v", fi.Mode().Perm())
		}
	})
	t.Run("rejects bad hosts", func(t *testing.T) {
		for _, hosts := range [][]string{nil, {"bad host"}, {"-x.example"}, {"a;rm -rf"}} {
			if _, err := Init(t.TempDir(), hosts, InitOptions{}); err == nil {
				t.Fatalf("Init(%q) succeeded", hosts)
			}
		}
	})
}

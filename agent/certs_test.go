package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
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
				if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
					t.Fatalf("agent usages %v, want server and client", c.ExtKeyUsage)
				}
				if c.Subject.CommonName != "warden-agent" {
					t.Fatalf("agent CN %q, want warden-agent without --gateway", c.Subject.CommonName)
				}
			},
		},
		"agent delivers findings as a client": {
			cert: AgentCertFile, key: AgentKeyFile,
			opts:  x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			check: func(t *testing.T, c *x509.Certificate) {},
		},
		"controller serves its identity to agents": {
			cert: ControllerCertFile, key: ControllerKeyFile,
			opts:  x509.VerifyOptions{Roots: roots, DNSName: "warden-controller", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
			check: func(t *testing.T, c *x509.Certificate) {},
		},
		"controller authenticates as a client": {
			cert: ControllerCertFile, key: ControllerKeyFile,
			opts: x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
			check: func(t *testing.T, c *x509.Certificate) {
				if c.Subject.CommonName != "warden-controller" {
					t.Fatalf("CN %q", c.Subject.CommonName)
				}
				if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}) {
					t.Fatalf("controller usages %v, want client and server", c.ExtKeyUsage)
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

// TestInitGatewayCertificates issues per-gateway certificates: the first
// creates the CA with the gateway's pair, the next ones reuse that CA and
// write only their pair; every one names its gateway as CommonName, can
// serve and deliver, and chains to the one CA.
func TestInitGatewayCertificates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	first, err := Init(dir, []string{"gw-hq.example", "203.0.113.10"}, InitOptions{Gateway: "gw-hq"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{CAFile, GatewayCertFile("gw-hq"), ControllerCertFile, CAKeyFile, GatewayKeyFile("gw-hq"), ControllerKeyFile}
	if got := baseNames(first); !slices.Equal(got, want) {
		t.Fatalf("first gateway wrote %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, AgentCertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s written with --gateway (stat: %v)", AgentCertFile, err)
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, CAFile))
	second, err := Init(dir, []string{"203.0.113.20"}, InitOptions{Gateway: "gw-osaka"})
	if err != nil {
		t.Fatal(err)
	}
	if got := baseNames(second); !slices.Equal(got, []string{GatewayCertFile("gw-osaka"), GatewayKeyFile("gw-osaka")}) {
		t.Fatalf("second gateway wrote %v, want only its pair", got)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, CAFile)); string(caAfter) != string(caBefore) {
		t.Fatal("issuing a second gateway replaced the CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, CAFile)))
	for gw, host := range map[string]string{"gw-hq": "gw-hq.example", "gw-osaka": "203.0.113.20"} {
		t.Run(gw, func(t *testing.T) {
			if _, err := tls.LoadX509KeyPair(filepath.Join(dir, GatewayCertFile(gw)), filepath.Join(dir, GatewayKeyFile(gw))); err != nil {
				t.Fatalf("pair does not load: %v", err)
			}
			c := readCert(t, filepath.Join(dir, GatewayCertFile(gw)))
			if c.Subject.CommonName != gw {
				t.Fatalf("CN %q, want %q", c.Subject.CommonName, gw)
			}
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Fatalf("usage %v does not verify: %v", usage, err)
				}
			}
			if fi, _ := os.Stat(filepath.Join(dir, GatewayKeyFile(gw))); fi.Mode().Perm() != 0o600 {
				t.Fatalf("key mode %v", fi.Mode().Perm())
			}
		})
	}

	t.Run("refusals", func(t *testing.T) {
		orphan := t.TempDir()
		if err := os.WriteFile(filepath.Join(orphan, CAFile), caBefore, 0o644); err != nil {
			t.Fatal(err)
		}
		for name, tc := range map[string]struct {
			dir  string
			opt  InitOptions
			want string
		}{
			"the same gateway again":       {dir, InitOptions{Gateway: "gw-osaka"}, "already holds agent-gw-osaka.pem"},
			"a path in the id":             {dir, InitOptions{Gateway: "gw/../x"}, "only letters"},
			"a hidden file":                {dir, InitOptions{Gateway: ".gw"}, "not start with"},
			"the controller's name":        {dir, InitOptions{Gateway: "warden-controller"}, "controller identity"},
			"a CA certificate without key": {orphan, InitOptions{Gateway: "gw-x"}, "holds only one of"},
		} {
			t.Run(name, func(t *testing.T) {
				if _, err := Init(tc.dir, []string{"192.0.2.1"}, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Init = %v, want an error containing %q", err, tc.want)
				}
			})
		}
		before, _ := os.ReadFile(filepath.Join(dir, GatewayCertFile("gw-osaka")))
		if _, err := Init(dir, []string{"203.0.113.21"}, InitOptions{Gateway: "gw-osaka", Overwrite: true}); err != nil {
			t.Fatalf("overwriting a gateway's pair: %v", err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, GatewayCertFile("gw-osaka"))); string(after) == string(before) {
			t.Fatal("Overwrite kept the old certificate")
		}
		if caAfter, _ := os.ReadFile(filepath.Join(dir, CAFile)); string(caAfter) != string(caBefore) {
			t.Fatal("overwriting a gateway's pair replaced the CA")
		}
	})
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

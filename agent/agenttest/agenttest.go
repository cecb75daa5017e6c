// Package agenttest serves a gateway agent to tests of the code that speaks
// to it (the controller's agent client, the daemon's evidence path), and
// gives tests the controller's side of a lab PKI.
//
// It owns only that harness: a fresh lab PKI, an agent.Server behind a
// loopback mutual-TLS listener closed when the test ends, and the
// controller's TLS configuration. Only _test.go
// files import it; the warden-agent binary must never link it.
package agenttest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/warden-ir/warden/agent"
)

// Management is the management network the served agent accepts.
const Management = "192.0.2.0/24"

// Serve creates a lab PKI for 127.0.0.1 and serves an agent with deps over
// mutual TLS until the test ends. It returns the PKI directory (the
// controller's certificate, key and CA are there under agent's file names)
// and the agent's URL. deps.KillFlows defaults to killing nothing; wrap,
// when not nil, wraps the agent's handler (to record requests).
func Serve(t testing.TB, deps agent.Deps, wrap func(http.Handler) http.Handler) (pki, url string) {
	t.Helper()
	pki = PKI(t)
	if deps.KillFlows == nil {
		deps.KillFlows = func(context.Context, []netip.Prefix) (int, error) { return 0, nil }
	}
	srv, err := agent.New(agent.Config{
		CertFile:     filepath.Join(pki, agent.AgentCertFile),
		KeyFile:      filepath.Join(pki, agent.AgentKeyFile),
		ClientCAFile: filepath.Join(pki, agent.CAFile),
		StateDir:     t.TempDir(),
		Management:   []netip.Prefix{netip.MustParsePrefix(Management)},
	}, deps, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var h http.Handler = srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = srv.TLSConfig()
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return pki, ts.URL
}

// PKI writes a fresh lab PKI for an agent at 127.0.0.1 (agent.Init) to a
// temporary directory and returns the directory.
func PKI(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := agent.Init(dir, []string{"127.0.0.1"}, agent.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ControllerTLS is the controller's side of the lab PKI in pki: its client
// certificate, the agents' CA as the only root, TLS 1.3.
func ControllerTLS(t testing.TB, pki string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, agent.ControllerCertFile), filepath.Join(pki, agent.ControllerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(pki, agent.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in the lab PKI")
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
}

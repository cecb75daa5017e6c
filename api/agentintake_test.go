package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/api"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/internal/mtls"
	"github.com/warden-ir/warden/store"
)

// agentPKI is one lab CA with the controller's certificate and agent
// certificates of several shapes, all issued by `warden agent init`
// (agent.Init) except the legacy one.
type agentPKI struct {
	dir string
	ca  *x509.CertPool
}

func newAgentPKI(t *testing.T) agentPKI {
	t.Helper()
	dir := t.TempDir()
	issue := func(gateway string, hosts ...string) {
		if _, err := agent.Init(dir, hosts, agent.InitOptions{Gateway: gateway}); err != nil {
			t.Fatalf("issuing %s: %v", gateway, err)
		}
	}
	issue("gw-hq", "gw-hq.corp.example", "203.0.113.10")   // per-gateway: CN = gw-hq
	issue("osaka-box", "203.0.113.20")                     // CN of no gateway; gw-osaka-a's address
	issue("both-sites", "203.0.113.10", "203.0.113.20")    // addresses of two gateways
	issue("stranger", "198.51.100.7")                      // neither
	issue("gw-factory", "gw-factory.example", "127.0.0.1") // a second per-gateway one
	pool := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(dir, agent.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(b)
	return agentPKI{dir: dir, ca: pool}
}

// pair loads the agent pair issued for gateway (a GatewayCertFile).
func (p agentPKI) pair(t *testing.T, gateway string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(p.dir, agent.GatewayCertFile(gateway)), filepath.Join(p.dir, agent.GatewayKeyFile(gateway)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p agentPKI) controllerPair(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(p.dir, agent.ControllerCertFile), filepath.Join(p.dir, agent.ControllerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// legacy is an agent certificate as `warden agent init` issued before
// agents delivered findings: server authentication only.
func (p agentPKI) legacy(t *testing.T) tls.Certificate {
	t.Helper()
	caPEM, _ := os.ReadFile(filepath.Join(p.dir, agent.CAFile))
	keyPEM, _ := os.ReadFile(filepath.Join(p.dir, agent.CAKeyFile))
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "gw-hq"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("203.0.113.10")},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// agentListener serves api.NewAgentIntake over the stack's controller on
// a mutual-TLS listener, as the daemon does on server.agent_listen.
func agentListener(t *testing.T, s *stack, p agentPKI) string {
	t.Helper()
	h, err := api.NewAgentIntake(api.AgentIntakeOptions{Controller: s.d.Controller, Ledger: s.d.Ledger})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mtls.Load(mtls.Files{CertFile: filepath.Join(p.dir, agent.ControllerCertFile), KeyFile: filepath.Join(p.dir, agent.ControllerKeyFile),
		CAFile: filepath.Join(p.dir, agent.CAFile), CertName: "controller certificate", CAName: "agent CA"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = m.Server()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// postFindings posts body to the agents' listener at url presenting cert
// (none when nil).
func postFindings(t *testing.T, url string, p agentPKI, cert *tls.Certificate, body []byte) (reply, error) {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.ca, ServerName: wire.DefaultControllerIdentity}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+api.AgentFindingsPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// agentT0 dates the findings: in the past, as a gateway's clock would.
var agentT0 = time.Date(2025, 1, 8, 3, 0, 0, 0, time.UTC)

func agentFinding(key string) wire.Finding {
	return wire.Finding{
		Kind: "auth_failure_burst", Severity: "high", Confidence: 0.9, Summary: "10 failed SSH logins from 198.51.100.9 within 60s",
		IPs: []string{"198.51.100.9"}, Labels: map[string]string{"service": "sshd"},
		Evidence:   []string{"Jan  8 03:00:01 gw-hq sshd[812]: Failed password for invalid user admin from 198.51.100.9 port 51234 ssh2"},
		ObservedAt: agentT0, Key: key, Sensor: "auth",
	}
}

func batchBody(t *testing.T, fs ...wire.Finding) []byte {
	t.Helper()
	b, err := json.Marshal(wire.FindingBatch{Findings: fs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// storedIndicator reads the indicator id back from the store.
func storedIndicator(t *testing.T, s *stack, id string) store.IndicatorRecord {
	t.Helper()
	var rec store.IndicatorRecord
	err := s.d.Store.Tx(t.Context(), func(tx store.Tx) error {
		var err error
		rec, err = tx.IndicatorByID(t.Context(), id)
		return err
	})
	if err != nil {
		t.Fatalf("reading indicator %s: %v", id, err)
	}
	return rec
}

func countIndicators(t *testing.T, s *stack) int {
	t.Helper()
	n, err := s.d.Store.CountIndicators(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAgentFindingsKeptAsEvidence: a finding that lands in an incident is
// in that incident's evidence ledger, byte for byte as the agent sent it
// (its triggering log lines with it), with SHA-256 and custody from the
// agent; a duplicate is not filed again.
func TestAgentFindingsKeptAsEvidence(t *testing.T) {
	s := newStack(t, nil, nil)
	p := newAgentPKI(t)
	url := agentListener(t, s, p)
	cert := p.pair(t, "gw-hq")
	body := batchBody(t, agentFinding("auth_failure_burst/sshd/198.51.100.9"))
	r, err := postFindings(t, url, p, &cert, body)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, r, 202)
	res := decodeReply[v1.IntakeResponse](t, r)
	if len(res.Results) != 1 || res.Results[0].IncidentID == "" {
		t.Fatalf("answer %s, want one indicator in an incident", r)
	}
	inc := res.Results[0].IncidentID
	recs, err := s.d.Ledger.List(t.Context(), inc)
	if err != nil || len(recs) != 1 {
		t.Fatalf("evidence of %s: %+v, %v; want the finding", inc, recs, err)
	}
	ev := recs[0]
	if ev.Gateway != "gw-hq" || ev.CollectedBy != "agent:gw-hq" || ev.Kind != "log" || !strings.HasPrefix(ev.Name, "sensor-auth-auth_failure_burst-") || len(ev.SHA256) != 64 {
		t.Errorf("evidence %+v", ev)
	}
	if _, err := postFindings(t, url, p, &cert, body); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.d.Ledger.List(t.Context(), inc); len(again) != 1 {
		t.Errorf("a duplicate delivery filed %d records, want still 1", len(again))
	}
}

// TestAgentFindingsGatewayFromCertificate: the gateway is the one the
// client certificate names, by CommonName, else by a gateway's address
// among its IP SANs; a certificate of no gateway, or of two, gets a 403
// naming why; a certificate the listener cannot verify gets no answer.
func TestAgentFindingsGatewayFromCertificate(t *testing.T) {
	s := newStack(t, nil, nil)
	p := newAgentPKI(t)
	url := agentListener(t, s, p)
	ctl := p.controllerPair(t)
	legacy := p.legacy(t)
	foreign := newAgentPKI(t).pair(t, "gw-hq")
	tests := map[string]struct {
		cert      *tls.Certificate
		status    int    // 0: the handshake fails
		gateway   string // for a 202
		wantError string
	}{
		"per-gateway certificate":            {cert: ptr(p.pair(t, "gw-hq")), status: 202, gateway: "gw-hq"},
		"another per-gateway certificate":    {cert: ptr(p.pair(t, "gw-factory")), status: 202, gateway: "gw-factory"},
		"a gateway's address among the SANs": {cert: ptr(p.pair(t, "osaka-box")), status: 202, gateway: "gw-osaka-a"},
		"addresses of two gateways":          {cert: ptr(p.pair(t, "both-sites")), status: 403, wantError: "ambiguous: its IP addresses belong to gateways gw-hq, gw-osaka-a"},
		"a certificate of no gateway":        {cert: ptr(p.pair(t, "stranger")), status: 403, wantError: `(CN "stranger", IP addresses 198.51.100.7) names no gateway`},
		"the controller's own certificate":   {cert: &ctl, status: 403, wantError: "names no gateway"},
		"no certificate":                     {cert: nil},
		"a legacy agent certificate":         {cert: &legacy},
		"an agent certificate of another CA": {cert: &foreign},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := countIndicators(t, s)
			r, err := postFindings(t, url, p, tc.cert, batchBody(t, agentFinding("auth_failure_burst/sshd/198.51.100.9/"+name)))
			if tc.status == 0 {
				if err == nil {
					t.Fatalf("the listener answered %s; want the handshake refused", r)
				}
				if n := countIndicators(t, s); n != before {
					t.Fatalf("%d indicators stored", n-before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			expectStatus(t, r, tc.status)
			if tc.status != 202 {
				if e := decodeReply[errorReply](t, r); !strings.Contains(e.Error, tc.wantError) {
					t.Fatalf("error %q, want it to contain %q", e.Error, tc.wantError)
				}
				if n := countIndicators(t, s); n != before {
					t.Fatalf("%d indicators stored after a refusal", n-before)
				}
				return
			}
			res := decodeReply[v1.IntakeResponse](t, r)
			if res.Accepted != 1 || res.Results[0].Gateway != tc.gateway || !res.Results[0].Matched {
				t.Fatalf("answer %s, want one matched indicator about %s", r, tc.gateway)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestAgentFindingsBecomeIndicators: a finding becomes an indicator of
// source warden-agent about the certificate's gateway, fingerprinted by
// gateway and key, with the finding (its evidence too) as raw, recorded
// by actor agent:GATEWAY under the certificate; delivered again, it is a
// duplicate.
func TestAgentFindingsBecomeIndicators(t *testing.T) {
	s := newStack(t, nil, nil)
	p := newAgentPKI(t)
	url := agentListener(t, s, p)
	cert := p.pair(t, "gw-hq")
	f := agentFinding("auth_failure_burst/sshd/198.51.100.9")
	f.Labels["gateway"] = "gw-factory" // a label, not a choice of gateway

	var res v1.IntakeResponse
	entries := written(t, s, func() {
		r, err := postFindings(t, url, p, &cert, batchBody(t, f))
		if err != nil {
			t.Fatal(err)
		}
		expectStatus(t, r, http.StatusAccepted)
		res = decodeReply[v1.IntakeResponse](t, r)
	})
	if len(res.Results) != 1 || !res.Results[0].Matched || res.Results[0].Duplicate {
		t.Fatalf("results %+v", res.Results)
	}
	rec := storedIndicator(t, s, res.Results[0].IndicatorID)
	in := rec.Indicator
	want := map[string][2]any{
		"gateway":     {in.Gateway, "gw-hq"},
		"source":      {in.Source, "warden-agent"},
		"kind":        {string(in.Kind), "auth_failure_burst"},
		"severity":    {string(in.Severity), "high"},
		"confidence":  {in.Confidence, 0.9},
		"fingerprint": {in.Fingerprint, api.FindingFingerprint("gw-hq", f.Key)},
		"observed at": {in.ObservedAt.UTC().Format(time.RFC3339), agentT0.Format(time.RFC3339)},
		"sensor":      {in.Labels["sensor"], "auth"},
		"label":       {in.Labels["gateway"], "gw-factory"},
		"ips":         {strings.Join(in.Observables.IPs, ","), "198.51.100.9"},
	}
	for field, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s = %v, want %v", field, gw[0], gw[1])
		}
	}
	var raw wire.Finding
	if err := json.Unmarshal(in.Raw, &raw); err != nil || len(raw.Evidence) != 1 || raw.Evidence[0] != f.Evidence[0] {
		t.Errorf("raw %s does not hold the finding with its evidence (%v)", in.Raw, err)
	}
	serial := "cert:" + x509Serial(t, cert)
	// Every entry of the agent carries its certificate's serial.
	wantActedAs(t, "delivering a finding", entries, "agent:gw-hq", serial, "gw-factory-impostor")

	// At least once: the same finding again is a duplicate of the first.
	r, err := postFindings(t, url, p, &cert, batchBody(t, f))
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, r, http.StatusAccepted)
	again := decodeReply[v1.IntakeResponse](t, r)
	if !again.Results[0].Duplicate || again.Results[0].IncidentID != res.Results[0].IncidentID {
		t.Fatalf("redelivered: %+v, want a duplicate in incident %s", again.Results[0], res.Results[0].IncidentID)
	}
}

func x509Serial(t *testing.T, c tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Text(16)
}

// TestAgentFindingsBodyCannotChooseTheGateway: a body naming a gateway,
// at the top or in a finding, is refused whole; nothing is stored.
func TestAgentFindingsBodyCannotChooseTheGateway(t *testing.T) {
	s := newStack(t, nil, nil)
	p := newAgentPKI(t)
	url := agentListener(t, s, p)
	cert := p.pair(t, "gw-hq")
	fb, err := json.Marshal(agentFinding("k"))
	if err != nil {
		t.Fatal(err)
	}
	finding := string(fb)
	tests := map[string]struct {
		body      string
		wantField string
	}{
		"at the top":             {`{"gateway":"gw-factory","findings":[` + finding + `]}`, "gateway"},
		"in a finding":           {`{"findings":[{"gateway":"gw-factory",` + finding[1:] + `]}`, "findings[0].gateway"},
		"in a finding, any case": {`{"findings":[` + finding + `,{"Gateway":"gw-factory",` + finding[1:] + `]}`, "findings[1].Gateway"},
		"an unknown top field":   {`{"site":"osaka","findings":[` + finding + `]}`, "site"},
		"no findings":            {`{"findings":[]}`, "findings"},
		"not an object":          {`[` + finding + `]`, "body"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := countIndicators(t, s)
			r, err := postFindings(t, url, p, &cert, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			expectStatus(t, r, http.StatusBadRequest)
			if e := decodeReply[errorReply](t, r); e.Field != tc.wantField {
				t.Fatalf("field %q (%s), want %q", e.Field, e.Error, tc.wantField)
			}
			if n := countIndicators(t, s); n != before {
				t.Fatalf("%d indicators stored", n-before)
			}
		})
	}
}

// TestAgentFindingsUnusableKeptUnmatched: a finding that cannot be used
// is kept unmatched with the reason naming its field, beside the good
// ones, so that it neither blocks the agent's queue nor vanishes.
func TestAgentFindingsUnusableKeptUnmatched(t *testing.T) {
	s := newStack(t, nil, nil)
	p := newAgentPKI(t)
	url := agentListener(t, s, p)
	cert := p.pair(t, "gw-hq")
	good := agentFinding("good")
	badKind := agentFinding("bad-kind")
	badKind.Kind = "coffee_spill"
	badIP := agentFinding("bad-ip")
	badIP.IPs = []string{"not-an-ip"}
	future := agentFinding("future")
	future.ObservedAt = time.Now().Add(24 * time.Hour)
	body := batchBody(t, good, badKind, badIP, future)
	body = bytes.Replace(body, []byte(`"key":"good"`), []byte(`"key":"good","extra":1`), 1)
	r, err := postFindings(t, url, p, &cert, body)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, r, http.StatusAccepted)
	res := decodeReply[v1.IntakeResponse](t, r)
	wantReasons := map[int]string{0: `findings[0]: json: unknown field "extra"`, 1: "findings[1].kind: unknown kind", 2: "findings[2].observables.ips[0]"}
	if len(res.Skipped) != len(wantReasons) {
		t.Fatalf("skipped %+v, want %d", res.Skipped, len(wantReasons))
	}
	for _, sk := range res.Skipped {
		if !strings.HasPrefix(sk.Reason, wantReasons[sk.Index]) {
			t.Errorf("skipped[%d] reason %q, want it to start with %q", sk.Index, sk.Reason, wantReasons[sk.Index])
		}
		if res.Results[sk.Index].Matched {
			t.Errorf("finding %d is matched", sk.Index)
		}
		if rec := storedIndicator(t, s, res.Results[sk.Index].IndicatorID); rec.Indicator.Gateway != "gw-hq" || len(rec.Indicator.Raw) == 0 {
			t.Errorf("unusable finding %d stored as %+v", sk.Index, rec.Indicator)
		}
	}
	if !res.Results[3].Matched {
		t.Fatalf("the finding dated in the future: %+v", res.Results[3])
	}
	if rec := storedIndicator(t, s, res.Results[3].IndicatorID); rec.Indicator.ObservedAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("an agent's clock ahead dated the indicator %v", rec.Indicator.ObservedAt)
	}
}

// TestAgentFindingsOnlyOnTheAgentListener: the public API does not serve
// the route, and the agents' listener serves nothing else.
func TestAgentFindingsOnlyOnTheAgentListener(t *testing.T) {
	s := newStack(t, nil, nil)
	expectStatus(t, s.call(t, "POST", api.AgentFindingsPath, batchBody(t, agentFinding("k"))), http.StatusNotFound)

	p := newAgentPKI(t)
	url := agentListener(t, s, p)
	cert := p.pair(t, "gw-hq")
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.ca, ServerName: wire.DefaultControllerIdentity, Certificates: []tls.Certificate{cert}}
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	for path, want := range map[string]int{
		"GET " + api.AgentFindingsPath: http.StatusMethodNotAllowed,
		"POST /v1/indicators":          http.StatusNotFound,
		"GET /v1/incidents":            http.StatusNotFound,
	} {
		method, p, _ := strings.Cut(path, " ")
		req, _ := http.NewRequestWithContext(context.Background(), method, url+p, strings.NewReader("{}"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

func TestMutualTLS(t *testing.T) {
	h := newHarness(t)
	h.start()
	other, err := tls.LoadX509KeyPair(filepath.Join(h.pki.otherCA, ControllerCertFile), filepath.Join(h.pki.otherCA, ControllerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	// The agent's own certificate authenticates it to the controller too
	// (it delivers its sensors' findings), but it is not the controller: an
	// agent cannot command another agent (403 from the identity check).
	agentCert, err := tls.LoadX509KeyPair(filepath.Join(h.pki.dir, AgentCertFile), filepath.Join(h.pki.dir, AgentKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		certs      []tls.Certificate
		wantStatus int // 0: the TLS handshake must fail
	}{
		"controller certificate":            {certs: []tls.Certificate{h.pki.controllerCert(t)}, wantStatus: http.StatusOK},
		"no client certificate":             {},
		"certificate from another CA":       {certs: []tls.Certificate{other}},
		"server certificate as client":      {certs: []tls.Certificate{agentCert}, wantStatus: http.StatusForbidden},
		"right CA, not the controller (CN)": {certs: []tls.Certificate{h.pki.wrongName}, wantStatus: http.StatusForbidden},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{wire.HealthPath, wire.CommandsPath} {
				c := h.client(tc.certs...)
				var resp *http.Response
				var err error
				if path == wire.HealthPath {
					resp, err = c.Get(h.url + path)
				} else {
					b, _ := json.Marshal(h.command(wire.KindIsolate, labIsolate))
					resp, err = c.Post(h.url+path, "application/json", bytes.NewReader(b))
				}
				if tc.wantStatus == 0 {
					if err == nil {
						resp.Body.Close()
						t.Fatalf("%s: got status %d, want the handshake refused", path, resp.StatusCode)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, tc.wantStatus)
				}
			}
		})
	}
	// Only the controller's isolate reached the firewall.
	if n := len(h.fw.applies()); n != 1 {
		t.Fatalf("firewall applied %d times, want 1 (only the controller)", n)
	}
}

func TestCommandFreshness(t *testing.T) {
	h := newHarness(t)
	h.start()
	now := h.clock.Now()
	mk := func(mut func(*wire.Command)) wire.Command {
		c := h.command(wire.KindObserve, nil)
		mut(&c)
		return c
	}
	tests := map[string]struct {
		cmd  wire.Command
		want string
	}{
		"expired": {mk(func(c *wire.Command) {
			c.IssuedAt, c.ExpiresAt = now.Add(-5*time.Minute), now.Add(-4*time.Minute)
		}), "expired"},
		"expires far in the future": {mk(func(c *wire.Command) {
			c.IssuedAt, c.ExpiresAt = now.Add(10*time.Minute), now.Add(11*time.Minute)
		}), "future"},
		"lifetime longer than the maximum": {mk(func(c *wire.Command) {
			c.ExpiresAt = c.IssuedAt.Add(time.Hour)
		}), "lifetime"},
		"issued in the future": {mk(func(c *wire.Command) {
			c.IssuedAt, c.ExpiresAt = now.Add(time.Minute), now.Add(90*time.Second)
		}), "future"},
		"expires before issued": {mk(func(c *wire.Command) {
			c.ExpiresAt = c.IssuedAt.Add(-time.Second)
		}), "before it was issued"},
		"missing times": {mk(func(c *wire.Command) {
			c.IssuedAt = time.Time{}
		}), "issued_at"},
		"short nonce":      {mk(func(c *wire.Command) { c.ID = "abc" }), "32 lower-case hex"},
		"upper-case nonce": {mk(func(c *wire.Command) { c.ID = strings.ToUpper(c.ID) }), "32 lower-case hex"},
		"unknown kind":     {mk(func(c *wire.Command) { c.Kind = "shell" }), "unknown command kind"},
		"unknown parameter": {mk(func(c *wire.Command) {
			c.Kind, c.Params = wire.KindIsolate, json.RawMessage(`{"managment":["10.0.0.0/8"]}`)
		}), "unknown field"},
		"allow-everything network": {mk(func(c *wire.Command) {
			c.Kind, c.Params = wire.KindIsolate, json.RawMessage(`{"management":["0.0.0.0/0"]}`)
		}), "allow everything"},
		"confirm window too long": {mk(func(c *wire.Command) {
			c.Kind, c.Params = wire.KindIsolate, json.RawMessage(`{"confirm_window":"1h"}`)
		}), "confirm window"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			status, body := h.send(tc.cmd)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", status, body)
			}
			if !strings.Contains(string(body), tc.want) {
				t.Fatalf("body %s does not mention %q", body, tc.want)
			}
		})
	}
	if n := len(h.fw.applies()); n != 0 {
		t.Fatalf("firewall applied %d times for refused commands", n)
	}
	// Within the tolerated skew an honest command still passes.
	h.do(wire.KindObserve, nil, nil)
}

func TestReplayRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	b, err := json.Marshal(h.command(wire.KindIsolate, labIsolate))
	if err != nil {
		t.Fatal(err)
	}
	if status, body := h.post(b); status != http.StatusOK {
		t.Fatalf("first: status %d: %s", status, body)
	}
	status, body := h.post(b)
	if status != http.StatusConflict || !strings.Contains(string(body), "replay") {
		t.Fatalf("replay: status %d (%s), want 409 naming the replay", status, body)
	}
	if n := len(h.fw.applies()); n != 1 {
		t.Fatalf("firewall applied %d times, want 1", n)
	}

	// A restart inside the command's lifetime does not re-open the replay.
	h.stop()
	h.start()
	applied := len(h.fw.applies()) // the restart re-applies the quarantine
	if status, body := h.post(b); status != http.StatusConflict {
		t.Fatalf("replay after restart: status %d (%s), want 409", status, body)
	}
	if n := len(h.fw.applies()); n != applied {
		t.Fatalf("replay after restart reached the firewall")
	}
}

func TestRequestLimits(t *testing.T) {
	h := newHarness(t)
	h.start()
	c := h.command(wire.KindCapture, nil)
	c.Params = json.RawMessage(`{"incident":"` + strings.Repeat("x", wire.MaxRequestBytes) + `"}`)
	if status, _ := h.send(c); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: status %d, want 413", status)
	}
	if status, _ := h.post([]byte(`{"id":`)); status != http.StatusBadRequest {
		t.Fatalf("truncated JSON: status %d, want 400", status)
	}
	if status, _ := h.post([]byte(`{} {}`)); status != http.StatusBadRequest {
		t.Fatalf("trailing JSON: status %d, want 400", status)
	}
	resp, err := h.client(h.pki.controllerCert(t)).Get(h.url + wire.CommandsPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET commands: status %d, want 405", resp.StatusCode)
	}
}

func TestCapture(t *testing.T) {
	t.Run("not available", func(t *testing.T) {
		h := newHarness(t)
		h.start()
		if status, body := h.send(h.command(wire.KindCapture, nil)); status != http.StatusNotImplemented {
			t.Fatalf("status %d (%s), want 501", status, body)
		}
	})
	t.Run("passes the evidence through", func(t *testing.T) {
		h := newHarness(t)
		want := wire.CaptureResult{
			Artefacts: []wire.Artefact{{Name: "routes.json", MediaType: "application/json", SHA256: "ab", Size: 2, Content: []byte("{}")}},
			Manifest:  json.RawMessage(`{"host":"gw"}`),
		}
		var gotIncident string
		h.capture = func(_ context.Context, p wire.CaptureParams) (wire.CaptureResult, error) {
			gotIncident = p.Incident
			return want, nil
		}
		h.start()
		var got wire.CaptureResult
		h.do(wire.KindCapture, wire.CaptureParams{Incident: "inc-1"}, &got)
		if gotIncident != "inc-1" || len(got.Artefacts) != 1 || string(got.Artefacts[0].Content) != "{}" || string(got.Manifest) != `{"host":"gw"}` {
			t.Fatalf("got %+v (incident %q)", got, gotIncident)
		}
	})
}

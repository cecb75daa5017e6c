package main

import (
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/intake"
)

// TestIndicatorSubmitSigned submits to an in-process controller that
// requires webhook signatures: --secret-file signs the body the way the
// controller verifies it, every attempt anew, and the secret shows up in
// no output or error.
func TestIndicatorSubmitSigned(t *testing.T) {
	hermetic(t)
	const secret = "cli-hook-SECRET-31d9"
	dir := t.TempDir()
	cfg, d := buildDaemon(t, dir, "intake:\n  webhook_secret: "+secret+"\n", daemon.Options{})

	// unavailable answers 503 to that many requests before the controller
	// sees them, as a restarting proxy would; seen records each signature.
	var unavailable atomic.Int32
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get(intake.SignatureHeader))
		mu.Unlock()
		if unavailable.Add(-1) >= 0 {
			http.Error(w, `{"error":"restarting"}`, http.StatusServiceUnavailable)
			return
		}
		d.API.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	tamper := writeFile(t, dir, "tamper.json", `{"kind":"config_tamper","gateway":"gw-hq","severity":"high","source":"aide"}`)
	// The retried case sends a body of its own: its retry is signed a
	// second ahead, and the same body signed by the next case in that
	// second would rightly be refused as a replay.
	tamperRetried := writeFile(t, dir, "tamper-retried.json", `{"kind":"config_tamper","gateway":"gw-hq","severity":"high","source":"aide-retried"}`)
	// Alertmanager 0.5's version "3" body with its numeric groupKey.
	v3 := writeFile(t, dir, "v3.json", `{"version":"3","groupKey":16716837308297233527,"status":"firing","alerts":[
		{"labels":{"alertname":"GatewayC2Beacon","gateway":"gw-osaka"},"startsAt":"2017-02-28T03:00:22.803+01:00","endsAt":"0001-01-01T00:00:00Z"}]}`)
	good := writeFile(t, dir, "secret", secret+"\n")
	tests := map[string]struct {
		args        []string
		unavailable int32
		wantOut     string
		wantErr     string
		attempts    int
	}{
		"signed":                   {args: []string{"-f", tamper, "--secret-file", good}, wantOut: `"accepted": 1`, attempts: 1},
		"signed alertmanager v3":   {args: []string{"--format", "alertmanager", "-f", v3, "--secret-file", good}, wantOut: `"gateway": "gw-osaka"`, attempts: 1},
		"retried and signed anew":  {args: []string{"-f", tamperRetried, "--secret-file", good}, unavailable: 1, wantOut: `"accepted": 1`, attempts: 2},
		"unsigned":                 {args: []string{"-f", tamper}, wantErr: "401", attempts: 1},
		"wrong secret":             {args: []string{"-f", tamper, "--secret-file", writeFile(t, dir, "other", "not-the-secret")}, wantErr: "401", attempts: 1},
		"empty secret file":        {args: []string{"-f", tamper, "--secret-file", writeFile(t, dir, "empty", " \n")}, wantErr: "is empty"},
		"missing secret file":      {args: []string{"-f", tamper, "--secret-file", filepath.Join(dir, "nope")}, wantErr: "reading --secret-file"},
		"secret file is a dir":     {args: []string{"-f", tamper, "--secret-file", dir}, wantErr: "reading --secret-file"},
		"secret is no flag value":  {args: []string{"-f", tamper, "--secret", secret}, wantErr: "unknown flag: --secret"},
		"signed but not JSON body": {args: []string{"-f", writeFile(t, dir, "bad.txt", "nope"), "--secret-file", good}, wantErr: "not valid JSON"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			unavailable.Store(tc.unavailable)
			args := append([]string{"indicator", "submit", "--server", srv.URL, "--token", cfg.Server.APIToken}, tc.args...)
			out, errOut, err := runCLI(t, args...)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("indicator submit: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q; output:\n%s", err, tc.wantErr, out)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("output does not contain %q:\n%s", tc.wantOut, out)
			}
			for what, s := range map[string]string{"stdout": out, "stderr": errOut, "error": errText(err)} {
				if strings.Contains(s, secret) {
					t.Errorf("the secret appears in %s: %q", what, s)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != tc.attempts {
				t.Fatalf("the server saw %d requests, want %d", len(seen), tc.attempts)
			}
			for i, sig := range seen {
				if sig != "" && sig == seen[0] && i > 0 {
					t.Errorf("attempt %d carries the signature of attempt 0: a retry would be refused as a replay", i)
				}
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestReadSecretFile: an absent file is reported as not existing, without
// repeating its path.
func TestReadSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	_, err := readSecretFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading an absent secret file: %v, want not-exist", err)
	}
	if err != nil && strings.Count(err.Error(), path) != 1 {
		t.Errorf("the error names the path %d times: %v", strings.Count(err.Error(), path), err)
	}
}

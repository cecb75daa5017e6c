package daemon_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/inventory"
)

// peopleConfig is a controller with a store in dir and no shared token.
func peopleConfig(t *testing.T, dir string) config.Config {
	t.Helper()
	cfg := config.Defaults()
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Inventory = inventory.Inventory{
		Sites:    []inventory.Site{{Name: "hq", TimeZone: "Asia/Tokyo"}},
		Gateways: []inventory.Gateway{{ID: "gw-hq", Site: "hq", VM: "gw-hq", Addresses: []string{"203.0.113.10"}, ManagementNetworks: []string{"192.0.2.0/28"}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// started builds the controller of cfg and takes its writer lease, as
// Serve does first; it returns the daemon, the URL its API is served at,
// and the error of taking the lease. The daemon is closed when the test
// ends, or by the caller to start another on the same store.
func started(t *testing.T, cfg config.Config, log *slog.Logger) (*daemon.Daemon, string, error) {
	t.Helper()
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{Log: log})
	if err != nil {
		t.Fatalf("building the controller: %v", err)
	}
	t.Cleanup(func() { d.Close(t.Context()) })
	acquired := d.AcquireWriter(t.Context())
	srv := httptest.NewServer(d.API)
	t.Cleanup(srv.Close)
	return d, srv.URL, acquired
}

// get calls GET path with token and decodes the JSON answer into out.
func get(t *testing.T, base, path, token string, out any) int {
	t.Helper()
	return do(t, http.MethodGet, base, path, token, nil, out)
}

func do(t *testing.T, method, base, path, token string, body []byte, out any) int {
	t.Helper()
	var rdr io.Reader
	if body != nil {
		rdr = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, rdr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decoding %s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

type whoami struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	TokenID string `json:"token_id"`
}

func userCount(t *testing.T, d *daemon.Daemon) int {
	t.Helper()
	n, err := d.Store.CountUsers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBootstrapAdmin: a controller on a store without users makes the
// admin "admin" when it takes the writer lease, with a new token written
// to the bootstrap token file (0600, beside the store), which then works
// as admin over HTTP; a second start on the same store neither rewrites
// the file nor adds a user, even if the file is gone.
func TestBootstrapAdmin(t *testing.T) {
	dir := t.TempDir()
	cfg := peopleConfig(t, dir)
	file := filepath.Join(dir, "bootstrap-admin.token")
	logs := &testsupport.SyncBuffer{}
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(t.Context()) })
	if _, err := os.Stat(file); !os.IsNotExist(err) || userCount(t, d) != 0 {
		t.Fatalf("before the lease: the token file %v, %d users; want neither", err, userCount(t, d))
	}
	if err := d.AcquireWriter(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatalf("after the lease: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("the token file's mode is %v, want 0600", st.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))
	if !strings.HasPrefix(token, auth.TokenPrefix) || len(token) < auth.MinTokenLength {
		t.Fatalf("the token file holds %d characters, want a new %s… token", len(token), auth.TokenPrefix)
	}
	if strings.Contains(logs.String(), token) || !strings.Contains(logs.String(), file) {
		t.Errorf("the log must name the file and never the token:\n%s", logs.String())
	}
	srv := httptest.NewServer(d.API)
	t.Cleanup(srv.Close)
	var me whoami
	if code := get(t, srv.URL, "/v1/whoami", token, &me); code != http.StatusOK || me.User != daemon.BootstrapAdmin || me.Role != string(auth.Admin) {
		t.Fatalf("whoami with the bootstrap token: %d %+v", code, me)
	}
	if code := do(t, http.MethodPost, srv.URL, "/v1/users", token, []byte(`{"name":"resp1","role":"responder"}`), nil); code != http.StatusCreated {
		t.Fatalf("the bootstrap admin adding a user: %d", code)
	}
	srv.Close()
	d.Close(t.Context())

	// Started again: the users are there, the file is left alone.
	d2, base, err := started(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(file); string(again) != string(b) {
		t.Error("the second start rewrote the token file")
	}
	if n := userCount(t, d2); n != 2 {
		t.Errorf("after the second start there are %d users, want the admin and resp1", n)
	}
	if code := get(t, base, "/v1/whoami", token, &me); code != http.StatusOK || me.User != daemon.BootstrapAdmin {
		t.Errorf("the bootstrap token after a restart: %d %+v", code, me)
	}
	d2.Close(t.Context())

	// The file deleted, as the start's warning asks: nothing comes back.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	d3, _, err := started(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) || userCount(t, d3) != 2 {
		t.Errorf("a store with users made the file again (%v) or a user (%d users)", err, userCount(t, d3))
	}
}

// TestBootstrapTokenFromFile: a token written to
// server.bootstrap_token_file before the first start is the admin's, and
// the file is not rewritten; a file too short to hold a token is an error
// naming the setting, without its content, and makes no user.
func TestBootstrapTokenFromFile(t *testing.T) {
	t.Run("pre-written", func(t *testing.T) {
		dir := t.TempDir()
		cfg := peopleConfig(t, dir)
		cfg.Server.BootstrapTokenFile = filepath.Join(t.TempDir(), "admin.token")
		const token = "chosen-by-the-operator-0123456789abcdef"
		if err := os.WriteFile(cfg.Server.BootstrapTokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d, base, err := started(t, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		var me whoami
		if code := get(t, base, "/v1/whoami", token, &me); code != http.StatusOK || me.User != daemon.BootstrapAdmin || me.Role != string(auth.Admin) {
			t.Errorf("whoami with the operator's token: %d %+v", code, me)
		}
		if b, _ := os.ReadFile(cfg.Server.BootstrapTokenFile); string(b) != token+"\n" {
			t.Error("the operator's file was rewritten")
		}
		if _, err := os.Stat(filepath.Join(dir, "bootstrap-admin.token")); !os.IsNotExist(err) {
			t.Errorf("a token file was written beside the store too: %v", err)
		}
		if n := userCount(t, d); n != 1 {
			t.Errorf("%d users, want the admin", n)
		}
	})
	t.Run("too short", func(t *testing.T) {
		cfg := peopleConfig(t, t.TempDir())
		cfg.Server.BootstrapTokenFile = filepath.Join(t.TempDir(), "admin.token")
		const short = "hunter2-secret"
		if err := os.WriteFile(cfg.Server.BootstrapTokenFile, []byte(short), 0o600); err != nil {
			t.Fatal(err)
		}
		d, base, err := started(t, cfg, nil)
		if err == nil {
			t.Fatal("a start with a 14-character bootstrap token succeeded")
		}
		if !strings.Contains(err.Error(), "server.bootstrap_token_file") || strings.Contains(err.Error(), short) {
			t.Errorf("error %q: want it to name server.bootstrap_token_file and not hold the file's content", err)
		}
		if n := userCount(t, d); n != 0 {
			t.Errorf("%d users after a refused bootstrap", n)
		}
		if code := get(t, base, "/v1/whoami", short, nil); code != http.StatusUnauthorized {
			t.Errorf("the short token: %d, want 401", code)
		}
	})
	t.Run("readable by others", func(t *testing.T) {
		cfg := peopleConfig(t, t.TempDir())
		cfg.Server.BootstrapTokenFile = filepath.Join(t.TempDir(), "admin.token")
		if err := os.WriteFile(cfg.Server.BootstrapTokenFile, []byte("chosen-by-the-operator-0123456789abcdef"), 0o644); err != nil {
			t.Fatal(err)
		}
		d, _, err := started(t, cfg, nil)
		if err == nil || !strings.Contains(err.Error(), "readable by others") {
			t.Fatalf("a world-readable admin token file: %v", err)
		}
		if n := userCount(t, d); n != 0 {
			t.Errorf("%d users after a refused bootstrap", n)
		}
	})
}

// TestSharedTokenIsDeprecated: server.api_token still authenticates, as
// the admin shared-api-token, with a warning at start that never holds
// the token; without it there is no warning.
func TestSharedTokenIsDeprecated(t *testing.T) {
	const token = "shared-token-of-old-0123456789abcdef"
	for name, shared := range map[string]string{"with": token, "without": ""} {
		t.Run(name, func(t *testing.T) {
			cfg := peopleConfig(t, t.TempDir())
			cfg.Server.APIToken = shared
			logs := &testsupport.SyncBuffer{}
			_, base, err := started(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			warned := strings.Contains(logs.String(), "server.api_token is deprecated")
			if warned != (shared != "") {
				t.Errorf("warned %t with api_token %q:\n%s", warned, name, logs.String())
			}
			if strings.Contains(logs.String(), token) {
				t.Error("the log holds the shared token")
			}
			var me whoami
			code := get(t, base, "/v1/whoami", token, &me)
			switch {
			case shared != "" && (code != http.StatusOK || me.User != auth.LegacyName || me.Role != string(auth.Admin) || me.TokenID != "legacy"):
				t.Errorf("whoami with the shared token: %d %+v", code, me)
			case shared == "" && code != http.StatusUnauthorized:
				t.Errorf("the shared token without api_token: %d, want 401", code)
			}
		})
	}
}

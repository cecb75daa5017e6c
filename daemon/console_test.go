package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/actions/actionstest"
	"github.com/warden-ir/warden/api/client"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/notify"
)

// TestServeMountsTheConsole: `warden serve` answers the console at /ui/ on
// the API's listener; notifications link to the run's page under
// console.external_url; and a live page's stream does not hold up a
// shutdown (Serve returns while a browser still follows it).
func TestServeMountsTheConsole(t *testing.T) {
	var mu sync.Mutex
	var posts []notify.Message
	chat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m notify.Message
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		posts = append(posts, m)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer chat.Close()

	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Server.Listen = "127.0.0.1:0"
	cfg.Server.BootstrapTokenFile = filepath.Join(dir, "admin.token")
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Console.ExternalURL = "https://warden.example.net"
	cfg.Notify = config.Notify{Default: "default", Channels: []config.Channel{{Name: "default", URL: chat.URL}}}
	cfg.Inventory = demo.Inventory()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	admin, _, err := daemon.BootstrapToken(cfg.Server.BootstrapTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	// Everything but the notification acts on nothing.
	fakes := actionstest.All(actions.NameCaptureVolatile, actions.NameSnapshot, actions.NameIsolate, actions.NameRelease)
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{ExtraActions: fakes})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := d.Listen(cfg.Server.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	defer d.Close(context.WithoutCancel(t.Context()))
	base := "http://" + addr

	adm, err := client.New(base, admin)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, adm)
	res, err := adm.SubmitAlertmanager(t.Context(), demo.SampleAlert(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var run string
	for _, r := range res.Results {
		if r.RunID != "" {
			run = r.RunID
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := adm.Run(t.Context(), run)
		if err == nil && r.Terminal() {
			if r.State != "succeeded" {
				t.Fatalf("the containment %s: %s", r.State, r.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the containment did not finish: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	if len(posts) != 1 || posts[0].Link != "https://warden.example.net/ui/runs/"+run {
		t.Errorf("notifications %+v, want one linking to run %s in the console", posts, run)
	}
	mu.Unlock()

	// A person signs in and follows the incident list live.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: time.Minute}
	lp := getPage(t, browser, base+"/ui/login")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(lp)
	if m == nil {
		t.Fatalf("the sign-in page at /ui/login:\n%s", lp)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/ui/login",
		strings.NewReader(url.Values{"csrf": {m[1]}, "token": {admin}, "next": {"/ui/runs/" + run}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `data-run="`+run+`" data-state="succeeded"`) {
		t.Fatalf("signed in from the notification's link, the run's page (%d) does not show run %s succeeded", resp.StatusCode, run)
	}
	// Bounds how long the test waits for the stream to end, were the
	// server to leave it open.
	streamCtx, stopStream := context.WithTimeout(t.Context(), time.Minute)
	defer stopStream()
	sreq, _ := http.NewRequestWithContext(streamCtx, http.MethodGet, base+"/ui/incidents/live", nil)
	stream, err := (&http.Client{Jar: jar}).Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	rd := bufio.NewReader(stream.Body)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "id: ") {
		t.Fatalf("the live stream's first line %q, %v", line, err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return while a live page was open")
	}
	// The server ended the stream: the browser reads its end, and would
	// reconnect to the next server.
	if _, err := io.ReadAll(rd); err != nil {
		t.Errorf("the live stream after the server stopped: %v, want its end", err)
	}
}

func waitReady(t *testing.T, c *client.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.Ready(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the controller never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getPage(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

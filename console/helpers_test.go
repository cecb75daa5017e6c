package console_test

// These tests drive the real stack (daemon.Build: store, policies,
// controller, API and console) over loopback HTTP, as a browser would:
// cookies, forms and redirects. The catalogue's actions are stand-ins
// that succeed, so runs can be executed to the end.

import (
	"crypto/tls"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/actions/actionstest"
	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/demo"
	"github.com/warden-ir/warden/store"
)

// stack is a controller with its console, served on loopback.
type stack struct {
	d          *daemon.Daemon
	srv        *httptest.Server
	admin      *client.Client
	adminToken string // the bootstrap admin's
}

// newStack builds the daemon with the demo's inventory, succeeding
// stand-ins for the catalogue, and a bootstrap admin. tls serves it over
// HTTPS.
func newStack(t testing.TB, tlsOn bool, mutate func(*config.Config)) *stack {
	t.Helper()
	return newStackWith(t, tlsOn, mutate, auth.NewLimiter(1<<20, time.Millisecond, 1<<16))
}

// newStackWith is newStack with the API's limit on failed
// authentications.
func newStackWith(t testing.TB, tlsOn bool, mutate func(*config.Config), limiter *auth.Limiter) *stack {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Store.Path = filepath.Join(dir, "warden.db")
	cfg.Store.Sync = "normal"
	cfg.Server.BootstrapTokenFile = filepath.Join(dir, "bootstrap-admin.token")
	cfg.Inventory = demo.Inventory()
	if mutate != nil {
		mutate(&cfg)
	}
	token, _, err := daemon.BootstrapToken(cfg.Server.BootstrapTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	fakes := actionstest.All(actions.NameCaptureVolatile, actions.NameSnapshot, actions.NameIsolate, actions.NameRelease,
		actions.NameRevokePeer, actions.NameRotateCredentials, actions.NameNotify)
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{ExtraActions: fakes, AuthLimiter: limiter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(t.Context()) })
	// Holding the lease makes the bootstrap admin and lets tests execute
	// runs themselves (no executor loop runs).
	if err := d.AcquireWriter(t.Context()); err != nil {
		t.Fatal(err)
	}
	s := &stack{d: d}
	if tlsOn {
		s.srv = httptest.NewTLSServer(d.Handler())
	} else {
		s.srv = httptest.NewServer(d.Handler())
	}
	t.Cleanup(s.srv.Close)
	s.adminToken = token
	if s.admin, err = client.New(s.srv.URL, token, client.WithHTTPClient(s.srv.Client())); err != nil {
		t.Fatal(err)
	}
	return s
}

// person adds a user with role and returns their token.
func (s *stack) person(t testing.TB, name, role string) string {
	t.Helper()
	issued, err := s.admin.AddUser(t.Context(), v1.AddUserRequest{Name: name, Role: role, DisplayName: "Test " + name})
	if err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
	return issued.Token
}

// quarantine has a detector report a C2 beacon about gw-osaka and runs the
// containment to the end; it returns the incident.
func (s *stack) quarantine(t testing.TB) string {
	t.Helper()
	ids, err := client.New(s.srv.URL, s.person(t, "ids", "intake"), client.WithHTTPClient(s.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ids.SubmitAlertmanager(t.Context(), demo.SampleAlert(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Results {
		if r.Matched && r.RunID != "" {
			if err := s.d.Controller.ExecuteRun(t.Context(), r.RunID); err != nil {
				t.Fatal(err)
			}
			return r.IncidentID
		}
	}
	t.Fatalf("the alert started no run: %+v", res.Results)
	return ""
}

// askRelease has the person with token ask for gw-osaka's release, with an
// override (the stand-ins check no baseline), and returns the run.
func (s *stack) askRelease(t testing.TB, token, incident string) string {
	t.Helper()
	c, err := client.New(s.srv.URL, token, client.WithHTTPClient(s.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	run, err := c.Release(t.Context(), v1.StartRunbookRequest{Gateway: "gw-osaka", Incident: incident, OverrideReason: "rebuilt from the golden image"})
	if err != nil || run.State != v1.RunAwaitingApproval {
		t.Fatalf("asking for the release: %+v %v", run, err)
	}
	return run.ID
}

// waitingRelease quarantines gw-osaka and has resp1 (a responder) ask
// for its release: the incident, the release run and resp1's token.
func (s *stack) waitingRelease(t testing.TB) (incident, release, resp string) {
	t.Helper()
	incident = s.quarantine(t)
	resp = s.person(t, "resp1", "responder")
	return incident, s.askRelease(t, resp, incident), resp
}

func (s *stack) run(t testing.TB, id string) store.Run {
	t.Helper()
	r, err := s.d.Store.Run(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// browser is a person's browser: a cookie jar, redirects not followed (the
// tests look at each), and Origin set as a browser sets it on forms.
type browser struct {
	s    *stack
	c    *http.Client
	lang string
}

func (s *stack) browser(t testing.TB) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	base := s.srv.Client().Transport.(*http.Transport).Clone()
	if base.TLSClientConfig == nil {
		base.TLSClientConfig = &tls.Config{}
	}
	c := &http.Client{Transport: base, Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{s: s, c: c, lang: "en"}
}

// page is an answer: status, headers, body.
type page struct {
	status int
	header http.Header
	body   string
}

func (p page) location() string { return p.header.Get("Location") }

func (b *browser) do(t testing.TB, req *http.Request) page {
	t.Helper()
	req.Header.Set("Accept-Language", b.lang)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *browser) get(t testing.TB, path string) page {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

// post sends a form from this console's pages (Origin is the console).
func (b *browser) post(t testing.TB, path string, form url.Values) page {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.s.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.s.srv.URL)
	return b.do(t, req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token the forms of p carry.
func csrf(t testing.TB, p page) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token on the page (%d):\n%s", p.status, p.body)
	}
	return html.UnescapeString(m[1])
}

// login signs in with token and returns the page it lands on.
func (b *browser) login(t testing.TB, token string) page {
	t.Helper()
	p := b.get(t, "/ui/login")
	if p.status != http.StatusOK {
		t.Fatalf("GET /ui/login: %d", p.status)
	}
	res := b.post(t, "/ui/login", url.Values{"csrf": {csrf(t, p)}, "token": {token}})
	if res.status != http.StatusSeeOther || !strings.HasPrefix(res.location(), "/ui/") {
		t.Fatalf("signing in: %d %s\n%s", res.status, res.location(), res.body)
	}
	return b.get(t, res.location())
}

// cookie is the console cookie name as the server last set it.
func (b *browser) cookie(t testing.TB, name string) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(b.s.srv.URL + "/ui/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// seqRE finds a page's live region: its stream and the version it was
// drawn at.
var seqRE = regexp.MustCompile(`data-live="([^"]+)" data-seq="(\d+)"`)

func v1ApproveRequest() v1.ApproveRequest { return v1.ApproveRequest{Comment: "checked"} }

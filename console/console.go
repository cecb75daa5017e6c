// Package console is the on-call web console that `warden serve` mounts at
// /ui/ on the API's listener: sign-in with a person's token, an inbox of
// the runs waiting for a person (with the plan and gates in plain words),
// an incident's timeline that follows a run live, the VPN map and the
// release request, in Japanese and English. Pages are rendered on the
// server (html/template); the one script is a small static file that
// follows live pages over server-sent events, so the Content-Security-
// Policy allows no inline script or style.
//
// It owns sign-in sessions (a random id in an HttpOnly, SameSite=Strict
// cookie, kept by its hash in the store, ending at console.session_ttl),
// CSRF protection of every form, the pages and their wording. It must not
// decide or act: every action is a request to the API made as the
// signed-in person (api.Server.AsPrincipal), so roles, four eyes,
// validation and the audit are the API's, never the page's; what it shows
// it reads through the read paths the API's own routes use.
package console

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/internal/clock"
)

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every console page: scripts and
// styles only from the console's own static files, no inline code, no
// eval, no frames, forms only to the console.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// DefaultLiveInterval is how often a live page checks for a change.
const DefaultLiveInterval = time.Second

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// API is the HTTP API the console acts through: AsPrincipal serves a
// request as the signed-in person (api.Server implements it).
type API interface {
	AsPrincipal(p auth.Principal) http.Handler
}

// Options configure a Console.
type Options struct {
	// API is where every action goes, as the signed-in person. Required.
	API API
	// Auth checks the token typed at sign-in, with the API's per-address
	// failure limit. Required.
	Auth *auth.Authenticator
	// Controller is read for what the pages show (the store, the
	// inventory, postures, plans); the console never acts through it.
	// Required.
	Controller *controller.Controller
	// Ledger lists evidence and its chain of custody; nil shows none.
	Ledger *evidence.Ledger
	// SessionTTL is how long a sign-in lasts (console.session_ttl).
	SessionTTL time.Duration
	// SecureCookies marks cookies Secure. Cookies are Secure on a request
	// that came over TLS in any case; set this when TLS ends at a proxy in
	// front (console.external_url is https).
	SecureCookies bool
	// LiveInterval is how often live pages look for changes (default
	// DefaultLiveInterval).
	LiveInterval time.Duration
	Clock        clock.Clock
	Log          *slog.Logger
}

// Console is the console's HTTP handler, for every path under Prefix.
type Console struct {
	opt   Options
	mux   *http.ServeMux
	pages *pages
	// done ends the live streams when the server shuts down (Close).
	done     chan struct{}
	doneOnce sync.Once
}

// New builds the console.
func New(opt Options) (*Console, error) {
	if opt.API == nil || opt.Auth == nil || opt.Controller == nil {
		return nil, errors.New("creating the console: the API, an authenticator and the controller are required")
	}
	if opt.SessionTTL <= 0 {
		return nil, errors.New("creating the console: a session lifetime is required (console.session_ttl)")
	}
	if opt.LiveInterval <= 0 {
		opt.LiveInterval = DefaultLiveInterval
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	pg, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{opt: opt, mux: http.NewServeMux(), pages: pg, done: make(chan struct{})}
	c.routes()
	return c, nil
}

// Close ends every live stream (the server is shutting down); pages still
// answer.
func (c *Console) Close() { c.doneOnce.Do(func() { close(c.done) }) }

// routes registers every page and form. A page needs a session (without
// one it redirects to the sign-in page); a form also needs the session's
// CSRF token. Only the sign-in page and the static files are public.
func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	c.mux.Handle("GET "+Prefix+"static/", c.staticFiles(files))
	c.mux.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"inbox", http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET "+Prefix+"login", c.loginPage)
	c.mux.HandleFunc("POST "+Prefix+"login", c.login)
	c.mux.HandleFunc("POST "+Prefix+"lang", c.switchLanguage)
	c.mux.Handle("POST "+Prefix+"logout", c.form(c.logout))

	c.mux.Handle("GET "+Prefix+"inbox", c.page(c.inbox))
	c.mux.Handle("POST "+Prefix+"breaker/reset", c.form(c.resetBreaker))
	c.mux.Handle("GET "+Prefix+"runs/{id}", c.page(c.runPage))
	c.mux.Handle("POST "+Prefix+"runs/{id}/approve", c.form(c.approve))
	c.mux.Handle("POST "+Prefix+"runs/{id}/cancel", c.form(c.cancel))
	c.mux.Handle("GET "+Prefix+"incidents", c.page(c.incidents))
	c.mux.Handle("GET "+Prefix+"incidents/live", c.stream(c.incidentsLive))
	c.mux.Handle("GET "+Prefix+"incidents/{id}", c.page(c.incident))
	c.mux.Handle("GET "+Prefix+"incidents/{id}/live", c.stream(c.incidentLive))
	c.mux.Handle("GET "+Prefix+"incidents/{id}/report", c.page(c.report))
	c.mux.Handle("GET "+Prefix+"map", c.page(c.fleetMap))
	c.mux.Handle("GET "+Prefix+"map/live", c.stream(c.fleetMapLive))
	c.mux.Handle("GET "+Prefix+"release", c.page(c.releasePage))
	c.mux.Handle("POST "+Prefix+"release", c.form(c.requestRelease))
}

// ServeHTTP serves every path under Prefix with the console's security
// headers, 404 and 405 answers included.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if _, pattern := c.mux.Handler(r); pattern == "" {
		c.unrouted(w, r)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// unrouted answers a path or method no route takes: 405 naming the
// methods that are allowed (a GET never stands in for a form), 404
// otherwise, both as pages.
func (c *Console) unrouted(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		other := r.Clone(r.Context())
		other.Method = m
		if _, pattern := c.mux.Handler(other); pattern != "" {
			allow = append(allow, m)
		}
	}
	rq := c.request(w, r)
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		rq.fail(http.StatusMethodNotAllowed, rq.t("error.method", r.Method, strings.Join(allow, ", ")))
		return
	}
	rq.fail(http.StatusNotFound, rq.t("error.not_found"))
}

// staticFiles serves the embedded script, style sheet and icon; they may
// be cached briefly (they change only with the binary).
func (c *Console) staticFiles(files http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// page wraps a handler that needs a session: without one (or with one
// that ended) it redirects to the sign-in page, which comes back here.
func (c *Console) page(h func(*request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rq := c.request(w, r)
		if !rq.checked() {
			return
		}
		if !rq.signedIn() {
			c.toLogin(rq)
			return
		}
		h(rq)
	})
}

// form wraps a POST handler: it needs a session and the session's CSRF
// token in the form, and a same-origin request. Nothing is changed for a
// request that lacks either.
func (c *Console) form(h func(*request)) http.Handler {
	return c.page(func(rq *request) {
		if !rq.formAllowed(rq.sess.csrf) {
			rq.fail(http.StatusForbidden, rq.t("csrf.refused"))
			return
		}
		h(rq)
	})
}

// toLogin redirects to the sign-in page with the page asked for as next
// (a GET only: a form's target is no page to come back to).
func (c *Console) toLogin(rq *request) {
	next := ""
	if rq.r.Method == http.MethodGet {
		next = rq.r.URL.RequestURI()
	}
	target := Prefix + "login"
	if next != "" && localNext(next) != "" {
		target += "?next=" + url.QueryEscape(next)
	}
	http.Redirect(rq.w, rq.r, target, http.StatusSeeOther)
}

// localNext is next when it is a console path on this server, "" otherwise
// (no open redirect to another site).
func localNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return ""
	}
	return next
}

// request is one request to the console: the session (if any), the
// language and the writer.
type request struct {
	c    *Console
	w    http.ResponseWriter
	r    *http.Request
	ctx  context.Context
	sess *session
	// sessErr says the store could not check the request's session.
	sessErr error
	lang    string
}

func (c *Console) request(w http.ResponseWriter, r *http.Request) *request {
	rq := &request{c: c, w: w, r: r, ctx: r.Context()}
	rq.lang = chooseLanguage(r)
	rq.sess, rq.sessErr = c.findSession(rq)
	if rq.sessErr != nil {
		c.opt.Log.Error("console: cannot check a session", "path", r.URL.Path, "err", rq.sessErr)
	}
	return rq
}

func (rq *request) signedIn() bool { return rq.sess != nil }

// checked answers 503 when the store could not check the session: the
// person is neither signed out nor let in, and tries again.
func (rq *request) checked() bool {
	if rq.sessErr == nil {
		return true
	}
	rq.w.Header().Set("Retry-After", "5")
	rq.fail(http.StatusServiceUnavailable, rq.t("error.session"))
	return false
}

// t is a phrase in the request's language.
func (rq *request) t(key string, args ...any) string { return phrase(rq.lang, key, args...) }

// internal logs err and answers 500 without its text (it may name paths).
func (rq *request) internal(what string, err error) {
	rq.c.opt.Log.Error("console: "+what, "path", rq.r.URL.Path, "err", err)
	rq.fail(http.StatusInternalServerError, rq.t("error.internal"))
}

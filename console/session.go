package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/store"
)

// Cookie names. Every cookie is HttpOnly, SameSite=Strict, limited to
// Prefix, and Secure under TLS.
const (
	// SessionCookie holds the session id, a 256-bit random bearer secret;
	// the store keeps only its SHA-256.
	SessionCookie = "warden_session"
	// LoginCookie holds the sign-in form's CSRF token before there is a
	// session (double submit: the form must carry the same value).
	LoginCookie = "warden_login"
	// LangCookie holds the language a person switched to.
	LangCookie = "warden_lang"
)

// csrfField is the form field every form carries its CSRF token in.
const csrfField = "csrf"

// session is a signed-in person.
type session struct {
	hash    string
	p       auth.Principal
	csrf    string
	expires time.Time
	// display is the person's display name, when they have one.
	display string
}

// newSecret is 256 random bits, base64url.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// validSecret says whether s looks like newSecret's output (anything else
// in a cookie is not looked up).
func validSecret(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// sessionHash is what the store keeps of a session id.
func sessionHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// csrfToken is the session's CSRF token: derived from the session id with
// HMAC, so it needs no storage, differs from the id (a page that leaks it
// does not leak the session) and ends with the session.
func csrfToken(id string) string {
	m := hmac.New(sha256.New, []byte(id))
	m.Write([]byte("warden console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// secure says whether cookies set on this request must be Secure.
func (rq *request) secure() bool { return rq.r.TLS != nil || rq.c.opt.SecureCookies }

// setCookie sets a console cookie (maxAge < 0 deletes it).
func (rq *request) setCookie(name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: rq.secure(), SameSite: http.SameSiteStrictMode}
	switch {
	case maxAge < 0:
		c.MaxAge = -1
	case maxAge > 0:
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(rq.w, c)
}

// findSession returns the request's live session, or nil. A session ends
// when it expires, when its user is disabled or gone, or when the token
// it was opened with no longer works; an ended one is removed. An error
// says the store could not tell: the session is neither used nor ended.
func (c *Console) findSession(rq *request) (*session, error) {
	ck, err := rq.r.Cookie(SessionCookie)
	if err != nil || !validSecret(ck.Value) {
		return nil, nil
	}
	hash := sessionHash(ck.Value)
	st := c.opt.Controller.Store()
	s, err := st.Session(rq.ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading a session: %w", err)
	}
	p, display, why, err := c.sessionPrincipal(rq, s)
	if err != nil {
		return nil, err
	}
	if why != "" {
		c.endSession(rq, hash, why)
		return nil, nil
	}
	return &session{hash: hash, p: p, csrf: csrfToken(ck.Value), expires: s.ExpiresAt, display: display}, nil
}

// sessionPrincipal is who a stored session acts as now, or why it ended.
// A person with a token in the store is read again on every request, so
// that disabling them or revoking the token takes effect at once and their
// role is the current one; a single sign-on person is refused once they
// are disabled in the store.
func (c *Console) sessionPrincipal(rq *request, s store.Session) (p auth.Principal, display, why string, err error) {
	if !c.opt.Clock.Now().Before(s.ExpiresAt) {
		return auth.Principal{}, "", "expired", nil
	}
	st := c.opt.Controller.Store()
	u, err := st.User(rq.ctx, s.User)
	switch {
	case errors.Is(err, store.ErrNotFound) && s.TokenID == auth.OIDCTokenID:
		return auth.Principal{Name: s.User, Role: auth.Role(s.Role), TokenID: s.TokenID}, "", "", nil
	case errors.Is(err, store.ErrNotFound):
		return auth.Principal{}, "", "user gone", nil
	case err != nil:
		return auth.Principal{}, "", "", fmt.Errorf("reading the user of a session: %w", err)
	case u.Disabled:
		return auth.Principal{}, "", "user disabled", nil
	}
	role := auth.Role(u.Role)
	if s.TokenID == auth.OIDCTokenID {
		role = auth.Role(s.Role)
	} else {
		toks, err := st.ActiveTokens(rq.ctx, s.User)
		if err != nil {
			return auth.Principal{}, "", "", fmt.Errorf("reading the tokens of a session's user: %w", err)
		}
		if !slices.ContainsFunc(toks, func(t store.APIToken) bool { return t.ID == s.TokenID }) {
			return auth.Principal{}, "", "token revoked", nil
		}
	}
	return auth.Principal{Name: s.User, Role: role, TokenID: s.TokenID}, u.DisplayName, "", nil
}

// endSession removes a session that ended and the cookie that named it.
func (c *Console) endSession(rq *request, hash, why string) {
	err := c.opt.Controller.Store().Tx(rq.ctx, func(tx store.Tx) error {
		_, err := tx.DeleteSession(rq.ctx, hash)
		return err
	})
	if err != nil {
		c.opt.Log.Error("console: removing an ended session", "err", err)
	}
	c.opt.Log.Info("console: session ended", "why", why)
	rq.setCookie(SessionCookie, "", -1)
}

// startSession signs p in: a new session in the store (audited, with the
// token p signed in with) and its cookie.
func (c *Console) startSession(rq *request, p auth.Principal) error {
	id, err := newSecret()
	if err != nil {
		return err
	}
	now := c.opt.Clock.Now()
	expires := now.Add(c.opt.SessionTTL)
	if !p.Expires.IsZero() && p.Expires.Before(expires) {
		// A single sign-on session ends with its ID token: the issuer
		// decides how long a sign-in lasts.
		expires = p.Expires
	}
	s := store.Session{Hash: sessionHash(id), User: p.Name, Role: string(p.Role), TokenID: p.TokenID, CreatedAt: now, ExpiresAt: expires}
	ctx := audit.WithCredential(rq.ctx, p.Actor(), p.TokenID)
	err = c.opt.Controller.Store().Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.DeleteExpiredSessions(ctx, now); err != nil {
			return err
		}
		if err := tx.InsertSession(ctx, s); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: now, Actor: p.Actor(), Action: "console.signed_in", Subject: p.Name,
			Data: auditJSON(map[string]any{"role": string(p.Role), "expires_at": s.ExpiresAt.UTC().Format(time.RFC3339), "source": sourceOf(rq.r)})})
	})
	if err != nil {
		return err
	}
	rq.setCookie(SessionCookie, id, expires.Sub(now))
	rq.setCookie(LoginCookie, "", -1)
	return nil
}

// formAllowed checks a POST: the form's CSRF token is want, and the
// request says it came from this origin (the browser's Origin and
// Sec-Fetch-Site headers, when it sends them).
func (rq *request) formAllowed(want string) bool {
	if want == "" || !sameOrigin(rq.r) {
		return false
	}
	if err := rq.r.ParseForm(); err != nil {
		return false
	}
	got := rq.r.PostForm.Get(csrfField)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin refuses a request the browser says came from another site.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" && r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// loginToken is the sign-in form's CSRF token from its cookie, a new one
// (set as the cookie) when there is none.
func (rq *request) loginToken() string {
	if ck, err := rq.r.Cookie(LoginCookie); err == nil && validSecret(ck.Value) {
		return ck.Value
	}
	v, err := newSecret()
	if err != nil {
		return ""
	}
	rq.setCookie(LoginCookie, v, time.Hour)
	return v
}

// formToken is the CSRF token forms on this page carry: the session's, or
// before sign-in the sign-in cookie's.
func (rq *request) formToken() string {
	if rq.sess != nil {
		return rq.sess.csrf
	}
	return rq.loginToken()
}

// sourceOf is the peer address of r (as package auth counts it).
func sourceOf(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = strings.Trim(host[:i], "[]")
	}
	return host
}

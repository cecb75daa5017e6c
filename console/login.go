package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/store"
)

// loginView is the sign-in page.
type loginView struct {
	Next     string
	Followed bool
	Lead     string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	rq := c.request(w, r)
	next := localNext(r.URL.Query().Get("next"))
	if rq.signedIn() {
		if next == "" {
			next = Prefix + "inbox"
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	rq.showLogin(http.StatusOK, next, "")
}

func (rq *request) showLogin(status int, next, msg string) {
	tr := translator{rq.lang}
	v := rq.newView("login", rq.t("login.title"), loginView{Next: next, Followed: next != "", Lead: rq.t("login.lead", tr.duration(rq.c.opt.SessionTTL))})
	v.Error = msg
	rq.render(status, "login", v)
}

// login checks the token typed in the form (the API's authenticator, its
// per-address failure limit included) and starts a session. The token is
// never kept, logged or shown back.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	rq := c.request(w, r)
	ck, err := r.Cookie(LoginCookie)
	if err != nil || !validSecret(ck.Value) || !rq.formAllowed(ck.Value) {
		rq.fail(http.StatusForbidden, rq.t("csrf.refused"))
		return
	}
	next := localNext(r.PostForm.Get("next"))
	p, err := c.opt.Auth.AuthenticateToken(r, r.PostForm.Get("token"))
	var th *auth.ThrottledError
	switch {
	case errors.As(err, &th):
		w.Header().Set("Retry-After", strconv.Itoa(int(th.RetryAfter.Round(time.Second)/time.Second)))
		rq.showLogin(http.StatusTooManyRequests, next, rq.t("login.throttled", th.RetryAfter.Round(time.Second)))
		return
	case auth.Refused(err):
		c.opt.Log.Info("console: sign-in refused", "source", sourceOf(r), "reason", err.Error())
		rq.showLogin(http.StatusUnauthorized, next, rq.t("login.refused"))
		return
	case err != nil:
		c.opt.Log.Error("console: cannot check a sign-in", "err", err)
		rq.showLogin(http.StatusServiceUnavailable, next, rq.t("login.down"))
		return
	case p.TokenID == auth.LegacyTokenID:
		// One shared admin cannot be told apart in the audit, nor held to
		// four eyes: the console is for people.
		rq.showLogin(http.StatusForbidden, next, rq.t("login.legacy"))
		return
	case !p.Role.Can(auth.Read):
		rq.showLogin(http.StatusForbidden, next, rq.t("login.intake"))
		return
	}
	if err := c.startSession(rq, p); err != nil {
		rq.internal("starting a session", err)
		return
	}
	c.opt.Log.Info("console: signed in", "user", p.Name, "role", string(p.Role), "token_id", p.TokenID)
	if next == "" {
		next = Prefix + "inbox"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session (audited) and clears its cookie.
func (c *Console) logout(rq *request) {
	p := rq.sess.p
	ctx := audit.WithCredential(rq.ctx, p.Actor(), p.TokenID)
	err := c.opt.Controller.Store().Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.DeleteSession(ctx, rq.sess.hash); err != nil {
			return err
		}
		return tx.Audit(ctx, audit.Entry{At: c.opt.Clock.Now(), Actor: p.Actor(), Action: "console.signed_out", Subject: p.Name})
	})
	if err != nil {
		rq.internal("ending a session", err)
		return
	}
	rq.setCookie(SessionCookie, "", -1)
	rq.sess = nil
	rq.seeOther(Prefix+"login", "signed_out")
}

// switchLanguage remembers the language a person chose (a cookie: no
// state on the server changes) and goes back to the page.
func (c *Console) switchLanguage(w http.ResponseWriter, r *http.Request) {
	rq := c.request(w, r)
	want := ""
	if rq.sess != nil {
		want = rq.sess.csrf
	} else if ck, err := r.Cookie(LoginCookie); err == nil && validSecret(ck.Value) {
		want = ck.Value
	}
	if !rq.formAllowed(want) {
		rq.fail(http.StatusForbidden, rq.t("csrf.refused"))
		return
	}
	lang := r.PostForm.Get("lang")
	if lang != LangJapanese && lang != LangEnglish {
		rq.fail(http.StatusBadRequest, "lang: ja or en")
		return
	}
	rq.setCookie(LangCookie, lang, 365*24*time.Hour)
	next := localNext(r.PostForm.Get("next"))
	if next == "" {
		next = Prefix + "inbox"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// auditJSON encodes audit data.
func auditJSON(v map[string]any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/internal/textsafe"
)

// pageNames are the templates with a page of their own; each is parsed
// with layout.html and parts.html.
var pageNames = []string{"login", "inbox", "run", "incidents", "incident", "map", "release", "error"}

// pages are the parsed templates, by page name.
type pages map[string]*template.Template

// cardData, gatesData and pictureData hand a part its data and the page's
// view.
type cardData struct {
	Run  runCard
	V    view
	Done bool
}

type gatesData struct {
	Gates []gateLine
	L     translator
}

type pictureData struct {
	T timeline
	V view
}

var funcs = template.FuncMap{
	"cardOf":    func(r runCard, v view, done bool) cardData { return cardData{r, v, done} },
	"gatesOf":   func(g []gateLine, v view) gatesData { return gatesData{g, v.L} },
	"pictureOf": func(t timeline, v view) pictureData { return pictureData{t, v} },
	"join":      func(s []string) string { return strings.Join(s, ", ") },
	// line shows text that came from outside (alerts, labels, people)
	// with hidden and control characters as visible escapes.
	"line":  textsafe.Line,
	"lower": strings.ToLower,
	"short": func(s string, n int) string {
		if r := []rune(s); len(r) > n {
			return string(r[:n-1]) + "…"
		}
		return s
	},
}

func parsePages() (*pages, error) {
	out := pages{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parsing the console's %s page: %w", name, err)
		}
		out[name] = t
	}
	return &out, nil
}

// view is what every page's template gets.
type view struct {
	L         translator
	Lang      string
	OtherLang string
	// Me is the signed-in person (nil on the sign-in page).
	Me     *auth.Principal
	MeName string
	// CanRespond: the role may act on runs (responder and up); the
	// controller still decides each action.
	CanRespond bool
	CSRF       string
	// Here is the page's own address, where the language switch returns.
	Here  string
	Nav   string
	Title string
	Flash string
	Error string
	Page  any
}

// newView is the common part of a page's view.
func (rq *request) newView(nav, title string, page any) view {
	v := view{L: translator{rq.lang}, Lang: rq.lang, OtherLang: otherLanguage(rq.lang), CSRF: rq.formToken(), Here: rq.r.URL.RequestURI(),
		Nav: nav, Title: title, Page: page}
	if rq.r.Method != http.MethodGet {
		v.Here = Prefix + nav
	}
	if rq.sess != nil {
		p := rq.sess.p
		v.Me, v.MeName = &p, p.Name
		if rq.sess.display != "" {
			v.MeName = rq.sess.display + " (" + p.Name + ")"
		}
		v.CanRespond = p.Role.Can(auth.Respond)
	}
	if done := rq.r.URL.Query().Get("done"); done != "" {
		if _, ok := phrases[LangEnglish]["done."+done]; ok {
			v.Flash = rq.t("done." + done)
		}
	}
	return v
}

// render writes a page with status.
func (rq *request) render(status int, name string, v view) {
	t := (*rq.c.pages)[name]
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		rq.c.opt.Log.Error("console: rendering a page", "page", name, "err", err)
		http.Error(rq.w, "rendering the page failed; see the controller log", http.StatusInternalServerError)
		return
	}
	rq.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	rq.w.WriteHeader(status)
	_, _ = rq.w.Write(b.Bytes())
}

// fragment renders one named template of a page (a live region) to HTML.
func (c *Console) fragment(page, name string, v view) (string, error) {
	var b bytes.Buffer
	if err := (*c.pages)[page].ExecuteTemplate(&b, name, v); err != nil {
		return "", fmt.Errorf("rendering %s of the %s page: %w", name, page, err)
	}
	return b.String(), nil
}

// fail answers status with a page that says msg.
func (rq *request) fail(status int, msg string) {
	v := rq.newView("", rq.t("error.title"), nil)
	v.Error = msg
	rq.render(status, "error", v)
}

// seeOther redirects after a form to a page, with a done message.
func (rq *request) seeOther(path, done string) {
	if done != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "done=" + url.QueryEscape(done)
	}
	http.Redirect(rq.w, rq.r, path, http.StatusSeeOther)
}

// when is a time for people, in zone (the site's), with the zone's name.
func when(t time.Time, zone *time.Location) string {
	if t.IsZero() {
		return "—"
	}
	if zone == nil {
		zone = time.UTC
	}
	return t.In(zone).Format("2006-01-02 15:04:05 MST")
}

// since is a short duration for people ("1.2s", "3m4s").
func since(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

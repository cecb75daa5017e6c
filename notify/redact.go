package notify

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/go-retryablehttp"
)

// redactor removes channel secrets from text bound for logs and errors.
type redactor struct {
	// secrets replaces known secret strings (HMAC keys, header values, URL
	// user info, paths and query values), longest first.
	secrets *strings.Replacer
}

const redacted = "[REDACTED]"

// minSecretLen keeps tiny values ("1", "ok") from being replaced all over a
// message; such values are not secrets worth the noise.
const minSecretLen = 4

var urlRe = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)

func newRedactor(channels []Channel) *redactor {
	var list []string
	add := func(s string) {
		if len(s) >= minSecretLen && !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	for _, c := range channels {
		add(c.Secret)
		for _, v := range c.Headers {
			add(v)
		}
		if u, err := url.Parse(c.URL); err == nil {
			add(c.URL)
			if u.User != nil {
				add(u.User.String())
				add(u.User.Username())
				if p, ok := u.User.Password(); ok {
					add(p)
				}
			}
			add(u.RawQuery)
			for _, vs := range u.Query() {
				for _, v := range vs {
					add(v)
				}
			}
			if u.Path != "" && u.Path != "/" {
				add(u.EscapedPath())
				add(u.Path)
			}
		}
	}
	slices.SortFunc(list, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(list))
	for _, s := range list {
		pairs = append(pairs, s, redacted)
	}
	return &redactor{secrets: strings.NewReplacer(pairs...)}
}

// String removes secrets from s: every URL is reduced to scheme and host,
// then known secret values are replaced.
func (r *redactor) String(s string) string {
	s = urlRe.ReplaceAllStringFunc(s, redactURL)
	return r.secrets.Replace(s)
}

// redactURL keeps a URL's scheme and host. User info, query and fragment
// may hold credentials; so may the path (chat webhooks put their token
// there), so it goes too.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redacted
	}
	out := u.Scheme + "://" + u.Host
	if u.User != nil {
		out = u.Scheme + "://" + redacted + "@" + u.Host
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		out += "/" + redacted
	}
	return out
}

// value redacts one structured log value.
func (r *redactor) value(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return r.String(x)
	case error:
		return r.String(x.Error())
	case *url.URL:
		if x == nil {
			return ""
		}
		return r.String(x.String())
	case fmt.Stringer:
		return r.String(x.String())
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, bool:
		return x
	}
	return r.String(fmt.Sprint(v))
}

// Error returns an error whose message has secrets removed and which
// unwraps to cause (itself free of URLs) so errors.Is keeps working for
// context errors.
func (r *redactor) Error(msg string, cause error) error {
	if cause == nil {
		return errors.New(r.String(msg))
	}
	return &redactedError{msg: r.String(msg + ": " + cause.Error()), cause: cause}
}

type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// retryLogger adapts slog to retryablehttp's LeveledLogger and redacts every
// value: retryablehttp logs URLs (it hides only passwords) and errors that
// embed them.
type retryLogger struct {
	log *slog.Logger
	r   *redactor
}

var _ retryablehttp.LeveledLogger = retryLogger{}

func (l retryLogger) args(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		if i%2 == 0 {
			out[i] = v // keys are retryablehttp's own constants
			continue
		}
		out[i] = l.r.value(v)
	}
	return out
}

// Error is used by retryablehttp for failed attempts that may still be
// retried; Sender logs the final outcome itself, so these are warnings.
func (l retryLogger) Error(msg string, kv ...any) { l.log.Warn(l.r.String(msg), l.args(kv)...) }
func (l retryLogger) Warn(msg string, kv ...any)  { l.log.Warn(l.r.String(msg), l.args(kv)...) }
func (l retryLogger) Info(msg string, kv ...any)  { l.log.Info(l.r.String(msg), l.args(kv)...) }
func (l retryLogger) Debug(msg string, kv ...any) { l.log.Debug(l.r.String(msg), l.args(kv)...) }

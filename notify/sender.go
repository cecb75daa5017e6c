package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/internal/textsafe"
)

// Header names set on every notification.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderSignature      = intake.SignatureHeader
)

// Defaults, overridable with options.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultRetryMax     = 4
	DefaultRetryWaitMin = 200 * time.Millisecond
	DefaultRetryWaitMax = 5 * time.Second
	DefaultHistorySize  = 4096
)

// Channel is one notification destination.
type Channel struct {
	// Name is how runbooks and config refer to the channel.
	Name string `mapstructure:"name" json:"name" yaml:"name"`
	// URL receives a JSON POST. It may carry a token (user info, path or
	// query); it is never logged or put in an error.
	URL string `mapstructure:"url" json:"url" yaml:"url"`
	// Secret, when set, signs each body (X-Warden-Signature). Never logged.
	Secret string `mapstructure:"secret" json:"-" yaml:"secret"`
	// Headers are added to every request (e.g. Authorization). Their values
	// are treated as secrets.
	Headers map[string]string `mapstructure:"headers" json:"-" yaml:"headers,omitempty"`
	// Timeout bounds one attempt. Default 10s.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// StepLine summarises one step of a run in a notification.
type StepLine struct {
	Name       string `json:"name"`
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
}

// Message is the JSON body of a notification.
type Message struct {
	Incident string     `json:"incident,omitempty"`
	Gateway  string     `json:"gateway,omitempty"`
	Site     string     `json:"site,omitempty"`
	Severity string     `json:"severity,omitempty"`
	Title    string     `json:"title"`
	Text     string     `json:"text,omitempty"`
	Run      string     `json:"run,omitempty"`
	Steps    []StepLine `json:"steps,omitempty"`
	Time     time.Time  `json:"time"`
	// Link is the page of the run (or of the incident) in the web
	// console, under WithConsoleURL's address; set by the Sender. Following
	// it asks for sign-in; it changes nothing.
	Link string `json:"link,omitempty"`
}

// sanitised is m as a person may see it in a chat client: control, bidi
// and other invisible characters from alerts, runbook parameters or
// people's text become visible escapes (\x1b, \u202e). JSON would carry
// them through (an ESC is only encoded as \u001b, which the receiver
// decodes back), so this is done before encoding. Text keeps its line
// breaks; every other field is one line.
func (m Message) sanitised() Message {
	line := textsafe.Line
	m.Incident, m.Gateway, m.Site, m.Severity = line(m.Incident), line(m.Gateway), line(m.Site), line(m.Severity)
	m.Title, m.Text, m.Run, m.Link = line(m.Title), textsafe.Text(m.Text), line(m.Run), line(m.Link)
	if m.Steps != nil {
		steps := make([]StepLine, len(m.Steps))
		for i, st := range m.Steps {
			st.Name, st.Status = line(st.Name), line(st.Status)
			steps[i] = st
		}
		m.Steps = steps
	}
	return m
}

// Delivery records the outcome of one Send.
type Delivery struct {
	Channel     string    `json:"channel"`
	Status      int       `json:"status"` // last HTTP status; 0 when no response arrived
	Attempts    int       `json:"attempts"`
	DeliveredAt time.Time `json:"delivered_at"` // zero unless Status is 2xx
}

// OK reports whether the receiver accepted the notification (2xx).
func (d Delivery) OK() bool { return d.Status >= 200 && d.Status < 300 }

// Option changes a Sender's defaults.
type Option func(*config)

type config struct {
	retryMax     int
	retryWaitMin time.Duration
	retryWaitMax time.Duration
	historySize  int
	clock        clock.Clock
	transport    http.RoundTripper
	consoleURL   string
}

// WithRetry sets how many times a failed attempt is retried and the bounds
// of the exponential backoff between attempts (Retry-After is honoured up
// to waitMax).
func WithRetry(retryMax int, waitMin, waitMax time.Duration) Option {
	return func(c *config) { c.retryMax, c.retryWaitMin, c.retryWaitMax = retryMax, waitMin, waitMax }
}

// WithHistorySize bounds how many deliveries are remembered by key.
func WithHistorySize(n int) Option { return func(c *config) { c.historySize = n } }

// WithConsoleURL links every message to its run's page (else its
// incident's) in the web console at base (console.external_url,
// "https://warden.example.net"); a message that names neither links to
// the inbox.
func WithConsoleURL(base string) Option {
	return func(c *config) { c.consoleURL = strings.TrimRight(base, "/") }
}

// ConsoleLink is the console page of a run, else of an incident, else
// the inbox, under base ("" when base is).
func ConsoleLink(base, run, incident string) string {
	base = strings.TrimRight(base, "/")
	switch {
	case base == "":
		return ""
	case run != "":
		return base + "/ui/runs/" + url.PathEscape(run)
	case incident != "":
		return base + "/ui/incidents/" + url.PathEscape(incident)
	}
	return base + "/ui/inbox"
}

// WithClock injects the clock used for signatures, message times and
// delivery times (default clock.Real).
func WithClock(c clock.Clock) Option { return func(cfg *config) { cfg.clock = c } }

// Sender posts notifications to named channels. Safe for concurrent use.
type Sender struct {
	channels map[string]*channel
	names    []string
	log      *slog.Logger
	redact   *redactor
	clock    clock.Clock
	// consoleURL is WithConsoleURL's base, "" for no links.
	consoleURL string

	mu       sync.Mutex
	history  map[string]Delivery
	order    []string // keys in insertion order, for eviction
	maxHist  int
	inflight map[string]chan struct{}
}

type channel struct {
	Channel
	client *retryablehttp.Client
}

var headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// NewSender validates the channels and builds a Sender. URLs must be
// absolute http or https; names must be unique and non-empty. Errors name
// the channel, never its URL or secrets. An empty list is allowed: the
// notify action then records that no channel is configured.
func NewSender(channels []Channel, log *slog.Logger, opts ...Option) (*Sender, error) {
	cfg := config{
		retryMax:     DefaultRetryMax,
		retryWaitMin: DefaultRetryWaitMin,
		retryWaitMax: DefaultRetryWaitMax,
		historySize:  DefaultHistorySize,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.retryMax < 0 || cfg.retryWaitMin < 0 || cfg.retryWaitMax < cfg.retryWaitMin {
		return nil, errors.New("configuring notify: retry settings must be non-negative with waitMax >= waitMin")
	}
	if cfg.historySize <= 0 {
		cfg.historySize = DefaultHistorySize
	}
	if cfg.clock == nil {
		cfg.clock = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.transport = cleanhttp.DefaultPooledTransport()
	s := &Sender{
		consoleURL: cfg.consoleURL,
		channels:   map[string]*channel{},
		log:        log,
		redact:     newRedactor(channels),
		clock:      cfg.clock,
		history:    map[string]Delivery{},
		maxHist:    cfg.historySize,
		inflight:   map[string]chan struct{}{},
	}
	for i, c := range channels {
		if err := validateChannel(c); err != nil {
			return nil, fmt.Errorf("configuring notify channel %d (%q): %w", i, c.Name, err)
		}
		if _, dup := s.channels[c.Name]; dup {
			return nil, fmt.Errorf("configuring notify channel %d (%q): duplicate name", i, c.Name)
		}
		if c.Timeout == 0 {
			c.Timeout = DefaultTimeout
		}
		s.channels[c.Name] = &channel{Channel: c, client: s.newClient(c, cfg)}
		s.names = append(s.names, c.Name)
	}
	return s, nil
}

func validateChannel(c Channel) error {
	if strings.TrimSpace(c.Name) == "" || strings.ContainsAny(c.Name, " \t\r\n") {
		return errors.New("name: is required and must not contain spaces")
	}
	u, err := url.Parse(c.URL)
	if err != nil { // url.Parse's error repeats the URL: do not wrap it
		return errors.New("url: is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("url: scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("url: has no host")
	}
	if c.Timeout < 0 {
		return errors.New("timeout: must not be negative")
	}
	for k, v := range c.Headers {
		if !headerNameRe.MatchString(k) {
			return fmt.Errorf("headers: %q is not a valid header name", k)
		}
		switch http.CanonicalHeaderKey(k) {
		case HeaderIdempotencyKey, HeaderSignature, "Content-Type", "Content-Length", "Host":
			return fmt.Errorf("headers: %s is set by Warden", http.CanonicalHeaderKey(k))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("headers: value of %s contains a line break or NUL", k)
		}
	}
	return nil
}

// attemptsKey carries a per-Send attempt counter through the request
// context, because retryablehttp's hooks are per client, not per request.
type attemptsKey struct{}

func (s *Sender) newClient(c Channel, cfg config) *retryablehttp.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{
		Transport: cfg.transport,
		Timeout:   c.Timeout,
		// A redirect would resend the signature and custom headers to a
		// place nobody configured: treat 3xx as a final answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	rc.Logger = retryLogger{log: s.log.With("channel", c.Name), r: s.redact}
	rc.RetryMax = cfg.retryMax
	rc.RetryWaitMin, rc.RetryWaitMax = cfg.retryWaitMin, cfg.retryWaitMax
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
			n.Add(1)
		}
		if actions.RetriedAbove(ctx) {
			// A notify step: the catalogue's retry layer retries it (one
			// layer per call).
			return false, ctx.Err()
		}
		// 5xx (except 501), 429 and connection errors are retried; 4xx
		// and bad-scheme/TLS errors are not.
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	rc.Backoff = func(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
		// DefaultBackoff trusts Retry-After without bound; a receiver must
		// not park a containment run for an hour.
		return min(retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp), maxWait)
	}
	// Hand back the last response or error instead of retryablehttp's
	// "giving up" error, which quotes the URL.
	rc.ErrorHandler = func(resp *http.Response, err error, _ int) (*http.Response, error) { return resp, err }
	if c.Secret != "" {
		// Re-sign each retry with a fresh, strictly increasing timestamp:
		// a receiver's replay cache would reject a byte-identical retry
		// sent within the same second.
		secret := []byte(c.Secret)
		rc.PrepareRetry = func(req *http.Request) error {
			st, ok := req.Context().Value(signStateKey{}).(*signState)
			if !ok {
				return errors.New("signing retry: no signing state in context")
			}
			// The previous attempt's request shares this header map.
			req.Header = req.Header.Clone()
			req.Header.Set(HeaderSignature, intake.Sign(secret, st.next(s.clock.Now()), st.body))
			return nil
		}
	}
	return rc
}

type signStateKey struct{}

// signState is what one Send's retries need to re-sign: the body and the
// last timestamp used.
type signState struct {
	body []byte
	mu   sync.Mutex
	last int64
}

func (st *signState) next(now time.Time) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	t := now.Unix()
	if t <= st.last {
		t = st.last + 1
	}
	st.last = t
	return time.Unix(t, 0)
}

// Channels lists the configured channel names in configuration order.
func (s *Sender) Channels() []string { return append([]string(nil), s.names...) }

// Send posts msg to the named channel with the given idempotency key. A key
// that was already delivered (2xx) is not posted again: the recorded
// Delivery is returned. Concurrent Sends with one key post at most once.
//
// Errors never contain the channel URL or secrets. 4xx answers (and 3xx,
// since redirects are not followed) are terminal (actions.IsTerminal); 5xx,
// 429 and connection errors are retried with backoff and, when retries run
// out, returned as transient errors.
//
// Deliveries are remembered in memory only; after a restart a repeated
// Send posts again with the same Idempotency-Key, which receivers use to
// drop the duplicate.
func (s *Sender) Send(ctx context.Context, channelName, idempotencyKey string, msg Message) (Delivery, error) {
	c, ok := s.channels[channelName]
	if !ok {
		return Delivery{}, actions.Terminal(fmt.Errorf("sending notification: unknown channel %q", channelName))
	}
	if strings.TrimSpace(idempotencyKey) == "" || strings.ContainsAny(idempotencyKey, "\r\n\x00") {
		return Delivery{}, actions.Terminal(errors.New("sending notification: a single-line idempotency key is required"))
	}
	for {
		s.mu.Lock()
		if d, ok := s.history[idempotencyKey]; ok && d.OK() && d.Channel == channelName {
			s.mu.Unlock()
			return d, nil
		}
		wait, busy := s.inflight[idempotencyKey]
		if !busy {
			done := make(chan struct{})
			s.inflight[idempotencyKey] = done
			s.mu.Unlock()
			defer func() {
				s.mu.Lock()
				delete(s.inflight, idempotencyKey)
				s.mu.Unlock()
				close(done)
			}()
			break
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return Delivery{}, fmt.Errorf("waiting for a concurrent send with the same key: %w", ctx.Err())
		}
	}

	d, err := s.post(ctx, c, idempotencyKey, msg)
	s.record(idempotencyKey, d)
	if err != nil {
		s.log.Warn("notification failed", "channel", c.Name, "idempotency_key", idempotencyKey,
			"status", d.Status, "attempts", d.Attempts, "error", err.Error())
		return d, err
	}
	s.log.Info("notification delivered", "channel", c.Name, "idempotency_key", idempotencyKey,
		"status", d.Status, "attempts", d.Attempts)
	return d, nil
}

func (s *Sender) post(ctx context.Context, c *channel, key string, msg Message) (Delivery, error) {
	d := Delivery{Channel: c.Name}
	if msg.Time.IsZero() {
		msg.Time = s.clock.Now().UTC()
	}
	if msg.Link == "" {
		msg.Link = ConsoleLink(s.consoleURL, msg.Run, msg.Incident)
	}
	body, err := json.Marshal(msg.sanitised())
	if err != nil {
		return d, actions.Terminal(fmt.Errorf("encoding notification for channel %q: %w", c.Name, err))
	}
	attempts := new(atomic.Int32)
	st := &signState{body: body}
	ctx = context.WithValue(ctx, attemptsKey{}, attempts)
	ctx = context.WithValue(ctx, signStateKey{}, st)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.URL, body)
	if err != nil {
		return d, actions.Terminal(s.redact.Error(fmt.Sprintf("building request for channel %q", c.Name), nil))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "warden-notify")
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set(HeaderIdempotencyKey, key)
	if c.Secret != "" {
		req.Header.Set(HeaderSignature, intake.Sign([]byte(c.Secret), st.next(s.clock.Now()), body))
	}

	resp, err := c.client.Do(req)
	d.Attempts = int(attempts.Load())
	if err != nil {
		if resp != nil {
			drain(resp)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL
		}
		return d, s.redact.Error(fmt.Sprintf("posting notification to channel %q after %d attempt(s)", c.Name, d.Attempts), err)
	}
	defer drain(resp)
	d.Status = resp.StatusCode
	switch {
	case d.OK():
		d.DeliveredAt = s.clock.Now().UTC()
		return d, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return d, fmt.Errorf("posting notification to channel %q: receiver answered %d after %d attempt(s)", c.Name, resp.StatusCode, d.Attempts)
	default:
		// The body is not quoted: a receiver may echo headers back.
		return d, actions.Terminal(fmt.Errorf("posting notification to channel %q: receiver refused it with %d", c.Name, resp.StatusCode))
	}
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

func (s *Sender) record(key string, d Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.history[key]; !ok {
		s.order = append(s.order, key)
		for len(s.order) > s.maxHist {
			delete(s.history, s.order[0])
			s.order = s.order[1:]
		}
	}
	s.history[key] = d
}

// Delivery returns the last recorded delivery for an idempotency key.
func (s *Sender) Delivery(idempotencyKey string) (Delivery, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.history[idempotencyKey]
	return d, ok
}

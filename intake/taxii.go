package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock"
)

// TAXII 2.1 (OASIS TAXII Version 2.1, section 5.4 "Get Objects"): Warden
// polls the objects of configured collections, asking only for what was
// added after the last poll, and decodes them as STIX (decodeSTIXObjects).

// TAXIIMediaType is what a TAXII 2.1 client accepts.
const TAXIIMediaType = "application/taxii+json;version=2.1"

// Defaults and bounds of TAXII polling.
const (
	// DefaultTAXIIInterval is how often a collection is polled when its
	// configuration does not say.
	DefaultTAXIIInterval = time.Hour
	// MinTAXIIInterval bounds the interval from below: a feed is not a
	// stream, and a typo must not hammer someone's server.
	MinTAXIIInterval = time.Minute
	// maxTAXIIPage bounds one page's body.
	maxTAXIIPage = 64 << 20
	// maxTAXIIPages bounds the pages of one poll, so that a server that
	// always says "more" cannot keep Warden reading.
	maxTAXIIPages = 1000
	// taxiiAttemptTimeout bounds one HTTP attempt.
	taxiiAttemptTimeout = 2 * time.Minute
)

// TAXIICollection is one collection to poll. URL is the API root
// ("https://taxii.example.org/api1/"), Collection the collection's id.
// Authentication is HTTP basic (Username and the password in
// PasswordFile), a bearer token (TokenFile), or none; the files are read
// at every poll, so that a rotated secret is picked up, and their
// contents never appear in errors or logs.
type TAXIICollection struct {
	URL          string        `mapstructure:"url" json:"url" yaml:"url"`
	Collection   string        `mapstructure:"collection" json:"collection" yaml:"collection"`
	Username     string        `mapstructure:"username" json:"username,omitempty" yaml:"username,omitempty"`
	PasswordFile string        `mapstructure:"password_file" json:"password_file,omitempty" yaml:"password_file,omitempty"`
	TokenFile    string        `mapstructure:"token_file" json:"token_file,omitempty" yaml:"token_file,omitempty"`
	Interval     time.Duration `mapstructure:"interval" json:"interval,omitempty" yaml:"interval,omitempty"`
}

// WithDefaults fills Interval (DefaultTAXIIInterval). It does not change c.
func (c TAXIICollection) WithDefaults() TAXIICollection {
	if c.Interval == 0 {
		c.Interval = DefaultTAXIIInterval
	}
	return c
}

// Validate reports the first field that is wrong, as an
// *indicator.FieldError naming it: a URL that is not https (plain http
// only to a loopback address, a local proxy), that carries credentials, a
// query or a fragment; a collection id that is empty or not one path
// segment; a username without a password file or the other way round;
// both basic and token authentication; an interval below
// MinTAXIIInterval.
func (c TAXIICollection) Validate() error {
	if err := validateTAXIIURL(c.URL); err != nil {
		return err
	}
	if strings.TrimSpace(c.Collection) == "" || strings.ContainsAny(c.Collection, "/?#") || c.Collection != strings.TrimSpace(c.Collection) {
		return &indicator.FieldError{Field: "collection", Reason: "must be a collection id (one path segment)"}
	}
	switch {
	case c.Username != "" && c.PasswordFile == "":
		return &indicator.FieldError{Field: "password_file", Reason: "is required with username"}
	case c.Username == "" && c.PasswordFile != "":
		return &indicator.FieldError{Field: "username", Reason: "is required with password_file"}
	case c.Username != "" && c.TokenFile != "":
		return &indicator.FieldError{Field: "token_file", Reason: "set either username and password_file or token_file, not both"}
	}
	if d := c.WithDefaults().Interval; d < MinTAXIIInterval {
		return &indicator.FieldError{Field: "interval", Reason: fmt.Sprintf("must be at least %s, got %s", MinTAXIIInterval, d)}
	}
	return nil
}

func validateTAXIIURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return &indicator.FieldError{Field: "url", Reason: "must be an absolute URL of a TAXII API root"}
	}
	switch {
	case u.User != nil:
		return &indicator.FieldError{Field: "url", Reason: "must not carry credentials: use username and password_file, or token_file"}
	case u.RawQuery != "" || u.Fragment != "":
		return &indicator.FieldError{Field: "url", Reason: "must not have a query or a fragment"}
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return &indicator.FieldError{Field: "url", Reason: "must be https (http only to a loopback address)"}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// objectsURL is {api_root}/collections/{id}/objects/.
func (c TAXIICollection) objectsURL() string {
	return strings.TrimSuffix(c.URL, "/") + "/collections/" + url.PathEscape(c.Collection) + "/objects/"
}

// name names the collection in errors and logs: its id at the server.
func (c TAXIICollection) name() string {
	host := c.URL
	if u, err := url.Parse(c.URL); err == nil {
		host = u.Host
	}
	return fmt.Sprintf("TAXII collection %s at %s", c.Collection, host)
}

// TAXIIOption sets up a TAXIIClient.
type TAXIIOption func(*taxiiConfig)

type taxiiConfig struct {
	httpClient       *http.Client
	clock            clock.Clock
	log              *slog.Logger
	retryMax         int
	waitMin, waitMax time.Duration
}

// WithTAXIIHTTPClient sets the HTTP client under the retries (its
// transport carries the TLS configuration, e.g. a private CA).
func WithTAXIIHTTPClient(c *http.Client) TAXIIOption {
	return func(cfg *taxiiConfig) { cfg.httpClient = c }
}

// WithTAXIIClock sets the clock Run waits with and decoding reads now
// from.
func WithTAXIIClock(c clock.Clock) TAXIIOption { return func(cfg *taxiiConfig) { cfg.clock = c } }

// WithTAXIILogger sets the logger.
func WithTAXIILogger(l *slog.Logger) TAXIIOption { return func(cfg *taxiiConfig) { cfg.log = l } }

// WithTAXIIRetry sets how often and how patiently a failed request is
// retried (5xx but 501, 429 and connection errors).
func WithTAXIIRetry(retryMax int, waitMin, waitMax time.Duration) TAXIIOption {
	return func(cfg *taxiiConfig) { cfg.retryMax, cfg.waitMin, cfg.waitMax = retryMax, waitMin, waitMax }
}

// TAXIIClient polls TAXII 2.1 collections. For each it remembers the last
// X-TAXII-Date-Added-Last the server sent and asks for what was added
// after it; the first poll of a collection reads all of it. Safe for
// concurrent use, one poll per collection at a time.
type TAXIIClient struct {
	colls []TAXIICollection
	http  *retryablehttp.Client
	clock clock.Clock
	log   *slog.Logger

	mu      sync.Mutex
	cursors []string
	polling []sync.Mutex
}

// NewTAXIIClient validates the collections and returns a client for them.
// An error names the collection's index ("collections[1].url: …").
func NewTAXIIClient(colls []TAXIICollection, opts ...TAXIIOption) (*TAXIIClient, error) {
	cfg := taxiiConfig{retryMax: 4, waitMin: time.Second, waitMax: time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.clock == nil {
		cfg.clock = clock.Real
	}
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	if cfg.httpClient == nil {
		cfg.httpClient = cleanhttp.DefaultPooledClient()
		cfg.httpClient.Timeout = taxiiAttemptTimeout
	}
	c := &TAXIIClient{clock: cfg.clock, log: cfg.log}
	for i, coll := range colls {
		if err := coll.Validate(); err != nil {
			return nil, prefixed(fmt.Sprintf("collections[%d]", i), err)
		}
		c.colls = append(c.colls, coll.WithDefaults())
	}
	c.cursors = make([]string, len(c.colls))
	c.polling = make([]sync.Mutex, len(c.colls))
	rc := retryablehttp.NewClient()
	rc.HTTPClient = cfg.httpClient
	rc.Logger = cfg.log
	rc.RetryMax, rc.RetryWaitMin, rc.RetryWaitMax = cfg.retryMax, cfg.waitMin, cfg.waitMax
	rc.Backoff = func(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
		// DefaultBackoff honours Retry-After without bound.
		return min(retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp), maxWait)
	}
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.http = rc
	return c, nil
}

// Collections returns the collections, completed with their defaults, in
// the order given.
func (c *TAXIIClient) Collections() []TAXIICollection {
	return append([]TAXIICollection(nil), c.colls...)
}

// Cursor returns the X-TAXII-Date-Added-Last of collection i's last poll
// ("" before the first).
func (c *TAXIIClient) Cursor(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursors[i]
}

// SetCursor sets where collection i's next poll starts (an RFC 3339 time,
// as a previous Cursor returned it; "" reads the whole collection): a
// caller that keeps cursors across restarts restores them with it.
func (c *TAXIIClient) SetCursor(i int, addedAfter string) error {
	if _, err := time.Parse(time.RFC3339Nano, addedAfter); err != nil && addedAfter != "" {
		return &indicator.FieldError{Field: "added_after", Reason: fmt.Sprintf("expected an RFC 3339 time, got %q", clip(addedAfter, 64))}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cursors[i] = addedAfter
	return nil
}

// Poll reads what collection i (an index into Collections) added since its cursor, every page of it,
// decodes it as STIX and moves the cursor on. On an error the cursor stays
// and the next poll asks again (blocks are identified by the indicators'
// ids, so reading an object twice is harmless).
func (c *TAXIIClient) Poll(ctx context.Context, i int) (ThreatDecoded, error) {
	return c.poll(ctx, i, func(ThreatDecoded) error { return nil })
}

// poll polls collection i and moves its cursor on only when accept takes
// the result.
func (c *TAXIIClient) poll(ctx context.Context, i int, accept func(ThreatDecoded) error) (ThreatDecoded, error) {
	c.polling[i].Lock()
	defer c.polling[i].Unlock()
	coll := c.colls[i]
	objects, cursor, err := c.fetch(ctx, coll, c.Cursor(i))
	if err != nil {
		return ThreatDecoded{}, fmt.Errorf("polling %s: %w", coll.name(), err)
	}
	d := decodeSTIXObjects(objects, c.clock.Now())
	if err := accept(d); err != nil {
		return d, fmt.Errorf("handling the poll of %s: %w", coll.name(), err)
	}
	c.mu.Lock()
	c.cursors[i] = cursor
	c.mu.Unlock()
	c.log.Info("polled TAXII collection", "collection", coll.Collection, "objects", len(objects),
		"items", len(d.Items), "skipped", len(d.Skipped), "added_after", cursor)
	return d, nil
}

// Run polls every collection at once and then every Interval until ctx
// ends, handing each poll's result to handle. When handle fails, the
// cursor stays, so the next poll hands the same objects again. Errors are
// logged, not returned: one failing feed must not stop the others. Run
// returns ctx's error. handle is called from one goroutine per
// collection.
func (c *TAXIIClient) Run(ctx context.Context, handle func(ctx context.Context, coll TAXIICollection, d ThreatDecoded) error) error {
	var wg sync.WaitGroup
	for i, coll := range c.colls {
		wg.Go(func() {
			for {
				_, err := c.poll(ctx, i, func(d ThreatDecoded) error { return handle(ctx, coll, d) })
				if err != nil && ctx.Err() == nil {
					c.log.Warn("TAXII poll failed", "collection", coll.Collection, "error", err.Error())
				}
				select {
				case <-ctx.Done():
					return
				case <-c.clock.After(coll.Interval):
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// taxiiEnvelope is a TAXII 2.1 envelope.
type taxiiEnvelope struct {
	more    bool
	next    string
	objects []json.RawMessage
}

// fetch reads every page of coll's objects added after `after`, following
// next, or, when the server says more without next, the page's
// X-TAXII-Date-Added-Last (the two ways TAXII 2.1 paginates). It returns
// the objects and the latest X-TAXII-Date-Added-Last seen (after when the
// server sent none).
func (c *TAXIIClient) fetch(ctx context.Context, coll TAXIICollection, after string) ([]json.RawMessage, string, error) {
	var all []json.RawMessage
	cursor, next := after, ""
	for page := 0; ; page++ {
		if page == maxTAXIIPages {
			return nil, "", fmt.Errorf("more than %d pages in one poll", maxTAXIIPages)
		}
		env, last, err := c.fetchPage(ctx, coll, after, next)
		if err != nil {
			return nil, "", fmt.Errorf("page %d: %w", page+1, err)
		}
		all = append(all, env.objects...)
		cursor = laterTime(cursor, last)
		if !env.more {
			return all, cursor, nil
		}
		if env.next != "" {
			next = env.next
			continue
		}
		if last == "" || laterTime(after, last) == after {
			return nil, "", fmt.Errorf("page %d: the server says more but gives neither next nor a later X-TAXII-Date-Added-Last", page+1)
		}
		after, next = last, ""
	}
}

// laterTime returns the later of two RFC 3339 times; b only when it
// parses and is later than a (or a is "").
func laterTime(a, b string) string {
	tb, err := time.Parse(time.RFC3339Nano, b)
	if err != nil {
		return a
	}
	if ta, err := time.Parse(time.RFC3339Nano, a); err == nil && !tb.After(ta) {
		return a
	}
	return b
}

// fetchPage gets one page and returns its envelope and its
// X-TAXII-Date-Added-Last.
func (c *TAXIIClient) fetchPage(ctx context.Context, coll TAXIICollection, after, next string) (taxiiEnvelope, string, error) {
	req, err := c.newRequest(ctx, coll, after, next)
	if err != nil {
		return taxiiEnvelope{}, "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named by the caller
		}
		return taxiiEnvelope{}, "", fmt.Errorf("requesting objects: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTAXIIPage+1))
	if err != nil {
		return taxiiEnvelope{}, "", fmt.Errorf("reading objects: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return taxiiEnvelope{}, "", taxiiStatusError(resp, body)
	}
	if len(body) > maxTAXIIPage {
		return taxiiEnvelope{}, "", fmt.Errorf("the page is larger than %d bytes", maxTAXIIPage)
	}
	if err := checkTAXIIContentType(resp.Header.Get("Content-Type")); err != nil {
		return taxiiEnvelope{}, "", err
	}
	env, err := decodeTAXIIEnvelope(body)
	if err != nil {
		return taxiiEnvelope{}, "", err
	}
	return env, strings.TrimSpace(resp.Header.Get("X-TAXII-Date-Added-Last")), nil
}

// newRequest builds a GET of the objects endpoint with the query and the
// credentials of coll.
func (c *TAXIIClient) newRequest(ctx context.Context, coll TAXIICollection, after, next string) (*retryablehttp.Request, error) {
	q := url.Values{}
	if after != "" {
		q.Set("added_after", after)
	}
	if next != "" {
		q.Set("next", next)
	}
	u := coll.objectsURL()
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Accept", TAXIIMediaType)
	req.Header.Set("User-Agent", "warden-taxii")
	if err := setTAXIIAuth(req, coll); err != nil {
		return nil, err
	}
	return req, nil
}

// setTAXIIAuth sets basic or bearer authentication from coll's files.
func setTAXIIAuth(req *retryablehttp.Request, coll TAXIICollection) error {
	switch {
	case coll.Username != "":
		pw, err := readTAXIISecret(coll.PasswordFile, "password_file")
		if err != nil {
			return err
		}
		req.SetBasicAuth(coll.Username, pw)
	case coll.TokenFile != "":
		tok, err := readTAXIISecret(coll.TokenFile, "token_file")
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

// readTAXIISecret reads a password or token file: its first line, without
// surrounding white space. The error names the file, never its contents.
func readTAXIISecret(path, field string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", field, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	s := strings.TrimSpace(line)
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", field, path)
	}
	if strings.ContainsAny(s, "\r\x00") {
		return "", fmt.Errorf("%s %s holds a control character", field, path)
	}
	return s, nil
}

// taxiiStatusError describes a non-200 answer: the status and the TAXII
// error message's title, if it sent one.
func taxiiStatusError(resp *http.Response, body []byte) error {
	msg := fmt.Sprintf("the server answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	var e struct {
		Title string `json:"title"`
	}
	if json.Unmarshal(body, &e) == nil && strings.TrimSpace(e.Title) != "" {
		msg += ": " + oneLine(clip(e.Title, 200))
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += " (check username and password_file, or token_file)"
	case http.StatusNotFound:
		msg += " (check url, the API root, and collection)"
	case http.StatusNotAcceptable:
		msg += " (the server does not speak " + TAXIIMediaType + ")"
	}
	return errors.New(msg)
}

// checkTAXIIContentType refuses an answer that is not JSON (a login page,
// a proxy's error). TAXII 2.1 servers answer application/taxii+json; some
// answer application/json or STIX's media type; none is accepted too.
func checkTAXIIContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/taxii+json" || mt == "application/stix+json" || mt == "application/json") {
		return nil
	}
	return fmt.Errorf("expected %s, got Content-Type %q", TAXIIMediaType, clip(ct, 64))
}

// decodeTAXIIEnvelope reads an envelope: {"more", "next", "objects"}, all
// optional (an empty collection answers {}).
func decodeTAXIIEnvelope(body []byte) (taxiiEnvelope, error) {
	var env taxiiEnvelope
	if err := checkJSON(body, "envelope"); err != nil {
		return env, err
	}
	err := decodeObject(body, "envelope", false, func(key string, val json.RawMessage, field string) (err error) {
		switch key {
		case "more":
			env.more, err = decodeBool(val, field)
		case "next":
			env.next, err = decodeString(val, field)
		case "objects":
			env.objects, err = readArray(val, field, 0)
		}
		return err
	})
	return env, err
}

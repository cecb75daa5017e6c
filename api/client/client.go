// Package client is the Go client of Warden's HTTP API (api/v1). The CLI,
// the demo and the end-to-end tests speak to a controller through it.
//
// It owns the HTTP details of being a caller: the bearer token, the
// optional webhook signature, retries for a caller that asks for them,
// and turning a non-2xx answer into an *Error that carries the status and
// the API's message and field. It must not import the server (package api)
// or anything a controller is made of: api/v1 is its whole vocabulary, so
// linking it links no controller.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// maxAnswer bounds what is read of one answer (a report with its pictures
// is the largest).
const maxAnswer = 32 << 20

// Client calls one controller. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	// http sends each request once; retry, when set, sends it through
	// http with retries.
	http  *http.Client
	retry *retryablehttp.Client
}

// Option configures a Client.
type Option func(*options)

type options struct {
	http    *http.Client
	timeout time.Duration
	retries *Retries
	secret  []byte
	now     func() time.Time
}

// WithHTTPClient sends requests through hc (its transport and timeout; a
// network namespace's dialer, say) instead of http.DefaultClient. hc is not
// changed.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.http = hc } }

// WithTimeout bounds each attempt, from dialling to reading the answer.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// Retries is how a client retries: connection errors and 5xx answers
// (except 501), up to Max more times, waiting WaitMin to WaitMax between
// attempts with backoff, and honouring Retry-After.
type Retries struct {
	Max              int
	WaitMin, WaitMax time.Duration
}

// WithRetries retries every call as r says; without it each call is sent
// once. A retried call may reach the controller more than once. Reads are
// safe; so is intake (the controller deduplicates by fingerprint, and a
// signed retry is signed anew); approve, cancel and resolve do not act
// twice (a repeat is refused as a conflict). Starting a runbook or a patch
// wave is not idempotent: a retry after the controller committed the first
// attempt (a dropped answer, a 5xx from a proxy) starts a second run or
// wave.
func WithRetries(r Retries) Option { return func(o *options) { o.retries = &r } }

// WithSigningSecret signs every request with the intake webhook secret
// (intake.webhook_secret on the controller): the X-Warden-Signature
// header, computed anew for each attempt. The secret never appears in an
// error or in a %v of the client.
func WithSigningSecret(secret []byte) Option {
	return func(o *options) { o.secret = bytes.Clone(secret) }
}

// New returns a client of the controller at baseURL ("http://host:port")
// authenticating with token.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("creating API client: the controller URL must be http(s)://host[:port], got %q", baseURL)
	}
	if token == "" {
		return nil, errors.New("creating API client: no API token")
	}
	o := options{http: http.DefaultClient, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	hc := o.http
	if o.timeout > 0 || o.secret != nil {
		copied := *hc // never change the caller's client
		hc = &copied
	}
	if o.timeout > 0 {
		hc.Timeout = o.timeout
	}
	if o.secret != nil {
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		// Below the retrying client: every attempt is signed anew.
		hc.Transport = &signingTransport{base: base, secret: o.secret, now: o.now}
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: hc}
	if r := o.retries; r != nil {
		rc := retryablehttp.NewClient()
		rc.HTTPClient = hc
		rc.Logger = nil // it would print URLs; errors are reported to the caller
		rc.RetryMax, rc.RetryWaitMin, rc.RetryWaitMax = r.Max, r.WaitMin, r.WaitMax
		c.retry = rc
	}
	return c, nil
}

// String keeps the token out of any %v of the client.
func (c *Client) String() string { return "client.Client{" + c.base + "}" }

// CloseIdleConnections closes the idle connections of the client's
// transport.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Error is a non-2xx answer.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the API's error message (v1.Error.Error), or the body's
	// text when the answer is not the API's JSON (a proxy's page).
	Message string
	// Field names the offending request field, when the API said.
	Field string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("controller answered %d: %s (field %s)", e.StatusCode, e.Message, e.Field)
	}
	return fmt.Sprintf("controller answered %d: %s", e.StatusCode, e.Message)
}

// StatusCode returns the status of the answer err reports, if it is an
// *Error.
func StatusCode(err error) (int, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode, true
	}
	return 0, false
}

// Call sends one request to a route, decodes a 2xx answer into out, and
// returns the status. The typed methods are made of it; it is also the way
// to a route they do not cover.
//
// body is nil (no body), []byte or json.RawMessage (sent as it is; nil
// is no body), or any other value (sent as its JSON). out is nil (the
// answer is read and dropped), *[]byte or *json.RawMessage (the answer as
// it is, up to 32 MiB), an io.Writer (the answer streamed into it, any
// size), or a value to decode the JSON into. A non-2xx answer is an
// *Error.
func (c *Client) Call(ctx context.Context, method, path string, body, out any) (int, error) {
	var payload []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		payload = b
	case json.RawMessage:
		payload = b
	default:
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, fmt.Errorf("encoding the request to %s %s: %w", method, path, err)
		}
	}
	resp, err := c.roundTrip(ctx, method, path, payload != nil, payload)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if w, ok := out.(io.Writer); ok && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Streamed, without maxAnswer: an evidence archive may be large.
		if _, err := io.Copy(w, resp.Body); err != nil {
			return resp.StatusCode, fmt.Errorf("reading answer: %w", err)
		}
		return resp.StatusCode, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		var e struct{ Error, Field string }
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return resp.StatusCode, &Error{StatusCode: resp.StatusCode, Message: e.Error, Field: e.Field}
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = data
	case *json.RawMessage:
		*o = data
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decoding answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

func (c *Client) roundTrip(ctx context.Context, method, path string, hasBody bool, payload []byte) (*http.Response, error) {
	var rdr io.Reader
	if hasBody {
		rdr = bytes.NewReader(payload)
	}
	var (
		resp *http.Response
		err  error
	)
	if c.retry != nil {
		req, rerr := retryablehttp.NewRequestWithContext(ctx, method, c.base+path, rdr)
		if rerr != nil {
			return nil, fmt.Errorf("building request: %w", rerr)
		}
		c.authorise(req.Header, hasBody)
		resp, err = c.retry.Do(req)
	} else {
		req, rerr := http.NewRequestWithContext(ctx, method, c.base+path, rdr)
		if rerr != nil {
			return nil, fmt.Errorf("building request: %w", rerr)
		}
		c.authorise(req.Header, hasBody)
		resp, err = c.http.Do(req)
	}
	if err != nil {
		return nil, fmt.Errorf("calling %s %s: %w", method, path, err)
	}
	return resp, nil
}

func (c *Client) authorise(h http.Header, hasBody bool) {
	h.Set("Authorization", "Bearer "+c.token)
	if hasBody {
		h.Set("Content-Type", "application/json")
	}
}

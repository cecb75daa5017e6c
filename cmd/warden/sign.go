package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/warden-ir/warden/intake"
)

// signRequests makes c sign every request it sends with the webhook secret
// held in path (intake.webhook_secret on the controller). The secret is read
// from a file, never from a flag value, and never appears in an error.
func (c *apiClient) signRequests(path string) error {
	secret, err := readSecretFile(path)
	if err != nil {
		return err
	}
	hc := c.http.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &signingTransport{base: base, secret: secret, now: time.Now}
	return nil
}

// readSecretFile reads a secret, trimmed of surrounding white space as the
// configuration's *_file settings are. Errors name the file only.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, below
		}
		return nil, fmt.Errorf("reading --secret-file %s: %w", path, err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) == 0 {
		return nil, fmt.Errorf("--secret-file %s is empty", path)
	}
	return secret, nil
}

// signingTransport adds X-Warden-Signature to every request, the way
// intake.SignatureVerifier checks it: "t=<unix>,v1=<hex HMAC-SHA256(secret,
// t.body)>". It signs each attempt anew, below the retrying client, with a
// timestamp later than any it used before: the controller accepts a
// signature once, so a retry of a delivery it already recorded must not
// carry the same signature (same body, same second) or it is refused as a
// replay.
type signingTransport struct {
	base   http.RoundTripper
	secret []byte
	now    func() time.Time

	mu   sync.Mutex
	last int64 // unix seconds of the last signature
}

func (t *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the request body to sign it: %w", err)
		}
		body = b
	}
	signed := req.Clone(req.Context())
	signed.Body = io.NopCloser(bytes.NewReader(body))
	signed.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	signed.ContentLength = int64(len(body))
	signed.Header.Set(intake.SignatureHeader, intake.Sign(t.secret, t.next(), body))
	return t.base.RoundTrip(signed)
}

// next returns now, or one second after the last timestamp used when now
// is not later. The controller's window (minutes) absorbs the drift.
func (t *signingTransport) next() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	sec := t.now().Unix()
	if sec <= t.last {
		sec = t.last + 1
	}
	t.last = sec
	return time.Unix(sec, 0)
}

// String keeps the secret out of any %v of the transport.
func (t *signingTransport) String() string { return "signingTransport{secret: redacted}" }

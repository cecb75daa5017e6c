package client

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
)

// signingTransport adds X-Warden-Signature to every request, the way the
// controller checks it (v1.Sign). It signs each attempt anew, below the
// retrying client, with a timestamp later than any it used before: the
// controller accepts a signature once, so a retry of a delivery it already
// recorded must not carry the same signature (same body, same second) or
// it is refused as a replay.
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
	signed.Header.Set(v1.SignatureHeader, v1.Sign(t.secret, t.next(), body))
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

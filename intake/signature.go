package intake

import (
	"container/heap"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SignatureHeader is the HTTP header that carries a webhook signature.
const SignatureHeader = "X-Warden-Signature"

// DefaultSignatureWindow is how far a signature's timestamp may be from now
// (either way) when no window is given.
const DefaultSignatureWindow = 5 * time.Minute

// DefaultReplayCacheSize bounds the number of signatures remembered.
const DefaultReplayCacheSize = 1 << 16

// Errors returned by SignatureVerifier.Verify. Callers map them to HTTP
// status codes: ErrReplayCacheFull is transient (503), the others are 401.
var (
	ErrSignatureMissing  = errors.New("webhook signature missing")
	ErrSignatureInvalid  = errors.New("webhook signature invalid")
	ErrSignatureExpired  = errors.New("webhook signature timestamp outside the allowed window")
	ErrSignatureReplayed = errors.New("webhook signature already used")
	ErrReplayCacheFull   = errors.New("webhook replay cache full, try again later")
)

// Sign returns the signature header value for body at time t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// SignatureVerifier checks webhook signatures made by Sign: the HMAC must
// match, the timestamp must be within the window of now, and a signature is
// accepted only once. Safe for concurrent use.
type SignatureVerifier struct {
	secret []byte
	window time.Duration
	now    func() time.Time
	max    int

	mu   sync.Mutex
	seen map[string]struct{}
	byTS expiryHeap
}

// NewSignatureVerifier makes a verifier. window <= 0 means
// DefaultSignatureWindow; now nil means time.Now. The secret is copied.
func NewSignatureVerifier(secret []byte, window time.Duration, now func() time.Time) *SignatureVerifier {
	if window <= 0 {
		window = DefaultSignatureWindow
	}
	if now == nil {
		now = time.Now
	}
	return &SignatureVerifier{
		secret: append([]byte(nil), secret...),
		window: window,
		now:    now,
		max:    DefaultReplayCacheSize,
		seen:   map[string]struct{}{},
	}
}

// Verify checks header (the X-Warden-Signature value) against body. Several
// v1 entries are allowed (a sender rotating its secret); one must match.
// Comparison is constant-time. Errors wrap one of the Err* sentinels and
// never echo the header or the secret.
func (v *SignatureVerifier) Verify(header string, body []byte) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrSignatureMissing
	}
	if len(v.secret) == 0 {
		return fmt.Errorf("%w: no secret configured", ErrSignatureInvalid)
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed header", ErrSignatureInvalid)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: more than one timestamp", ErrSignatureInvalid)
			}
			ts = val
		case "v1":
			if b, err := hex.DecodeString(val); err == nil && len(b) == sha256.Size {
				sigs = append(sigs, b)
			}
		}
		// other schemes are ignored so that senders can add newer ones
	}
	if ts == "" || len(sigs) == 0 {
		return fmt.Errorf("%w: need t= and a v1= signature", ErrSignatureInvalid)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < 0 {
		return fmt.Errorf("%w: timestamp is not unix seconds", ErrSignatureInvalid)
	}
	want := mac(v.secret, ts, body)
	var matched []byte
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			matched = s
		}
	}
	if matched == nil {
		return ErrSignatureInvalid
	}
	// The timestamp is checked after the MAC so that an attacker learns
	// nothing about the window from unsigned probes.
	now := v.now()
	signedAt := time.Unix(sec, 0)
	if d := now.Sub(signedAt); d > v.window || d < -v.window {
		return ErrSignatureExpired
	}
	return v.remember(string(matched), signedAt.Add(v.window), now)
}

// remember records a signature until expiry, after which the timestamp
// check alone rejects it.
func (v *SignatureVerifier) remember(sig string, expiry, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for len(v.byTS) > 0 && v.byTS[0].expiry.Before(now) {
		e := heap.Pop(&v.byTS).(seenSig)
		delete(v.seen, e.sig)
	}
	if _, dup := v.seen[sig]; dup {
		return ErrSignatureReplayed
	}
	if len(v.seen) >= v.max {
		// Evicting a live entry would reopen it to replay: fail closed.
		return ErrReplayCacheFull
	}
	v.seen[sig] = struct{}{}
	heap.Push(&v.byTS, seenSig{sig: sig, expiry: expiry})
	return nil
}

type seenSig struct {
	sig    string
	expiry time.Time
}

// expiryHeap is a min-heap of remembered signatures by expiry.
type expiryHeap []seenSig

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(seenSig)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

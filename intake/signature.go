package intake

import (
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/internal/clock"

	v1 "github.com/warden-ir/warden/api/v1"
)

// SignatureHeader is the HTTP header that carries a webhook signature. The
// format is the API's (api/v1); this package verifies it.
const SignatureHeader = v1.SignatureHeader

// DefaultSignatureWindow is how far a signature's timestamp may be from now
// (either way) when no window is given.
const DefaultSignatureWindow = 5 * time.Minute

// DefaultReplayCacheSize bounds the number of signatures remembered.
const DefaultReplayCacheSize = 1 << 16

// Errors returned by SignatureVerifier.Verify. Callers map them to HTTP
// status codes: ErrSignatureReplayed is a conflict (409: this exact delivery
// was accepted before), ErrReplayCacheFull and ErrReplayCheckUnavailable
// are transient (503), the others are 401.
var (
	ErrSignatureMissing       = errors.New("webhook signature missing")
	ErrSignatureInvalid       = errors.New("webhook signature invalid")
	ErrSignatureExpired       = errors.New("webhook signature timestamp outside the allowed window")
	ErrSignatureReplayed      = errors.New("webhook signature already used: replay refused (sign each delivery anew)")
	ErrReplayCacheFull        = errors.New("webhook replay cache full, try again later")
	ErrReplayCheckUnavailable = errors.New("webhook replay check unavailable, try again later")
)

// Sign returns the signature header value for body at time t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>" (v1.Sign;
// Verify accepts exactly that).
func Sign(secret []byte, t time.Time, body []byte) string { return v1.Sign(secret, t, body) }

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// ReplayLedger remembers accepted signatures until they expire, so that each
// is accepted once. The verifier keeps one in memory by default; a durable
// one (the store's) keeps refusing replays across a restart, which a memory
// that starts empty cannot.
type ReplayLedger interface {
	// RememberSignature records digest (a SHA-256 of the signature, never
	// the secret) until expiry and reports whether it was new. false means
	// the same digest was recorded before and has not expired: a replay.
	// Entries that expired before now may be forgotten. Of concurrent
	// calls with one digest, exactly one reports true. An error means
	// nothing is known; the caller refuses the request.
	RememberSignature(ctx context.Context, digest []byte, expiry, now time.Time) (bool, error)
}

// SignatureVerifier checks webhook signatures made by Sign: the HMAC must
// match, the timestamp must be within the window of now, and a signature is
// accepted only once (its ledger remembers it until the window has passed).
// Safe for concurrent use.
type SignatureVerifier struct {
	secret []byte
	window time.Duration
	clock  clock.Clock
	ledger ReplayLedger
}

// NewSignatureVerifier makes a verifier that remembers signatures in memory
// (see WithLedger). window <= 0 means DefaultSignatureWindow; a nil clock
// means clock.Real. The secret is copied.
func NewSignatureVerifier(secret []byte, window time.Duration, clk clock.Clock) *SignatureVerifier {
	if window <= 0 {
		window = DefaultSignatureWindow
	}
	if clk == nil {
		clk = clock.Real
	}
	return &SignatureVerifier{
		secret: append([]byte(nil), secret...),
		window: window,
		clock:  clk,
		ledger: NewMemoryLedger(DefaultReplayCacheSize),
	}
}

// WithLedger returns a verifier with v's secret, window and clock that
// remembers signatures in l instead. v itself is not changed.
func (v *SignatureVerifier) WithLedger(l ReplayLedger) *SignatureVerifier {
	w := *v
	w.ledger = l
	return &w
}

// Verify is VerifyContext without a request context.
func (v *SignatureVerifier) Verify(header string, body []byte) error {
	return v.VerifyContext(context.Background(), header, body)
}

// VerifyContext checks header (the X-Warden-Signature value) against body.
// Several v1 entries are allowed (a sender rotating its secret); one must
// match. Comparison is constant-time. Errors wrap one of the Err* sentinels
// and never echo the header or the secret.
func (v *SignatureVerifier) VerifyContext(ctx context.Context, header string, body []byte) error {
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
	now := v.clock.Now()
	signedAt := time.Unix(sec, 0)
	if d := now.Sub(signedAt); d > v.window || d < -v.window {
		return ErrSignatureExpired
	}
	// Remembered until the timestamp check alone rejects it.
	digest := sha256.Sum256(matched)
	fresh, err := v.ledger.RememberSignature(ctx, digest[:], signedAt.Add(v.window), now)
	switch {
	case errors.Is(err, ErrReplayCacheFull):
		return err
	case err != nil:
		// The cause (a store error) carries no secret; keep it for the log.
		return fmt.Errorf("%w: %w", ErrReplayCheckUnavailable, err)
	case !fresh:
		return ErrSignatureReplayed
	}
	return nil
}

// MemoryLedger is the default ReplayLedger: a bounded map with an expiry
// heap. It forgets everything when the process ends.
type MemoryLedger struct {
	max int

	mu   sync.Mutex
	seen map[string]struct{}
	byTS expiryHeap
}

var _ ReplayLedger = (*MemoryLedger)(nil)

// NewMemoryLedger remembers at most max signatures (max <= 0 means
// DefaultReplayCacheSize).
func NewMemoryLedger(max int) *MemoryLedger {
	if max <= 0 {
		max = DefaultReplayCacheSize
	}
	return &MemoryLedger{max: max, seen: map[string]struct{}{}}
}

// RememberSignature fails with ErrReplayCacheFull rather than evict a live
// entry, which would reopen that signature to replay.
func (l *MemoryLedger) RememberSignature(_ context.Context, digest []byte, expiry, now time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.byTS) > 0 && l.byTS[0].expiry.Before(now) {
		e := heap.Pop(&l.byTS).(seenSig)
		delete(l.seen, e.sig)
	}
	key := string(digest)
	if _, dup := l.seen[key]; dup {
		return false, nil
	}
	if len(l.seen) >= l.max {
		return false, ErrReplayCacheFull
	}
	l.seen[key] = struct{}{}
	heap.Push(&l.byTS, seenSig{sig: key, expiry: expiry})
	return true, nil
}

func (l *MemoryLedger) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
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

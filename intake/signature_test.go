package intake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/clock/clocktest"
)

func TestSignFormat(t *testing.T) {
	got := Sign([]byte("s3cret"), time.Unix(1700000000, 0), []byte(`{"a":1}`))
	ts, sig, ok := strings.Cut(got, ",v1=")
	if !ok || ts != "t=1700000000" || len(sig) != 64 {
		t.Fatalf("Sign = %q, want t=1700000000,v1=<64 hex>", got)
	}
	if got != Sign([]byte("s3cret"), time.Unix(1700000000, 999), []byte(`{"a":1}`)) {
		t.Errorf("Sign depends on sub-second time")
	}
}

func TestSignatureVerify(t *testing.T) {
	secret := []byte("correct horse battery staple")
	body := []byte(`{"alerts":[]}`)
	now := time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC)
	good := Sign(secret, now, body)
	_, goodSig, _ := strings.Cut(good, ",")
	tests := map[string]struct {
		header string
		body   []byte
		want   error
	}{
		"valid":                {header: good, body: body},
		"valid, spaces":        {header: " t=" + strconv.FormatInt(now.Unix(), 10) + " , " + goodSig + " ", body: body},
		"missing":              {header: "", body: body, want: ErrSignatureMissing},
		"blank":                {header: "   ", body: body, want: ErrSignatureMissing},
		"garbage":              {header: "sha256=abcdef", body: body, want: ErrSignatureInvalid},
		"no timestamp":         {header: goodSig, body: body, want: ErrSignatureInvalid},
		"no v1":                {header: "t=" + strconv.FormatInt(now.Unix(), 10), body: body, want: ErrSignatureInvalid},
		"timestamp not number": {header: "t=yesterday," + goodSig, body: body, want: ErrSignatureInvalid},
		"two timestamps":       {header: good + ",t=1", body: body, want: ErrSignatureInvalid},
		"body changed":         {header: good, body: []byte(`{"alerts":[{}]}`), want: ErrSignatureInvalid},
		"wrong secret":         {header: Sign([]byte("other"), now, body), body: body, want: ErrSignatureInvalid},
		"timestamp changed":    {header: "t=" + strconv.FormatInt(now.Unix()+1, 10) + "," + goodSig, body: body, want: ErrSignatureInvalid},
		"short v1":             {header: "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=abcd", body: body, want: ErrSignatureInvalid},
		"rotated secret":       {header: good + ",v1=" + strings.Repeat("0", 64), body: body},
		"unknown scheme too":   {header: good + ",v0=whatever", body: body},
		"too old":              {header: Sign(secret, now.Add(-5*time.Minute-time.Second), body), body: body, want: ErrSignatureExpired},
		"edge of window":       {header: Sign(secret, now.Add(-5*time.Minute), body), body: body},
		"too far in future":    {header: Sign(secret, now.Add(5*time.Minute+time.Second), body), body: body, want: ErrSignatureExpired},
		"slightly in future":   {header: Sign(secret, now.Add(30*time.Second), body), body: body},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := NewSignatureVerifier(secret, 0, clocktest.NewFake(now))
			err := v.Verify(tc.header, tc.body)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), string(secret)) || (tc.header != "" && strings.Contains(err.Error(), tc.header))) {
				t.Errorf("error leaks secret or header: %q", err)
			}
		})
	}
}

func TestSignatureReplay(t *testing.T) {
	secret := []byte("k")
	clock := clocktest.NewFake(time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC))
	v := NewSignatureVerifier(secret, time.Minute, clock)
	body := []byte("payload")
	header := Sign(secret, clock.Now(), body)

	if err := v.Verify(header, body); err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := v.Verify(header, body); !errors.Is(err, ErrSignatureReplayed) {
		t.Fatalf("second: %v, want replayed", err)
	}
	// The same body signed at another second is a legitimate resend.
	if err := v.Verify(Sign(secret, clock.Now().Add(time.Second), body), body); err != nil {
		t.Fatalf("resend with new timestamp: %v", err)
	}
	clock.Advance(time.Minute)
	if err := v.Verify(header, body); !errors.Is(err, ErrSignatureReplayed) {
		t.Fatalf("at the edge of the window: %v, want replayed", err)
	}
	clock.Advance(2 * time.Second)
	if err := v.Verify(header, body); !errors.Is(err, ErrSignatureExpired) {
		t.Fatalf("after the window: %v, want expired", err)
	}
	// A fresh verification evicts what the timestamp check now rejects.
	if err := v.Verify(Sign(secret, clock.Now(), body), body); err != nil {
		t.Fatal(err)
	}
	if n := v.ledger.(*MemoryLedger).len(); n != 1 {
		t.Errorf("replay cache holds %d entries, want 1 after eviction", n)
	}
}

func TestSignatureReplayCacheFullFailsClosed(t *testing.T) {
	secret := []byte("k")
	clock := clocktest.NewFake(time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC))
	v := NewSignatureVerifier(secret, time.Minute, clock).WithLedger(NewMemoryLedger(2))
	for i := range 2 {
		if err := v.Verify(Sign(secret, clock.Now(), []byte{byte(i)}), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Verify(Sign(secret, clock.Now(), []byte("x")), []byte("x")); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("got %v, want cache full", err)
	}
	clock.Advance(time.Minute + time.Second)
	if err := v.Verify(Sign(secret, clock.Now(), []byte("x")), []byte("x")); err != nil {
		t.Fatalf("after expiry frees the cache: %v", err)
	}
}

func TestSignatureEmptySecretRejectsEverything(t *testing.T) {
	v := NewSignatureVerifier(nil, 0, nil)
	if err := v.Verify(Sign(nil, time.Now(), []byte("b")), []byte("b")); !errors.Is(err, ErrSignatureInvalid) {
		t.Fatalf("got %v", err)
	}
}

func TestSignatureConcurrentReplayAcceptsOnce(t *testing.T) {
	secret := []byte("k")
	now := time.Now()
	v := NewSignatureVerifier(secret, 0, clocktest.NewFake(now))
	header := Sign(secret, now, []byte("b"))
	var ok, replayed atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			switch err := v.Verify(header, []byte("b")); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrSignatureReplayed):
				replayed.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || replayed.Load() != 31 {
		t.Errorf("accepted %d, replayed %d; want 1 and 31", ok.Load(), replayed.Load())
	}
}

// ledgerFunc adapts a function to ReplayLedger.
type ledgerFunc func(ctx context.Context, digest []byte, expiry, now time.Time) (bool, error)

func (f ledgerFunc) RememberSignature(ctx context.Context, digest []byte, expiry, now time.Time) (bool, error) {
	return f(ctx, digest, expiry, now)
}

// TestSignatureLedger: the verifier hands the ledger a digest of the
// signature (never the secret or the header) with the expiry of its window,
// and maps the ledger's answers onto the sentinels callers turn into status
// codes.
func TestSignatureLedger(t *testing.T) {
	secret := []byte("ledger-secret-8f1e")
	now := time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC)
	signedAt := now.Add(-10 * time.Second)
	body := []byte(`{"alerts":[]}`)
	header := Sign(secret, signedAt, body)
	storeDown := errors.New("store: database is locked")
	tests := map[string]struct {
		fresh bool
		err   error
		want  error
	}{
		"fresh":       {fresh: true},
		"replay":      {fresh: false, want: ErrSignatureReplayed},
		"full":        {err: ErrReplayCacheFull, want: ErrReplayCacheFull},
		"unavailable": {err: storeDown, want: ErrReplayCheckUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var gotDigest []byte
			var gotExpiry time.Time
			v := NewSignatureVerifier(secret, 0, clocktest.NewFake(now)).WithLedger(ledgerFunc(
				func(_ context.Context, digest []byte, expiry, _ time.Time) (bool, error) {
					gotDigest, gotExpiry = digest, expiry
					return tc.fresh, tc.err
				}))
			err := v.VerifyContext(t.Context(), header, body)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("VerifyContext = %v, want %v", err, tc.want)
			}
			if tc.err != nil && tc.err != ErrReplayCacheFull && !errors.Is(err, tc.err) {
				t.Errorf("the ledger's error is not wrapped: %v", err)
			}
			if len(gotDigest) != sha256.Size || bytes.Contains(gotDigest, secret) || strings.Contains(header, hex.EncodeToString(gotDigest)) {
				t.Errorf("digest %x is not a SHA-256 of the signature", gotDigest)
			}
			if want := signedAt.Add(DefaultSignatureWindow); !gotExpiry.Equal(want) {
				t.Errorf("expiry %v, want %v", gotExpiry, want)
			}
			if err != nil && strings.Contains(err.Error(), string(secret)) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

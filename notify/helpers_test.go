package notify

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/internal/testsupport"
)

// testNow is when every attempt of a Send happens, on a frozen clock: "in
// the same second", which is the hard case for signature replay protection.
var testNow = time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC)

// frozenClock is a clock that stands at testNow.
func frozenClock() *clocktest.Fake { return clocktest.NewFake(testNow) }

// mustSender is NewSender for a configuration the test expects to be
// valid: an error fails the test.
func mustSender(t *testing.T, channels []Channel, log *slog.Logger, opts ...Option) *Sender {
	t.Helper()
	s, err := NewSender(channels, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// received is one request as the test receiver saw it.
type received struct {
	header http.Header
	body   []byte
	sigErr error // result of verifying the signature, when a verifier is set
}

// receiver is a loopback webhook endpoint that answers with a script of
// status codes (the last one repeats).
type receiver struct {
	srv      *httptest.Server
	verifier *intake.SignatureVerifier
	statuses []int
	headers  map[string]string // added to every response

	mu   sync.Mutex
	reqs []received
}

func newReceiver(t *testing.T, verifier *intake.SignatureVerifier, statuses ...int) *receiver {
	t.Helper()
	if len(statuses) == 0 {
		statuses = []int{http.StatusOK}
	}
	r := &receiver{verifier: verifier, statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rec := received{header: req.Header.Clone(), body: body}
	if r.verifier != nil {
		rec.sigErr = r.verifier.Verify(req.Header.Get(HeaderSignature), body)
	}
	r.mu.Lock()
	n := len(r.reqs)
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	status := r.statuses[min(n, len(r.statuses)-1)]
	for k, v := range r.headers {
		w.Header().Set(k, v)
	}
	if rec.sigErr != nil {
		status = http.StatusUnauthorized
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte("echo " + req.Header.Get("Authorization") + " " + strconv.Itoa(status)))
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

func newTestLogger() (*slog.Logger, *testsupport.SyncBuffer) {
	b := &testsupport.SyncBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// fastRetry keeps tests quick; outcomes, not timings, are asserted.
func fastRetry() Option { return WithRetry(3, time.Millisecond, 5*time.Millisecond) }

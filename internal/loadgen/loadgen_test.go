package loadgen

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestRunCountsWhatTheServerSaw(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer x" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n, _ := strconv.Atoi(string(b[len(b)-1:]))
		mu.Lock()
		seen[string(b)] = true
		mu.Unlock()
		if n%5 == 4 { // every fifth request of a client is refused
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	r, err := Run(t.Context(), Config{
		URL:      srv.URL,
		Header:   http.Header{"Authorization": {"Bearer x"}},
		Clients:  4,
		Duration: 200 * time.Millisecond,
		Body:     func(c, n int) []byte { return fmt.Appendf(nil, "%d-%d-%d", c, n, n%10) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Accepted == 0 || r.Failed != 0 || r.FirstError != nil {
		t.Fatalf("result %v (%v)", r, r.FirstError)
	}
	if r.Accepted+r.Rejected != len(seen) {
		t.Errorf("%d accepted + %d rejected, server saw %d distinct bodies", r.Accepted, r.Rejected, len(seen))
	}
	if r.Rejected != r.Statuses[http.StatusTooManyRequests] || r.Rejected == 0 {
		t.Errorf("rejected %d, statuses %v", r.Rejected, r.Statuses)
	}
	if len(r.Latencies) != r.Accepted || r.Percentile(50) > r.Percentile(99) || r.Percentile(100) != r.Latencies[len(r.Latencies)-1] {
		t.Errorf("latencies %d for %d accepted; p50 %v p99 %v", len(r.Latencies), r.Accepted, r.Percentile(50), r.Percentile(99))
	}
}

func TestRunCountsConnectionFailures(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	r, err := Run(t.Context(), Config{URL: url, Clients: 2, Duration: 50 * time.Millisecond, Body: func(int, int) []byte { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Accepted != 0 || r.Failed == 0 || r.FirstError == nil {
		t.Fatalf("result %v, first error %v", r, r.FirstError)
	}
}

func TestRunRefusesAnIncompleteConfig(t *testing.T) {
	if _, err := Run(t.Context(), Config{URL: "http://127.0.0.1:1"}); err == nil {
		t.Fatal("no body and no duration accepted")
	}
}

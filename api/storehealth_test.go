package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warden-ir/warden/api"
)

// fakeStoreHealth reports a fixed state and records what intake tells it.
type fakeStoreHealth struct {
	state error

	mu       sync.Mutex
	observed []error
}

func (f *fakeStoreHealth) Writable() error { return f.state }

func (f *fakeStoreHealth) ObserveCommit(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observed = append(f.observed, err)
}

// TestReadyzReportsWhetherTheStoreCommits: /readyz follows the store's
// last commit, answers 503 with Retry-After and a reason (never the error,
// which names paths) when it failed, and intake reports its commits.
func TestReadyzReportsWhetherTheStoreCommits(t *testing.T) {
	s := newStack(t, nil, nil)
	const path = "/var/lib/warden/warden.db"
	tests := map[string]struct {
		state      error
		wantStatus int
		wantReason string
	}{
		"commits":   {wantStatus: http.StatusOK},
		"disk full": {state: fmt.Errorf("committing %s: %w", path, syscall.ENOSPC), wantStatus: http.StatusServiceUnavailable, wantReason: "disk_full"},
		"read-only": {state: fmt.Errorf("committing %s: %w", path, syscall.EROFS), wantStatus: http.StatusServiceUnavailable, wantReason: "read_only"},
		"other":     {state: errors.New("committing " + path + ": something else"), wantStatus: http.StatusServiceUnavailable, wantReason: "commit_failed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			health := &fakeStoreHealth{state: tc.state}
			srv, err := api.New(api.Options{Controller: s.d.Controller, Policies: s.d.Policies, Token: testToken,
				StoreHealth: health, StoreRetryAfter: 2500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", "/readyz", nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("/readyz: %d %s, want %d", rec.Code, rec.Body, tc.wantStatus)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body["reason"] != tc.wantReason {
				t.Errorf("reason %q, want %q", body["reason"], tc.wantReason)
			}
			wantRetry := ""
			if tc.wantStatus != http.StatusOK {
				wantRetry = "3" // 2.5s, rounded up
			}
			if got := rec.Header().Get("Retry-After"); got != wantRetry {
				t.Errorf("Retry-After %q, want %q", got, wantRetry)
			}
			if strings.Contains(rec.Body.String(), path) {
				t.Errorf("unauthenticated /readyz shows the error: %s", rec.Body)
			}

			// Intake tries the store whatever the last probe said (a
			// commit may go through) and reports how it went.
			req := httptest.NewRequestWithContext(t.Context(), "POST", "/v1/indicators", strings.NewReader(indicatorJSON("config_tamper", "gw-hq", "high")))
			req.Header.Set("Authorization", "Bearer "+testToken)
			rec = httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("intake: %d %s, want 202", rec.Code, rec.Body)
			}
			health.mu.Lock()
			defer health.mu.Unlock()
			if len(health.observed) != 1 || health.observed[0] != nil {
				t.Errorf("intake reported %v, want one successful commit", health.observed)
			}
		})
	}
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/intake"
)

func TestSendSignsWithIntakeScheme(t *testing.T) {
	const secret = "hmac-key-for-ops"
	rcv := newReceiver(t, intake.NewSignatureVerifier([]byte(secret), 0, frozenClock()), http.StatusAccepted)
	s, err := NewSender([]Channel{{
		Name: "ops", URL: rcv.srv.URL + "/hook", Secret: secret,
		Headers: map[string]string{"X-Tenant": "acme"},
	}}, nil, WithClock(frozenClock()), fastRetry())
	if err != nil {
		t.Fatal(err)
	}
	msg := Message{Incident: "inc-1", Gateway: "gw-hq", Site: "hq", Severity: "high", Title: "gw-hq isolated",
		Steps: []StepLine{{Name: "isolate", Status: "done", DurationMS: 7}}}
	d, err := s.Send(t.Context(), "ops", "run-1/step-3", msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if d.Status != http.StatusAccepted || d.Attempts != 1 || d.Channel != "ops" || !d.DeliveredAt.Equal(testNow) {
		t.Errorf("delivery %+v", d)
	}
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.sigErr != nil {
		t.Errorf("intake verifier rejected the signature: %v", r.sigErr)
	}
	if r.header.Get(HeaderIdempotencyKey) != "run-1/step-3" || r.header.Get("X-Tenant") != "acme" ||
		r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	var got Message
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Incident != "inc-1" || got.Title != "gw-hq isolated" || len(got.Steps) != 1 || !got.Time.Equal(testNow) {
		t.Errorf("body %s", r.body)
	}
}

func TestSendNoSignatureWithoutSecret(t *testing.T) {
	rcv := newReceiver(t, nil)
	s := mustSender(t, []Channel{{Name: "chat", URL: rcv.srv.URL}}, nil)
	if _, err := s.Send(t.Context(), "chat", "k", Message{Title: "t"}); err != nil {
		t.Fatal(err)
	}
	if h := rcv.requests()[0].header.Get(HeaderSignature); h != "" {
		t.Errorf("unexpected signature %q", h)
	}
}

func TestSendRetryPolicy(t *testing.T) {
	tests := map[string]struct {
		statuses     []int
		wantStatus   int
		wantAttempts int
		wantErr      bool
		wantTerminal bool
	}{
		"ok first time":         {statuses: []int{200}, wantStatus: 200, wantAttempts: 1},
		"503 then success":      {statuses: []int{503, 200}, wantStatus: 200, wantAttempts: 2},
		"429 then success":      {statuses: []int{429, 204}, wantStatus: 204, wantAttempts: 2},
		"500 twice then ok":     {statuses: []int{500, 502, 200}, wantStatus: 200, wantAttempts: 3},
		"5xx until retries end": {statuses: []int{503}, wantStatus: 503, wantAttempts: 4, wantErr: true},
		"400 is terminal":       {statuses: []int{400, 200}, wantStatus: 400, wantAttempts: 1, wantErr: true, wantTerminal: true},
		"404 is terminal":       {statuses: []int{404}, wantStatus: 404, wantAttempts: 1, wantErr: true, wantTerminal: true},
		"redirect not followed": {statuses: []int{302}, wantStatus: 302, wantAttempts: 1, wantErr: true, wantTerminal: true},
	}
	const secret = "per-attempt-signing"
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// A replay-protecting verifier on a frozen clock: each retry
			// must still carry a signature it has not seen.
			rcv := newReceiver(t, intake.NewSignatureVerifier([]byte(secret), 0, frozenClock()), tc.statuses...)
			rcv.headers = map[string]string{"Location": "http://127.0.0.1:1/elsewhere"}
			s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL, Secret: secret}}, nil, WithClock(frozenClock()), fastRetry())
			d, err := s.Send(t.Context(), "ops", "key-"+name, Message{Title: "t"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && actions.IsTerminal(err) != tc.wantTerminal {
				t.Errorf("terminal = %v, want %v (%v)", actions.IsTerminal(err), tc.wantTerminal, err)
			}
			if d.Status != tc.wantStatus || d.Attempts != tc.wantAttempts {
				t.Errorf("delivery %+v, want status %d after %d attempts", d, tc.wantStatus, tc.wantAttempts)
			}
			reqs := rcv.requests()
			if len(reqs) != tc.wantAttempts {
				t.Errorf("receiver saw %d requests, want %d", len(reqs), tc.wantAttempts)
			}
			for i, r := range reqs {
				if r.sigErr != nil {
					t.Errorf("attempt %d: signature rejected: %v", i+1, r.sigErr)
				}
				if r.header.Get(HeaderIdempotencyKey) != "key-"+name {
					t.Errorf("attempt %d: idempotency key %q", i+1, r.header.Get(HeaderIdempotencyKey))
				}
			}
			if rec, ok := s.Delivery("key-" + name); !ok || rec != d {
				t.Errorf("Delivery() = %+v, %v; want %+v", rec, ok, d)
			}
		})
	}
}

func TestSendConnectionRefusedIsTransient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := mustSender(t, []Channel{{Name: "ops", URL: "http://" + addr + "/hook"}}, nil, fastRetry())
	d, err := s.Send(t.Context(), "ops", "k", Message{Title: "t"})
	if err == nil || actions.IsTerminal(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if d.Attempts != 4 || d.Status != 0 {
		t.Errorf("delivery %+v, want 4 attempts and no status", d)
	}
}

func TestSendRetryAfterIsCapped(t *testing.T) {
	rcv := newReceiver(t, nil, 503, 200)
	rcv.headers = map[string]string{"Retry-After": "3600"}
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil, fastRetry())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if d, err := s.Send(ctx, "ops", "k", Message{Title: "t"}); err != nil || d.Attempts != 2 {
		t.Fatalf("Send = %+v, %v; a Retry-After of an hour must be capped at the max wait", d, err)
	}
}

func TestSendIdempotent(t *testing.T) {
	rcv := newReceiver(t, nil, 200)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}, {Name: "chat", URL: rcv.srv.URL}}, nil, WithClock(frozenClock()))
	first, err := s.Send(t.Context(), "ops", "k1", Message{Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Send(t.Context(), "ops", "k1", Message{Title: "changed"})
	if err != nil {
		t.Fatal(err)
	}
	if second != first || len(rcv.requests()) != 1 {
		t.Errorf("second send posted again or returned %+v (first %+v); %d requests", second, first, len(rcv.requests()))
	}
	if _, err := s.Send(t.Context(), "ops", "k2", Message{Title: "t"}); err != nil || len(rcv.requests()) != 2 {
		t.Errorf("a new key must post: %v, %d requests", err, len(rcv.requests()))
	}
}

func TestSendRetriesKeyThatFailed(t *testing.T) {
	rcv := newReceiver(t, nil, 400, 200)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil, fastRetry())
	if _, err := s.Send(t.Context(), "ops", "k", Message{Title: "t"}); err == nil {
		t.Fatal("want 400 error")
	}
	if d, err := s.Send(t.Context(), "ops", "k", Message{Title: "t"}); err != nil || d.Status != 200 {
		t.Fatalf("resend after failure: %+v, %v", d, err)
	}
	if n := len(rcv.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestSendConcurrentSameKeyPostsOnce(t *testing.T) {
	rcv := newReceiver(t, nil, 200)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := s.Send(t.Context(), "ops", "same", Message{Title: "t"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := len(rcv.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestSendRejectsBadCalls(t *testing.T) {
	rcv := newReceiver(t, nil)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil)
	tests := map[string]struct{ channel, key string }{
		"unknown channel": {"pager", "k"},
		"empty key":       {"ops", ""},
		"multi-line key":  {"ops", "a\r\nX-Evil: 1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Send(t.Context(), tc.channel, tc.key, Message{}); err == nil || !actions.IsTerminal(err) {
				t.Errorf("err = %v, want terminal", err)
			}
		})
	}
	if n := len(rcv.requests()); n != 0 {
		t.Errorf("%d requests, want none", n)
	}
}

func TestDeliveryHistoryIsBounded(t *testing.T) {
	rcv := newReceiver(t, nil)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil, WithHistorySize(2))
	for _, k := range []string{"a", "b", "c"} {
		if _, err := s.Send(t.Context(), "ops", k, Message{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Delivery("a"); ok {
		t.Error("oldest delivery still remembered")
	}
	for _, k := range []string{"b", "c"} {
		if _, ok := s.Delivery(k); !ok {
			t.Errorf("delivery %s forgotten", k)
		}
	}
}

func TestNewSenderValidates(t *testing.T) {
	const secretURL = "https://bob:hunter2-pass@hooks.example/services/T0KEN?sig=qs-secret"
	tests := map[string]struct {
		channels []Channel
		want     string
	}{
		"empty name":      {[]Channel{{URL: "https://hooks.example"}}, "name: is required"},
		"name with space": {[]Channel{{Name: "on call", URL: "https://hooks.example"}}, "name: is required and must not contain spaces"},
		"duplicate":       {[]Channel{{Name: "a", URL: "https://x.example"}, {Name: "a", URL: "https://y.example"}}, "duplicate name"},
		"ftp":             {[]Channel{{Name: "a", URL: "ftp://bob:hunter2-pass@files.example/x"}}, "url: scheme must be http or https"},
		"no host":         {[]Channel{{Name: "a", URL: "https:///path"}}, "url: has no host"},
		"relative":        {[]Channel{{Name: "a", URL: "/hook"}}, "url: scheme must be http or https"},
		"unparseable":     {[]Channel{{Name: "a", URL: "https://bob:hunter2-pass@hooks.example/%zz"}}, "url: is not a valid URL"},
		"negative timeout": {[]Channel{{Name: "a", URL: secretURL, Timeout: -time.Second}},
			"timeout: must not be negative"},
		"bad header name": {[]Channel{{Name: "a", URL: secretURL, Headers: map[string]string{"X Bad": "v"}}}, `headers: "X Bad" is not a valid header name`},
		"reserved header": {[]Channel{{Name: "a", URL: secretURL, Headers: map[string]string{"idempotency-key": "v"}}}, "headers: Idempotency-Key is set by Warden"},
		"header CRLF":     {[]Channel{{Name: "a", URL: secretURL, Headers: map[string]string{"Authorization": "Bearer hunter2-pass\r\nX: y"}}}, "headers: value of Authorization contains a line break or NUL"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewSender(tc.channels, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want …%s…", err, tc.want)
			}
			for _, leak := range []string{"hunter2-pass", "T0KEN", "qs-secret", "hooks.example"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error leaks %q: %v", leak, err)
				}
			}
		})
	}
	if s, err := NewSender(nil, nil); err != nil || len(s.Channels()) != 0 {
		t.Errorf("no channels must be allowed: %v", err)
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	secrets := []string{"alice-user", "pa55word-xyz", "T0KEN-in-path", "qs-secret-value", "hmac-secret-xyz", "header-secret-abc"}
	urlFor := func(base string) string {
		return strings.Replace(base, "http://", "http://alice-user:pa55word-xyz@", 1) + "/hook/T0KEN-in-path?token=qs-secret-value"
	}
	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}
	tests := map[string]struct {
		base     func(t *testing.T) string
		terminal bool
	}{
		"server keeps failing": {base: func(t *testing.T) string { return newReceiver(t, nil, 503).srv.URL }},
		"server refuses":       {base: func(t *testing.T) string { return newReceiver(t, nil, 401).srv.URL }, terminal: true},
		"connection refused":   {base: func(*testing.T) string { return closedAddr() }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			log, buf := newTestLogger()
			s, err := NewSender([]Channel{{
				Name: "ops", URL: urlFor(tc.base(t)), Secret: "hmac-secret-xyz",
				Headers: map[string]string{"Authorization": "Bearer header-secret-abc"},
			}}, log, fastRetry())
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Send(t.Context(), "ops", "k", Message{Title: "t"})
			if err == nil || actions.IsTerminal(err) != tc.terminal {
				t.Fatalf("err = %v, want terminal=%v", err, tc.terminal)
			}
			out := buf.String()
			if !strings.Contains(out, "performing request") || !strings.Contains(out, "127.0.0.1") {
				t.Errorf("retryablehttp's log did not reach slog through the adapter:\n%s", out)
			}
			for _, sec := range secrets {
				if strings.Contains(err.Error(), sec) {
					t.Errorf("error leaks %q: %v", sec, err)
				}
				if strings.Contains(out, sec) {
					t.Errorf("log leaks %q:\n%s", sec, out)
				}
			}
		})
	}
}

func TestSendHonoursContext(t *testing.T) {
	rcv := newReceiver(t, nil, 503)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil, WithRetry(10, time.Hour, time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		// cancel once the first attempt has been answered
		deadline := time.Now().Add(30 * time.Second)
		for len(rcv.requests()) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := s.Send(ctx, "ops", "k", Message{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

package notify

import (
	"context"
	"net/http"
	"testing"

	"github.com/warden-ir/warden/actions"
)

// TestSenderOneRetryLayer: a delivery made under the catalogue's retry
// layer (a notify step) is sent once, whatever the receiver answers; that
// layer retries the step. Outside it (a page), the sender retries itself.
func TestSenderOneRetryLayer(t *testing.T) {
	for name, tc := range map[string]struct {
		underStep bool
		want      int
	}{
		"a notify step": {underStep: true, want: 1},
		"a page":        {underStep: false, want: 2},
	} {
		t.Run(name, func(t *testing.T) {
			rcv := newReceiver(t, nil, http.StatusServiceUnavailable, http.StatusOK)
			s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil, WithClock(frozenClock()), fastRetry())
			send := sendAction{s: s}
			if tc.underStep {
				_, _ = actions.Execute(t.Context(), actions.WithRetry(actions.RetryPolicy{MaxAttempts: 1})(actions.Entry{Action: send}), actions.Request{})
			} else {
				_, _ = send.Apply(t.Context(), actions.Request{})
			}
			if got := len(rcv.requests()); got != tc.want {
				t.Fatalf("the receiver got %d requests, want %d", got, tc.want)
			}
		})
	}
}

// sendAction delivers one message in Apply.
type sendAction struct{ s *Sender }

func (sendAction) Name() string { return "send" }
func (sendAction) Plan(context.Context, actions.Request) (actions.Change, error) {
	return actions.Change{}, nil
}
func (a sendAction) Apply(ctx context.Context, _ actions.Request) (actions.Result, error) {
	_, err := a.s.Send(ctx, "ops", "key-1", Message{Title: "t", Text: "x"})
	return actions.Result{}, err
}
func (sendAction) Verify(context.Context, actions.Request) (actions.Result, error) {
	return actions.Result{}, nil
}

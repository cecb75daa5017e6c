package notify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
)

func notifyRequest(params map[string]string) actions.Request {
	return actions.Request{
		IdempotencyKey: "run-7/step-1",
		Incident:       "inc-42",
		Gateway:        inventory.Gateway{ID: "gw-hq", Site: "hq"},
		Params:         params,
	}
}

func TestNotifyActionName(t *testing.T) {
	if got := actions.NewNotify(nil, "").Name(); got != actions.NameNotify {
		t.Errorf("Name() = %q", got)
	}
	if _, err := actions.NewCatalogue(actions.NewNotify(nil, "")); err != nil {
		t.Error(err)
	}
}

func TestNotifyActionWithoutChannelsNeverBlocks(t *testing.T) {
	empty := mustSender(t, nil, nil)
	for name, s := range map[string]actions.Notifier{"nil sender": nil, "no channels": empty} {
		t.Run(name, func(t *testing.T) {
			a := actions.NewNotify(s, "ops")
			req := notifyRequest(map[string]string{actions.ParamChannel: "ops", actions.ParamMessage: "hi"})
			ch, err := a.Plan(t.Context(), req)
			if err != nil || len(ch.Changes) != 0 || !strings.Contains(ch.Summary, actions.NoChannelSummary) {
				t.Errorf("Plan = %+v, %v", ch, err)
			}
			res, err := a.Apply(t.Context(), req)
			if err != nil || res.Changed || res.Summary != actions.NoChannelSummary {
				t.Errorf("Apply = %+v, %v", res, err)
			}
			if res, err := a.Verify(t.Context(), req); err != nil || res.Changed {
				t.Errorf("Verify = %+v, %v", res, err)
			}
		})
	}
}

func TestNotifyActionPlanApplyVerify(t *testing.T) {
	rcv := newReceiver(t, nil, 200)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}, {Name: "mgmt", URL: rcv.srv.URL}}, nil, WithClock(frozenClock()))
	a := actions.NewNotify(s, "ops")
	req := notifyRequest(map[string]string{actions.ParamMessage: "gw-hq isolated", actions.ParamSeverity: "critical"})

	if _, err := a.Verify(t.Context(), req); !errors.Is(err, actions.ErrNotVerified) {
		t.Fatalf("Verify before Apply = %v, want ErrNotVerified", err)
	}
	plan, err := a.Plan(t.Context(), req)
	if err != nil || plan.Summary != "send notification to channel ops" || len(plan.Changes) != 1 || plan.Destructive {
		t.Fatalf("Plan = %+v, %v", plan, err)
	}
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("Plan posted %d requests", n)
	}

	res, err := a.Apply(t.Context(), req)
	if err != nil || !res.Changed || res.Details["status"] != 200 || res.Details["channel"] != "ops" {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	again, err := a.Apply(t.Context(), req)
	if err != nil || again.Changed {
		t.Fatalf("second Apply = %+v, %v; want Changed=false", again, err)
	}
	if n := len(rcv.requests()); n != 1 {
		t.Errorf("%d requests after two Applies, want 1", n)
	}
	if _, err := a.Verify(t.Context(), req); err != nil {
		t.Errorf("Verify = %v", err)
	}
	if plan, _ := a.Plan(t.Context(), req); len(plan.Changes) != 0 {
		t.Errorf("Plan after delivery still changes: %+v", plan)
	}

	var got Message
	if err := json.Unmarshal(rcv.requests()[0].body, &got); err != nil {
		t.Fatal(err)
	}
	want := Message{Incident: "inc-42", Gateway: "gw-hq", Site: "hq", Severity: "critical",
		Title: "Warden: incident inc-42 on gateway gw-hq", Text: "gw-hq isolated", Time: testNow}
	if got.Incident != want.Incident || got.Gateway != want.Gateway || got.Site != want.Site || got.Severity != want.Severity ||
		got.Title != want.Title || got.Text != want.Text || !got.Time.Equal(want.Time) {
		t.Errorf("message %+v, want %+v", got, want)
	}
	if h := rcv.requests()[0].header.Get(HeaderIdempotencyKey); h != req.IdempotencyKey {
		t.Errorf("idempotency key %q, want the step's %q", h, req.IdempotencyKey)
	}
}

func TestNotifyActionRefusedIsTerminalAndUnverified(t *testing.T) {
	rcv := newReceiver(t, nil, 400)
	s := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil, fastRetry())
	a := actions.NewNotify(s, "")
	req := notifyRequest(nil)
	if _, err := a.Apply(t.Context(), req); err == nil || !actions.IsTerminal(err) {
		t.Fatalf("Apply = %v, want terminal", err)
	}
	if _, err := a.Verify(t.Context(), req); !errors.Is(err, actions.ErrNotVerified) || !strings.Contains(err.Error(), "400") {
		t.Errorf("Verify = %v, want ErrNotVerified naming 400", err)
	}
}

func TestNotifyActionChannelResolution(t *testing.T) {
	rcv := newReceiver(t, nil)
	one := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil)
	two := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}, {Name: "mgmt", URL: rcv.srv.URL}}, nil)
	tests := map[string]struct {
		s       *Sender
		def     string
		params  map[string]string
		want    string // Plan summary
		wantErr string
	}{
		"param wins":            {s: two, def: "ops", params: map[string]string{actions.ParamChannel: "mgmt"}, want: "send notification to channel mgmt"},
		"default":               {s: two, def: "mgmt", want: "send notification to channel mgmt"},
		"only channel":          {s: one, want: "send notification to channel ops"},
		"ambiguous":             {s: two, wantErr: "no channel given and no default channel (configured: mgmt, ops)"},
		"unknown channel param": {s: two, params: map[string]string{actions.ParamChannel: "pager"}, wantErr: `unknown channel "pager"`},
		"unknown default":       {s: one, def: "pager", wantErr: `unknown channel "pager"`},
		"unknown parameter":     {s: one, params: map[string]string{"chanel": "ops"}, wantErr: `unknown parameter "chanel"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := actions.NewNotify(tc.s, tc.def)
			plan, err := a.Plan(t.Context(), notifyRequest(tc.params))
			if tc.wantErr != "" {
				if err == nil || !actions.IsTerminal(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Plan = %+v, %v; want terminal …%s…", plan, err, tc.wantErr)
				}
				if _, err := a.Apply(t.Context(), notifyRequest(tc.params)); err == nil || !actions.IsTerminal(err) {
					t.Errorf("Apply = %v, want terminal", err)
				}
				return
			}
			if err != nil || plan.Summary != tc.want {
				t.Errorf("Plan = %+v, %v; want %q", plan, err, tc.want)
			}
		})
	}
}

// TestNotificationsLinkToTheConsole: with the console's address, the
// notify step's message links to its run's page there; a message about an
// incident only links to the incident, one about neither to the inbox;
// without the address there is no link.
func TestNotificationsLinkToTheConsole(t *testing.T) {
	rcv := newReceiver(t, nil)
	linked := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil, WithConsoleURL("https://warden.example.net/"))
	plain := mustSender(t, []Channel{{Name: "ops", URL: rcv.srv.URL}}, nil)
	req := notifyRequest(nil)
	req.Run = "run-7"
	if _, err := actions.NewNotify(linked, "ops").Apply(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	req.IdempotencyKey = "run-7/step-2"
	if _, err := actions.NewNotify(plain, "ops").Apply(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Message{{Title: "incident only", Incident: "inc-42"}, {Title: "fleet"}} {
		if _, err := linked.Send(t.Context(), "ops", "k-"+m.Title, m); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"https://warden.example.net/ui/runs/run-7", "", "https://warden.example.net/ui/incidents/inc-42", "https://warden.example.net/ui/inbox"}
	reqs := rcv.requests()
	if len(reqs) != len(want) {
		t.Fatalf("%d posts, want %d", len(reqs), len(want))
	}
	for i, r := range reqs {
		var got Message
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Link != want[i] {
			t.Errorf("post %d (%s) links to %q, want %q", i, got.Title, got.Link, want[i])
		}
		if i == 0 && got.Run != "run-7" {
			t.Errorf("the step's message names run %q", got.Run)
		}
	}
}

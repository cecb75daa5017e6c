package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/store"
)

// TestInboxSaysWhyRunsWait: a containment held by the fleet's budget shows
// in the inbox with what it would do and why it waits; a tripped circuit
// breaker shows with its reason, and only an admin gets the reset, which
// goes through the API (a reason required, the reset audited).
func TestInboxSaysWhyRunsWait(t *testing.T) {
	s := newStack(t, false, func(c *config.Config) { c.Guards.MaxAutoIsolationsFleet = 1 })
	s.quarantine(t) // gw-osaka: the fleet's one automatic isolation
	ids, err := client.New(s.srv.URL, s.person(t, "ids2", "intake"), client.WithHTTPClient(s.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ids.SubmitIndicators(t.Context(), v1.Indicator{Kind: "c2_beacon", Gateway: "gw-hq", Severity: "critical", Confidence: 0.9, Source: "test"})
	if err != nil || len(res.Results) != 1 || res.Results[0].RunState != store.RunAwaitingApproval {
		t.Fatalf("the second beacon: %+v %v; want a run held for approval", res, err)
	}
	held := res.Results[0].RunID

	resp := s.browser(t)
	inbox := resp.login(t, s.person(t, "resp1", "responder"))
	card := between(inbox.body, `data-run="`+held+`"`, "</article>")
	for _, want := range []string{"Blast-radius budget", "Isolate the gateway", "fleet already had 1 automatic isolation", "Test ids2 (ids2)", `data-action="approve"`} {
		if !strings.Contains(card, want) {
			t.Errorf("the held run's card does not say %q:\n%s", want, card)
		}
	}
	if !strings.Contains(inbox.body, `data-tripped="false"`) {
		t.Error("the inbox does not show the breaker closed")
	}

	// The breaker trips.
	err = s.d.Store.Tx(t.Context(), func(tx store.Tx) error {
		return tx.TripBreaker(t.Context(), time.Now(), "3 of 3 gateways have firing indicators")
	})
	if err != nil {
		t.Fatal(err)
	}
	inbox = resp.get(t, "/ui/inbox")
	if !strings.Contains(inbox.body, `data-tripped="true"`) || !strings.Contains(inbox.body, "3 of 3 gateways have firing indicators") ||
		strings.Contains(inbox.body, `action="/ui/breaker/reset"`) || !strings.Contains(inbox.body, "An admin resets it.") {
		t.Fatalf("the responder's inbox with the breaker tripped:\n%s", inbox.body)
	}
	admin := s.browser(t)
	adminInbox := admin.login(t, s.adminToken)
	if !strings.Contains(adminInbox.body, `action="/ui/breaker/reset"`) {
		t.Fatalf("the admin's inbox offers no reset")
	}
	// The responder's forged reset: the API's 403.
	if p := resp.post(t, "/ui/breaker/reset", url.Values{"csrf": {csrf(t, inbox)}, "reason": {"looked"}}); p.status != http.StatusForbidden {
		t.Errorf("the responder's reset: %d, want 403", p.status)
	}
	// Without a reason: the API's 400, naming the field.
	if p := admin.post(t, "/ui/breaker/reset", url.Values{"csrf": {csrf(t, adminInbox)}}); p.status != http.StatusBadRequest || !strings.Contains(p.body, "reason") {
		t.Errorf("a reset without a reason: %d\n%s", p.status, p.body)
	}
	p := admin.post(t, "/ui/breaker/reset", url.Values{"csrf": {csrf(t, adminInbox)}, "reason": {"one detector misfired; checked the others"}})
	if p.status != http.StatusSeeOther || p.location() != "/ui/inbox?done=reset" {
		t.Fatalf("the admin's reset: %d %q", p.status, p.location())
	}
	if br, err := s.d.Store.Breaker(t.Context()); err != nil || br.Tripped {
		t.Errorf("after the reset the breaker: %+v %v", br, err)
	}
	if es := newAudit(t, s, auditCount(t, s)-1); es[0].Action != "breaker.reset" || es[0].Actor != "user:admin" {
		t.Errorf("the reset's audit entry: %+v", es[0])
	}
}

// between is the part of s from the first start to the end after it.
func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	part, _, _ := strings.Cut(after, end)
	return part
}

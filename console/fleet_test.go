package console_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/store"
)

// TestMapMarksQuarantineAndRevocation: after a confirmed compromise of
// gw-osaka (isolated, revoked at its peers), the map draws it quarantined,
// its two tunnels revoked and the third not, and says its open incident
// and that no baseline was checked; the others stay normal.
func TestMapMarksQuarantineAndRevocation(t *testing.T) {
	s := newStack(t, false, nil)
	incident := s.quarantine(t)
	run, err := s.admin.StartRunbook(t.Context(), "respond-confirmed-compromise", v1.StartRunbookRequest{Gateway: "gw-osaka", Incident: incident})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.d.Controller.ExecuteRun(t.Context(), run.ID); err != nil {
		t.Fatal(err)
	}
	if r := s.run(t, run.ID); r.State != store.RunSucceeded {
		t.Fatalf("the response: %s %s", r.State, r.Error)
	}
	b := s.browser(t)
	b.login(t, s.person(t, "view1", "viewer"))
	p := b.get(t, "/ui/map")
	if p.status != http.StatusOK {
		t.Fatalf("the map: %d", p.status)
	}
	for _, want := range []string{
		`<g class="gw posture-quarantined" data-gateway="gw-osaka" data-posture="quarantined">`,
		`<g class="gw posture-normal" data-gateway="gw-hq" data-posture="normal">`,
		`<g class="tunnel revoked" data-tunnel="hq-osaka" data-revoked="true">`,
		`<g class="tunnel revoked" data-tunnel="osaka-dc" data-revoked="true">`,
		`<g class="tunnel" data-tunnel="hq-dc" data-revoked="false">`,
		`data-gateway="gw-osaka" data-posture="quarantined" data-baseline="none"`,
		`href="/ui/incidents/` + incident + `"`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the map lacks %s", want)
		}
	}
	// The viewer may not ask for a release, so the map offers none.
	if strings.Contains(p.body, `href="/ui/release?gateway=gw-osaka"`) {
		t.Error("the viewer's map offers a release request")
	}
	// Revoked tunnels are said in words too, for those who do not see
	// the picture.
	if !regexp.MustCompile(`Revoked tunnels: (hq-osaka, osaka-dc|osaka-dc, hq-osaka)`).MatchString(p.body) {
		t.Errorf("the map does not list the revoked tunnels in words")
	}
}

package report

import (
	"sort"
	"strings"
	"time"

	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/store"
)

// Who acted, as the store records it: an actor string. "user:resp1" is a
// person (or a machine identity) who authenticated with a token or by
// single sign-on; "user:shared-api-token" is the deprecated shared token,
// which names nobody; "local:root" is someone on the controller host;
// "controller" and "agent:gw-osaka" are Warden itself; "api:ops1" is a
// name a client wrote into its request before people had their own
// tokens, which nobody proved. The report shows a person by their name
// ("resp1") and says what kind of actor anything else is, the same way
// everywhere (loc.who).

// Actor kinds.
const (
	ActorPerson      = "person"       // user:<name>, authenticated
	ActorDetector    = "detector"     // user:<name> whose role is intake
	ActorSharedToken = "shared-token" // user:shared-api-token
	ActorLocal       = "local"        // local:<os user>, on the controller host
	ActorController  = "controller"   // the controller itself
	ActorAgent       = "agent"        // agent:<gateway>
	ActorClient      = "client"       // api:<name>, a name nobody verified
	ActorOther       = "other"        // anything else, shown as recorded
)

// Actor is who an actor string names.
type Actor struct {
	// ID is the actor as recorded ("user:resp1").
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Name is the person's or identity's name ("resp1"), the gateway of
	// an agent, or the whole ID for ActorOther.
	Name string `json:"name"`
	// Role, DisplayName and Disabled are what the user store says now
	// (not necessarily when the person acted); empty for actors that are
	// not users in the store, such as single sign-on users.
	Role        string `json:"role,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
}

// Person is someone who acted on the incident as a person (not Warden, an
// agent or a detector), and what they did.
type Person struct {
	Actor string `json:"actor"`
	// Requested, Overrode and Approved are run ids; Resolved are
	// indicator ids.
	Requested []string `json:"requested,omitempty"`
	Overrode  []string `json:"overrode,omitempty"`
	Approved  []string `json:"approved,omitempty"`
	Resolved  []string `json:"resolved,omitempty"`
}

// describeActor says who id is; users are the user store's records by
// name (nil when not known).
func describeActor(id string, users map[string]store.User) Actor {
	a := Actor{ID: id, Kind: ActorOther, Name: id}
	if id == ActorController {
		a.Kind = ActorController
		return a
	}
	for prefix, kind := range map[string]string{"agent:": ActorAgent, "local:": ActorLocal, "api:": ActorClient} {
		if name, ok := strings.CutPrefix(id, prefix); ok && name != "" {
			a.Kind, a.Name = kind, name
			return a
		}
	}
	name := auth.UserOf(id)
	if name == "" {
		return a
	}
	a.Kind, a.Name = ActorPerson, name
	if name == auth.LegacyName {
		a.Kind = ActorSharedToken
		return a
	}
	if u, ok := users[name]; ok {
		a.Role, a.DisplayName, a.Disabled = u.Role, u.DisplayName, u.Disabled
		if u.Role == string(auth.Intake) {
			a.Kind = ActorDetector
		}
	}
	return a
}

// actsAsPerson is true for the kinds of actor the report lists among the
// people who acted: Warden, its agents and detectors are not people.
func actsAsPerson(kind string) bool {
	switch kind {
	case ActorController, ActorAgent, ActorDetector:
		return false
	}
	return true
}

// actor is what m knows of id.
func (m Model) actor(id string) Actor {
	if a, ok := m.Actors[id]; ok {
		return a
	}
	return describeActor(id, nil)
}

// describeActors fills m.Actors for every actor the report names.
func describeActors(m *Model, users map[string]store.User) {
	m.Actors = map[string]Actor{}
	add := func(ids ...string) {
		for _, id := range ids {
			if id != "" {
				m.Actors[id] = describeActor(id, users)
			}
		}
	}
	for _, r := range m.Runs {
		add(r.RequestedBy, r.OverriddenBy, r.ApprovedBy)
		add(r.RefusedApprovers...)
	}
	for _, a := range m.Approvals {
		add(a.By, a.RequestedBy, a.OverriddenBy)
	}
	for _, in := range m.Indicators {
		add(in.ResolvedBy)
	}
	for _, e := range m.Timeline {
		add(e.Actor)
	}
	for _, e := range m.Evidence.Items {
		add(e.CollectedBy)
	}
}

// people lists who acted as a person: requested a run, overrode a gate on
// one, approved one, or resolved an indicator; in the order they first
// did so.
func people(m Model) []Person {
	type deed struct {
		at    time.Time
		actor string
		what  string // requested, overrode, approved, resolved
		id    string
	}
	var deeds []deed
	for _, r := range m.Runs {
		deeds = append(deeds, deed{r.CreatedAt, r.RequestedBy, "requested", r.ID}, deed{r.CreatedAt, r.OverriddenBy, "overrode", r.ID})
		if r.ApprovalRequired {
			deeds = append(deeds, deed{r.ApprovedAt, r.ApprovedBy, "approved", r.ID})
		}
	}
	for _, in := range m.Indicators {
		deeds = append(deeds, deed{in.ResolvedAt, in.ResolvedBy, "resolved", in.ID})
	}
	sort.SliceStable(deeds, func(i, j int) bool { return deeds[i].at.Before(deeds[j].at) })
	var out []Person
	index := map[string]int{}
	for _, d := range deeds {
		if d.actor == "" || !actsAsPerson(m.actor(d.actor).Kind) {
			continue
		}
		i, ok := index[d.actor]
		if !ok {
			i = len(out)
			index[d.actor] = i
			out = append(out, Person{Actor: d.actor})
		}
		p := &out[i]
		switch d.what {
		case "requested":
			p.Requested = append(p.Requested, d.id)
		case "overrode":
			p.Overrode = append(p.Overrode, d.id)
		case "approved":
			p.Approved = append(p.Approved, d.id)
		case "resolved":
			p.Resolved = append(p.Resolved, d.id)
		}
	}
	return out
}

// fourEyesCase is how a run's approval stands against the four-eyes rule.
type fourEyesCase int

// How a run's approval stands against four eyes.
const (
	// fourEyesNotApplicable: no person had to approve the run and nobody
	// overrode a gate on it.
	fourEyesNotApplicable fourEyesCase = iota
	// fourEyesSecondPerson: a person approved the run who neither asked
	// for it nor overrode a gate on it.
	fourEyesSecondPerson
	// fourEyesAlone: one person acted alone; the approver also asked for
	// the run or overrode a gate on it, or overrode a gate on a run that
	// then needed nobody's approval.
	fourEyesAlone
	// fourEyesWaiting: the run still waits for an approver.
	fourEyesWaiting
	// fourEyesUnapproved: the run needed an approval, or a gate on it was
	// overridden, and nobody approved it (it was cancelled or failed).
	fourEyesUnapproved
)

// fourEyes says how the run's approval stands against four eyes.
func (r Run) fourEyes() fourEyesCase {
	switch {
	case r.State == store.RunAwaitingApproval:
		return fourEyesWaiting
	case r.ApprovalRequired && r.ApprovedBy == "":
		return fourEyesUnapproved
	case r.ApprovalRequired && (r.ApprovedBy == r.RequestedBy || r.ApprovedBy == r.OverriddenBy):
		return fourEyesAlone
	case r.ApprovalRequired:
		return fourEyesSecondPerson
	case r.OverrideReason == "":
		return fourEyesNotApplicable
	case r.ApprovedBy != "":
		// Started with an override and needing no approval (four eyes
		// off): whoever started it let it go alone.
		return fourEyesAlone
	}
	return fourEyesUnapproved
}

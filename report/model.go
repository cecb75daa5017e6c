package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// Model is everything a report says about one incident. It holds only the
// fields the report prints: no raw alerts, labels or step details.
type Model struct {
	GeneratedAt time.Time `json:"generated_at"`
	// InventoryUnknown is true when the report was loaded without an
	// inventory (the CLI reading a store without its configuration). The
	// site's time zone, the gateway's VM and addresses, the tunnels and the
	// peers are then not known, and the report says so instead of writing
	// UTC and empty lists.
	InventoryUnknown bool     `json:"inventory_unknown,omitempty"`
	Incident         Incident `json:"incident"`
	Gateway          Gateway  `json:"gateway"`
	Site             Site     `json:"site"`
	// Peers are the gateways connected to this one by a tunnel.
	Peers []Peer `json:"peers"`
	// OtherTunnels are the tunnels that do not touch the gateway.
	OtherTunnels []string    `json:"other_tunnels"`
	Indicators   []Indicator `json:"indicators"`
	Decisions    []Decision  `json:"decisions"`
	Runs         []Run       `json:"runs"`
	Approvals    []Approval  `json:"approvals"`
	// Timeline is the incident's audit entries, oldest first.
	Timeline []Event `json:"timeline"`
	// Milestones are the key moments, for the summary and the picture.
	Milestones  []Milestone `json:"milestones"`
	Posture     Posture     `json:"posture"`
	Containment Containment `json:"containment"`
	Snapshots   []Snapshot  `json:"snapshots"`
	Evidence    Evidence    `json:"evidence"`
	Baseline    Baseline    `json:"baseline"`
	Credentials Credentials `json:"credentials"`
	Audit       AuditStatus `json:"audit"`
	// Intrusion is what the investigation found (the attacker's timeline).
	Intrusion Intrusion `json:"intrusion"`
	// Release is how the gateway was returned to service; zero while it
	// was not.
	Release Release `json:"release,omitzero"`
	// Actors describes every actor the report names, by the actor string
	// the store recorded ("user:resp1", "controller").
	Actors map[string]Actor `json:"actors,omitempty"`
	// People are those who acted on the incident as persons, in the order
	// they first did.
	People []Person `json:"people,omitempty"`
	// FourEyesOff is true when Load was told that guards.two_person is off
	// (FourEyes(false)): one person may then ask for a run and approve it.
	FourEyesOff bool `json:"four_eyes_off,omitempty"`
}

// Incident is the incident record.
type Incident struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	Severity  string    `json:"severity"`
	Status    string    `json:"status"`
	OpenedAt  time.Time `json:"opened_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Gateway is the affected gateway as the inventory describes it.
type Gateway struct {
	ID                 string   `json:"id"`
	VM                 string   `json:"vm,omitempty"`
	Hostname           string   `json:"hostname,omitempty"`
	Addresses          []string `json:"addresses,omitempty"`
	ManagementNetworks []string `json:"management_networks,omitempty"`
	// InInventory is false when the gateway is no longer configured.
	InInventory bool `json:"in_inventory"`
}

// Site is the affected site.
type Site struct {
	Name string `json:"name"`
	// TimeZone is empty when the inventory is unknown.
	TimeZone string   `json:"time_zone"`
	Networks []string `json:"networks,omitempty"`
}

// Peer is one tunnel from the gateway and what is at its other end.
type Peer struct {
	Tunnel  string `json:"tunnel"`
	Kind    string `json:"kind"`
	Gateway string `json:"gateway"`
	Site    string `json:"site"`
	// OpenIncidents about the peer gateway (not closed), other than this one.
	OpenIncidents []string `json:"open_incidents,omitempty"`
}

// Indicator is one sign of compromise of the incident.
type Indicator struct {
	ID         string    `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	ObservedAt time.Time `json:"observed_at"`
	Kind       string    `json:"kind"`
	Severity   string    `json:"severity"`
	Confidence float64   `json:"confidence"`
	Source     string    `json:"source"`
	Summary    string    `json:"summary,omitempty"`
	Status     string    `json:"status"`
	Duplicate  bool      `json:"duplicate,omitempty"`
	IPs        []string  `json:"ips,omitempty"`
	Domains    []string  `json:"domains,omitempty"`
	Hashes     []string  `json:"hashes,omitempty"`
	// Sender is who sent an indicator of bulk intake (the others are
	// attributed by their audit entries, in the timeline).
	Sender string `json:"sender,omitempty"`
	// ResolvedBy is the person who judged the indicator no longer a
	// threat (warden indicator resolve), with when and why.
	ResolvedBy    string    `json:"resolved_by,omitempty"`
	ResolvedAt    time.Time `json:"resolved_at,omitzero"`
	ResolveReason string    `json:"resolve_reason,omitempty"`
}

// Decision is one policy decision.
type Decision struct {
	At            time.Time `json:"at"`
	Indicator     string    `json:"indicator"`
	Matched       bool      `json:"matched"`
	Policy        string    `json:"policy,omitempty"`
	Runbook       string    `json:"runbook,omitempty"`
	Approval      string    `json:"approval,omitempty"`
	BusinessHours bool      `json:"business_hours"`
	// Reason is the winning policy's explanation; NotMatched lists the
	// policies evaluated before it and why each did not match.
	Reason     string        `json:"reason,omitempty"`
	NotMatched []Explanation `json:"not_matched,omitempty"`
}

// Explanation is why one policy did or did not match.
type Explanation struct {
	Policy string `json:"policy"`
	Reason string `json:"reason"`
}

// Run is one run of a runbook for the incident.
type Run struct {
	ID               string        `json:"id"`
	Runbook          string        `json:"runbook"`
	Policy           string        `json:"policy,omitempty"`
	Trigger          string        `json:"trigger"`
	State            string        `json:"state"`
	ApprovalRequired bool          `json:"approval_required"`
	ApprovalReason   string        `json:"approval_reason,omitempty"`
	ApprovedBy       string        `json:"approved_by,omitempty"`
	ApprovedAt       time.Time     `json:"approved_at,omitzero"`
	OverrideReason   string        `json:"override_reason,omitempty"`
	Error            string        `json:"error,omitempty"`
	CreatedAt        time.Time     `json:"created_at"`
	StartedAt        time.Time     `json:"started_at,omitzero"`
	FinishedAt       time.Time     `json:"finished_at,omitzero"`
	Duration         time.Duration `json:"duration_ns,omitempty"`
	Gates            []plan.Gate   `json:"gates,omitempty"`
	Steps            []Step        `json:"steps"`

	// RequestedBy is who asked for the run: the person who started it, or
	// whoever submitted the indicator a policy decided on; empty for the
	// controller's own runs.
	RequestedBy string `json:"requested_by,omitempty"`
	// OverriddenBy is the person who recorded OverrideReason.
	OverriddenBy string `json:"overridden_by,omitempty"`
	// RefusedApprovers tried to approve the run and were refused by four
	// eyes (they had asked for it or overridden a gate on it).
	RefusedApprovers []string `json:"refused_approvers,omitempty"`
	// Overridden are the gates the override let pass although they were
	// not met.
	Overridden []OverriddenGate `json:"overridden,omitempty"`
}

// OverriddenGate is a gate a person's override let pass unmet.
type OverriddenGate struct {
	Gate string `json:"gate"`
	// Unmet is why the gate was not met, as the controller said it.
	Unmet string `json:"unmet"`
}

// Step is one step of a run.
type Step struct {
	Index      int           `json:"index"`
	Name       string        `json:"name"`
	Action     string        `json:"action"`
	State      string        `json:"state"`
	Optional   bool          `json:"optional,omitempty"`
	Attempts   int           `json:"attempts"`
	StartedAt  time.Time     `json:"started_at,omitzero"`
	FinishedAt time.Time     `json:"finished_at,omitzero"`
	Duration   time.Duration `json:"duration_ns,omitempty"`
	Summary    string        `json:"summary,omitempty"`
	// Verified is what reading real state back said.
	Verified string `json:"verified,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Approval says who let a run proceed, or that no person had to.
type Approval struct {
	Run       string    `json:"run"`
	Runbook   string    `json:"runbook"`
	Required  bool      `json:"required"`
	Reason    string    `json:"reason,omitempty"`
	By        string    `json:"by,omitempty"`
	At        time.Time `json:"at,omitzero"`
	Comment   string    `json:"comment,omitempty"`
	Automatic bool      `json:"automatic"`
	// RequestedBy and OverriddenBy are the run's: with four eyes, By must
	// be neither.
	RequestedBy  string `json:"requested_by,omitempty"`
	OverriddenBy string `json:"overridden_by,omitempty"`
	// Waiting is true while the run still waits for a person.
	Waiting bool   `json:"waiting"`
	Detail  string `json:"detail,omitempty"`
}

// Event is one audit entry of the incident.
type Event struct {
	Seq   int64     `json:"seq"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	// Token is the id of the credential the actor authenticated with
	// ("tk_…", "oidc", "legacy"); empty for Warden's own entries.
	Token   string `json:"token,omitempty"`
	Action  string `json:"action"`
	Run     string `json:"run,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// Milestone kinds.
const (
	MilestoneAlert     = "alert"
	MilestoneDecision  = "decision"
	MilestoneApproval  = "approval"
	MilestoneStep      = "step"
	MilestoneContained = "contained" // the isolate step, verified
)

// Milestone is a key moment.
type Milestone struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Action string    `json:"action,omitempty"` // for steps
	State  string    `json:"state,omitempty"`  // for steps
	Detail string    `json:"detail,omitempty"` // policy, approver
}

// Posture is the gateway's desired and observed state.
type Posture struct {
	Desired    string    `json:"desired"`
	Observed   string    `json:"observed,omitempty"`
	ObservedAt time.Time `json:"observed_at,omitzero"`
}

// Containment says whether the gateway is cut off, and how we know.
type Containment struct {
	Contained bool `json:"contained"`
	// Verified is true when the isolate step's Verify read the VM or host
	// back and found it quarantined.
	Verified   bool      `json:"verified"`
	VerifiedBy string    `json:"verified_by,omitempty"`
	At         time.Time `json:"at,omitzero"`
	// TimeToContain is from the first alert received to isolation verified.
	TimeToContain time.Duration `json:"time_to_contain_ns,omitempty"`
	Released      bool          `json:"released"`
	// Pending is true when a run that would isolate has not finished.
	Pending bool `json:"pending"`
}

// Snapshot is a hypervisor snapshot taken for the incident.
type Snapshot struct {
	Name   string    `json:"name"`
	VM     string    `json:"vm,omitempty"`
	Memory bool      `json:"memory"`
	At     time.Time `json:"at"`
}

// Evidence lists the ledger's artefacts for the incident.
type Evidence struct {
	// Available is false when no ledger was given.
	Available bool           `json:"available"`
	Items     []EvidenceItem `json:"items"`
}

// EvidenceItem is one artefact.
type EvidenceItem struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Kind          string    `json:"kind"`
	Size          int64     `json:"size"`
	SHA256        string    `json:"sha256"`
	CollectedAt   time.Time `json:"collected_at"`
	CollectedBy   string    `json:"collected_by"`
	CollectedFrom string    `json:"collected_from,omitempty"`
}

// Baseline is the hardened-baseline check of the gateway.
type Baseline struct {
	Checked bool      `json:"checked"`
	Passed  bool      `json:"passed"`
	At      time.Time `json:"at,omitzero"`
	Summary string    `json:"summary,omitempty"`
}

// Credentials says whether the tunnel credentials the gateway held have
// been replaced.
type Credentials struct {
	Rotated bool      `json:"rotated"`
	At      time.Time `json:"at,omitzero"`
	Summary string    `json:"summary,omitempty"`
	// Tunnels whose credentials the gateway held.
	Tunnels []CredentialItem `json:"tunnels"`
}

// CredentialItem is one tunnel's credential.
type CredentialItem struct {
	Tunnel  string `json:"tunnel"`
	Kind    string `json:"kind"`
	Peer    string `json:"peer"`
	Rotated bool   `json:"rotated"`
}

// Release says who returned the gateway to service, and what a person's
// override let the release skip.
type Release struct {
	Run        string    `json:"run"`
	At         time.Time `json:"at"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	// OverriddenBy recorded Reason; Overridden are the release gates the
	// override let pass unmet.
	OverriddenBy string           `json:"overridden_by,omitempty"`
	Reason       string           `json:"reason,omitempty"`
	Overridden   []OverriddenGate `json:"overridden,omitempty"`
	// Owed are the overridden gates ("baseline", "credentials-rotated")
	// that still do not hold: what the release still owes.
	Owed []string `json:"owed,omitempty"`
}

// Gates a release can be let through unmet by an override.
const (
	gateBaseline    = "baseline"
	gateCredentials = "credentials-rotated"
)

// AuditStatus is the result of verifying the whole audit chain.
type AuditStatus struct {
	OK      bool   `json:"ok"`
	Entries int64  `json:"entries"`
	Head    string `json:"head,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// Actions the report recognises beyond the catalogue's constants.
const (
	actionRotate   = "rotate_credentials"
	actionBaseline = "verify_baseline"
)

// Option tells Load what the store cannot: how the controller is
// configured.
type Option func(*options)

type options struct {
	fourEyes    bool
	verifyAudit bool
}

// FourEyes says whether guards.two_person (four eyes) is on in the
// controller's configuration; without this option Load assumes it is, as
// it is by default. Off, the report says in its summary that one person
// could ask for a run and approve it alone.
func FourEyes(on bool) Option {
	return func(o *options) { o.fourEyes = on }
}

// VerifyAudit says whether Load verifies the whole audit chain (it does
// by default, and the report says whether the chain is intact). A page
// that shows an incident live and redraws it on every change leaves it out
// (false): the chain is the whole store's, and Model.Audit stays zero.
func VerifyAudit(on bool) Option {
	return func(o *options) { o.verifyAudit = on }
}

// Load gathers an incident's report from the store, the inventory, the
// audit chain and, when ledger is not nil, the evidence ledger. It only
// reads; listing evidence is not an access and records no custody event.
//
// A nil inventory means it is not known (a store read without its
// configuration): the model is marked InventoryUnknown and carries no
// time zone, VM, networks, tunnels or peers rather than guessed ones.
func Load(ctx context.Context, st store.Backend, inv *inventory.Inventory, ledger *evidence.Ledger, incidentID string, opts ...Option) (Model, error) {
	if st == nil {
		return Model{}, errors.New("loading report: a store is required")
	}
	o := options{fourEyes: true, verifyAudit: true}
	for _, opt := range opts {
		opt(&o)
	}
	inc, err := st.Incident(ctx, incidentID)
	if err != nil {
		return Model{}, fmt.Errorf("loading report of %s: %w", incidentID, err)
	}
	m := Model{GeneratedAt: time.Now().UTC(), Incident: Incident{ID: inc.ID, Title: inc.Title, Severity: inc.Severity,
		Status: inc.Status, OpenedAt: inc.OpenedAt, UpdatedAt: inc.UpdatedAt}, FourEyesOff: !o.fourEyes}

	m.Gateway = Gateway{ID: inc.Gateway}
	m.Site = Site{Name: inc.Site}
	if inv == nil {
		m.InventoryUnknown = true
	} else {
		if gw, ok := inv.Gateway(inc.Gateway); ok {
			m.Gateway = Gateway{ID: gw.ID, VM: gw.VM, Hostname: gw.Hostname, Addresses: gw.Addresses, ManagementNetworks: gw.ManagementNetworks, InInventory: true}
		}
		m.Site.TimeZone = "UTC"
		if s, ok := inv.Site(inc.Site); ok {
			m.Site = Site{Name: s.Name, TimeZone: s.Location().String(), Networks: s.Networks}
		}
		if err := loadPeers(ctx, st, inv, &m); err != nil {
			return Model{}, err
		}
	}

	inds, err := st.IndicatorsOfIncident(ctx, incidentID)
	if err != nil {
		return Model{}, fmt.Errorf("loading indicators of %s: %w", incidentID, err)
	}
	// Stored times do not sort as text within a second; order here.
	sort.SliceStable(inds, func(i, j int) bool { return inds[i].ReceivedAt.Before(inds[j].ReceivedAt) })
	for _, r := range inds {
		in := r.Indicator
		m.Indicators = append(m.Indicators, Indicator{ID: r.ID, ReceivedAt: r.ReceivedAt, ObservedAt: in.ObservedAt, Kind: string(in.Kind),
			Severity: string(in.Severity), Confidence: in.Confidence, Source: in.Source, Summary: in.Summary, Status: in.Status,
			Duplicate: r.Duplicate, IPs: in.Observables.IPs, Domains: in.Observables.Domains, Hashes: in.Observables.Hashes, Sender: r.Sender})
		if d := r.Decision; d != nil && d.Triage == "accepted" {
			// Bulk intake keeps the decision on the row, without the
			// explanations of the policies that did not match.
			approval := d.Approval
			if approval == "" && d.Policy != "" {
				approval = "auto"
			}
			m.Decisions = append(m.Decisions, Decision{At: d.At, Indicator: r.ID, Matched: d.Policy != "", Policy: d.Policy,
				Runbook: d.Runbook, Approval: approval, BusinessHours: d.BusinessHours})
		}
	}

	entries, err := audit.List(ctx, st.DB(), incidentID)
	if err != nil {
		return Model{}, fmt.Errorf("loading audit entries of %s: %w", incidentID, err)
	}
	comments := map[string]string{}
	refused := map[string][]string{}
	resolved := map[string]audit.Entry{}
	for _, e := range entries {
		m.Timeline = append(m.Timeline, Event{Seq: e.Seq, At: e.At, Actor: e.Actor, Token: e.Token, Action: e.Action, Run: e.Run, Subject: e.Subject})
		switch e.Action {
		case "policy.decided":
			m.Decisions = append(m.Decisions, decisionOf(e))
		case "run.approved":
			var d struct {
				Comment string `json:"comment"`
			}
			_ = json.Unmarshal(e.Data, &d)
			comments[e.Run] = d.Comment
		case "run.approval_refused":
			if !slices.Contains(refused[e.Run], e.Actor) {
				refused[e.Run] = append(refused[e.Run], e.Actor)
			}
		case "indicator.resolved_by_person":
			var d struct {
				Indicator string `json:"indicator"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.Indicator != "" {
				resolved[d.Indicator] = e
			}
		}
	}
	for i, in := range m.Indicators {
		if e, ok := resolved[in.ID]; ok {
			var d struct {
				Reason string `json:"reason"`
			}
			_ = json.Unmarshal(e.Data, &d)
			m.Indicators[i].ResolvedBy, m.Indicators[i].ResolvedAt, m.Indicators[i].ResolveReason = e.Actor, e.At, d.Reason
		}
	}

	// Decisions from audit entries and from bulk indicators' rows, in
	// time order.
	sort.SliceStable(m.Decisions, func(i, j int) bool { return m.Decisions[i].At.Before(m.Decisions[j].At) })

	if err := loadRuns(ctx, st, &m, comments, refused); err != nil {
		return Model{}, err
	}
	p, err := st.Posture(ctx, inc.Gateway)
	if err != nil {
		return Model{}, fmt.Errorf("loading posture of %s: %w", inc.Gateway, err)
	}
	m.Posture = Posture{Desired: p.Desired, Observed: p.Observed, ObservedAt: p.ObservedAt}
	if p.Incident != "" && p.Incident != inc.ID {
		// The posture now belongs to a later incident; say only what this
		// incident's own runs did.
		m.Posture.Desired = ""
	}
	summarise(&m)
	if err := loadOwed(ctx, st, &m); err != nil {
		return Model{}, err
	}

	if ledger != nil {
		m.Evidence.Available = true
		recs, err := ledger.List(ctx, incidentID)
		if err != nil {
			return Model{}, fmt.Errorf("loading evidence of %s: %w", incidentID, err)
		}
		for _, r := range recs {
			m.Evidence.Items = append(m.Evidence.Items, EvidenceItem{ID: r.ID, Name: r.Name, Kind: r.Kind, Size: r.Size, SHA256: r.SHA256,
				CollectedAt: r.CollectedAt, CollectedBy: r.CollectedBy, CollectedFrom: r.CollectedFrom})
		}
	}

	if err := loadActors(ctx, st, &m); err != nil {
		return Model{}, err
	}

	if !o.verifyAudit {
		return m, nil
	}
	rep, err := audit.Verify(ctx, st.DB())
	m.Audit = AuditStatus{OK: err == nil, Entries: rep.Entries, Head: rep.Head}
	if err != nil {
		var be *audit.BrokenError
		if !errors.As(err, &be) {
			return Model{}, fmt.Errorf("verifying audit chain: %w", err)
		}
		m.Audit.Problem = be.Error()
	}
	return m, nil
}

func loadPeers(ctx context.Context, st store.Backend, inv *inventory.Inventory, m *Model) error {
	open := map[string][]string{}
	incs, err := st.Incidents(ctx, 10000)
	if err != nil {
		return fmt.Errorf("loading incidents of peer gateways: %w", err)
	}
	for _, in := range incs {
		if in.ID != m.Incident.ID && in.Status != store.IncidentClosed {
			open[in.Gateway] = append(open[in.Gateway], in.ID)
		}
	}
	for _, t := range inv.Tunnels {
		name := t.Name
		if name == "" {
			name = t.A + "-" + t.B
		}
		if t.A != m.Gateway.ID && t.B != m.Gateway.ID {
			m.OtherTunnels = append(m.OtherTunnels, name)
			continue
		}
		peer := t.Peer(m.Gateway.ID)
		p := Peer{Tunnel: name, Kind: t.Kind, Gateway: peer}
		if g, ok := inv.Gateway(peer); ok {
			p.Site = g.Site
		}
		p.OpenIncidents = open[peer]
		sort.Strings(p.OpenIncidents)
		m.Peers = append(m.Peers, p)
		m.Credentials.Tunnels = append(m.Credentials.Tunnels, CredentialItem{Tunnel: name, Kind: t.Kind, Peer: peer})
	}
	sort.Slice(m.Peers, func(i, j int) bool { return m.Peers[i].Tunnel < m.Peers[j].Tunnel })
	sort.Slice(m.Credentials.Tunnels, func(i, j int) bool { return m.Credentials.Tunnels[i].Tunnel < m.Credentials.Tunnels[j].Tunnel })
	sort.Strings(m.OtherTunnels)
	return nil
}

func decisionOf(e audit.Entry) Decision {
	var d struct {
		Indicator     string `json:"indicator"`
		Matched       bool   `json:"matched"`
		Policy        string `json:"policy"`
		Runbook       string `json:"runbook"`
		Approval      string `json:"approval"`
		BusinessHours bool   `json:"business_hours"`
		Explanations  []struct {
			Policy  string
			Matched bool
			Reason  string
		} `json:"explanations"`
	}
	_ = json.Unmarshal(e.Data, &d)
	out := Decision{At: e.At, Indicator: d.Indicator, Matched: d.Matched, Policy: d.Policy, Runbook: d.Runbook,
		Approval: d.Approval, BusinessHours: d.BusinessHours}
	for _, x := range d.Explanations {
		if x.Policy == d.Policy && d.Matched {
			out.Reason = x.Reason
			break // policies after the winner were not evaluated
		}
		out.NotMatched = append(out.NotMatched, Explanation{Policy: x.Policy, Reason: x.Reason})
	}
	return out
}

// stepResult is the part of a stored actions.Result the report reads. The
// rest of Details is never copied.
type stepResult struct {
	Summary string `json:"summary"`
	Details struct {
		VM          string `json:"vm"`
		Snapshot    string `json:"snapshot"`
		Memory      *bool  `json:"memory_requested"`
		Quarantined *bool  `json:"quarantined"`
		Verified    string `json:"verified"`
		Verify      struct {
			Snapshot string `json:"snapshot"`
			Memory   *bool  `json:"memory"`
		} `json:"verify"`
	} `json:"details"`
}

func loadRuns(ctx context.Context, st store.Backend, m *Model, comments map[string]string, refused map[string][]string) error {
	list, err := st.Runs(ctx, store.RunFilter{Incident: m.Incident.ID, Limit: 10000})
	if err != nil {
		return fmt.Errorf("loading runs of %s: %w", m.Incident.ID, err)
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].CreatedAt.Equal(list[j].CreatedAt) {
			return list[i].CreatedAt.Before(list[j].CreatedAt)
		}
		return list[i].ID < list[j].ID
	})
	for _, short := range list {
		r, err := st.Run(ctx, short.ID)
		if err != nil {
			return fmt.Errorf("loading run %s: %w", short.ID, err)
		}
		run := Run{ID: r.ID, Runbook: r.Runbook, Policy: r.Policy, Trigger: r.Trigger, State: r.State, ApprovalRequired: r.ApprovalRequired,
			ApprovalReason: r.ApprovalReason, ApprovedBy: r.ApprovedBy, ApprovedAt: r.ApprovedAt, OverrideReason: r.OverrideReason,
			Error: r.Error, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
			RequestedBy: r.RequestedBy, OverriddenBy: r.OverriddenBy, RefusedApprovers: refused[r.ID]}
		if run.RequestedBy == "" && r.Trigger == "manual" {
			// Recorded before runs kept their requester: a manual run was
			// asked for by whoever created it.
			run.RequestedBy = creatorOf(m.Timeline, r.ID)
		}
		if !r.StartedAt.IsZero() && !r.FinishedAt.IsZero() {
			run.Duration = r.FinishedAt.Sub(r.StartedAt)
		}
		var p plan.Plan
		if len(r.Plan) > 0 && json.Unmarshal(r.Plan, &p) == nil {
			run.Gates = p.Gates
		}
		if r.OverrideReason != "" {
			if run.OverriddenBy == "" {
				// Recorded before runs kept who overrode: the override
				// came with the request that created the run.
				run.OverriddenBy = creatorOf(m.Timeline, r.ID)
			}
			run.Overridden = overriddenGates(run.Gates)
		}
		for _, s := range r.Steps {
			step := Step{Index: s.Index, Name: s.Name, Action: s.Action, State: s.State, Optional: s.Optional, Attempts: s.Attempts,
				StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Error: s.Error}
			if !s.StartedAt.IsZero() && !s.FinishedAt.IsZero() {
				step.Duration = s.FinishedAt.Sub(s.StartedAt)
			}
			var res stepResult
			if len(s.Result) > 0 && json.Unmarshal(s.Result, &res) == nil {
				step.Summary, step.Verified = res.Summary, res.Details.Verified
				if s.Action == actions.NameSnapshot && s.State == store.StepSucceeded {
					snap := Snapshot{Name: res.Details.Snapshot, VM: res.Details.VM, At: s.FinishedAt}
					if res.Details.Verify.Snapshot != "" {
						snap.Name = res.Details.Verify.Snapshot
					}
					switch {
					case res.Details.Verify.Memory != nil:
						snap.Memory = *res.Details.Verify.Memory
					case res.Details.Memory != nil:
						snap.Memory = *res.Details.Memory
					}
					if snap.Name != "" {
						m.Snapshots = append(m.Snapshots, snap)
					}
				}
			}
			run.Steps = append(run.Steps, step)
			loadIntrusion(m, r.ID, s)
		}
		m.Runs = append(m.Runs, run)

		a := Approval{Run: r.ID, Runbook: r.Runbook, Required: r.ApprovalRequired, Reason: r.ApprovalReason, By: r.ApprovedBy,
			At: r.ApprovedAt, Comment: comments[r.ID], Waiting: r.State == store.RunAwaitingApproval,
			RequestedBy: run.RequestedBy, OverriddenBy: run.OverriddenBy}
		switch {
		case r.ApprovalRequired:
		case r.Trigger == "manual":
			a.Detail = "started by " + r.ApprovedBy
		default:
			a.Automatic = true
			for _, g := range run.Gates {
				if g.Name == "approval" {
					a.Detail = g.Detail
				}
			}
		}
		m.Approvals = append(m.Approvals, a)
	}
	return nil
}

// loadActors describes every actor the model names, with what the user
// store says of the people among them, and lists the people who acted.
func loadActors(ctx context.Context, st store.Backend, m *Model) error {
	list, err := st.Users(ctx)
	if err != nil {
		return fmt.Errorf("loading users: %w", err)
	}
	users := make(map[string]store.User, len(list))
	for _, u := range list {
		users[u.Name] = u
	}
	describeActors(m, users)
	m.People = people(*m)
	return nil
}

// summarise derives milestones, containment, baseline and credential state
// from the indicators, decisions and runs.
func summarise(m *Model) {
	if len(m.Indicators) > 0 {
		m.Milestones = append(m.Milestones, Milestone{At: m.Indicators[0].ReceivedAt, Kind: MilestoneAlert, Detail: m.Indicators[0].Kind})
	}
	for _, d := range m.Decisions {
		if d.Matched {
			m.Milestones = append(m.Milestones, Milestone{At: d.At, Kind: MilestoneDecision, Detail: d.Policy})
			break
		}
	}
	for _, r := range m.Runs {
		if r.ApprovalRequired && !r.ApprovedAt.IsZero() {
			m.Milestones = append(m.Milestones, Milestone{At: r.ApprovedAt, Kind: MilestoneApproval, Detail: r.ApprovedBy})
		}
		for _, s := range r.Steps {
			if s.FinishedAt.IsZero() {
				if s.Action == actions.NameIsolate && !r.Terminal() {
					m.Containment.Pending = true
				}
				continue
			}
			kind := MilestoneStep
			if s.Action == actions.NameIsolate && s.State == store.StepSucceeded {
				kind = MilestoneContained
				m.Containment.Verified = true
				m.Containment.VerifiedBy = s.Verified
				m.Containment.At = s.FinishedAt
				if len(m.Indicators) > 0 {
					m.Containment.TimeToContain = s.FinishedAt.Sub(m.Indicators[0].ReceivedAt)
				}
			}
			if s.Action == actions.NameRelease && s.State == store.StepSucceeded {
				m.Containment.Released = true
				m.Release = Release{Run: r.ID, At: s.FinishedAt, ApprovedBy: r.ApprovedBy, OverriddenBy: r.OverriddenBy,
					Reason: r.OverrideReason, Overridden: r.Overridden}
			}
			if s.Action == actionBaseline {
				m.Baseline = Baseline{Checked: true, Passed: s.State == store.StepSucceeded, At: s.FinishedAt, Summary: s.Summary}
			}
			if s.Action == actionRotate && s.State == store.StepSucceeded {
				m.Credentials.Rotated, m.Credentials.At, m.Credentials.Summary = true, s.FinishedAt, s.Summary
				for i := range m.Credentials.Tunnels {
					m.Credentials.Tunnels[i].Rotated = true
				}
			}
			m.Milestones = append(m.Milestones, Milestone{At: s.FinishedAt, Kind: kind, Action: s.Action, State: s.State})
		}
	}
	sort.SliceStable(m.Milestones, func(i, j int) bool { return m.Milestones[i].At.Before(m.Milestones[j].At) })
	m.Containment.Contained = m.Containment.Verified && !m.Containment.Released &&
		(m.Posture.Desired == store.PostureQuarantined || m.Posture.Desired == "")
}

// overrideMark is how the controller appends an override to the detail of
// a release gate that was not met (controller.releaseGates).
const overrideMark = " — overridden by "

// overriddenGates are the gates an override let pass unmet.
func overriddenGates(gates []plan.Gate) []OverriddenGate {
	var out []OverriddenGate
	for _, g := range gates {
		if unmet, _, ok := strings.Cut(g.Detail, overrideMark); ok && g.Passed {
			out = append(out, OverriddenGate{Gate: g.Name, Unmet: unmet})
		}
	}
	return out
}

// creatorOf is the actor who created a run, from the audit.
func creatorOf(timeline []Event, run string) string {
	for _, e := range timeline {
		if e.Run == run && e.Action == "run.created" {
			return e.Actor
		}
	}
	return ""
}

// loadOwed works out which overridden release gates still do not hold: a
// baseline check passed, or credentials rotated, after the release was
// asked for settles what the override skipped.
func loadOwed(ctx context.Context, st store.Backend, m *Model) error {
	if len(m.Release.Overridden) == 0 {
		return nil
	}
	var asked time.Time
	for _, r := range m.Runs {
		if r.ID == m.Release.Run {
			asked = r.CreatedAt
		}
	}
	for _, g := range m.Release.Overridden {
		switch g.Gate {
		case gateBaseline:
			done := m.Baseline.Passed && m.Baseline.At.After(asked)
			if !done {
				latest, ok, err := st.LatestBaseline(ctx, m.Gateway.ID)
				if err != nil {
					return fmt.Errorf("loading baseline of %s: %w", m.Gateway.ID, err)
				}
				done = ok && latest.Passed && latest.CheckedAt.After(asked)
			}
			if !done {
				m.Release.Owed = append(m.Release.Owed, gateBaseline)
			}
		case gateCredentials:
			if !(m.Credentials.Rotated && m.Credentials.At.After(asked)) {
				m.Release.Owed = append(m.Release.Owed, gateCredentials)
			}
		}
	}
	return nil
}

// Terminal reports whether the run will not change any more.
func (r Run) Terminal() bool {
	return r.State == store.RunSucceeded || r.State == store.RunFailed || r.State == store.RunCancelled
}

package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/plan"
	"github.com/warden-ir/warden/store"
)

// runCard is a run as the inbox and its page show it: what it will do
// and why it waits, in plain words.
type runCard struct {
	ID, Incident, Gateway, Site, Runbook string
	// Title says what the run is for ("Release gw-osaka").
	Title   string
	State   string
	Waiting bool
	// Why are the gates that hold it, as short badges.
	Why            []string
	ApprovalReason string
	AskedBy        string
	AskedAt        string
	OverriddenBy   string
	OverrideReason string
	ApprovedBy     string
	ApprovedAt     string
	Error          string
	Steps          []stepLine
	Gates          []gateLine
	// Active: the run has not finished (it may still be cancelled).
	Active bool
}

// stepLine is a step: planned, and once the run has run, what happened.
type stepLine struct {
	N                     int
	Name, Action, Words   string
	Expected              string
	Changes, Warnings     []string
	State                 string
	Attempts              int
	Result, Error         string
	Destructive, Evidence bool
}

// gateLine is a gate: met, owed (a person must act) or a note.
type gateLine struct {
	Name, Title, Detail, Status string
}

// people names actors for people: "Aiko Sato (appr1)" for user:appr1.
type people map[string]string

func (c *Console) people(rq *request) people {
	out := people{}
	users, err := c.opt.Controller.Store().Users(rq.ctx)
	if err != nil {
		c.opt.Log.Error("console: listing users", "err", err)
		return out
	}
	for _, u := range users {
		if u.DisplayName != "" {
			out[auth.ActorPrefix+u.Name] = u.DisplayName + " (" + u.Name + ")"
		}
	}
	return out
}

func (p people) name(actor string) string {
	if actor == "" {
		return "—"
	}
	if n, ok := p[actor]; ok {
		return n
	}
	if name := auth.UserOf(actor); name != "" {
		return name
	}
	return actor
}

// card lays out a run, with its steps when it has them.
func (c *Console) card(rq *request, r store.Run, who people) runCard {
	tr := translator{rq.lang}
	zone := c.zoneOf(r.Gateway)
	rc := runCard{ID: r.ID, Incident: r.Incident, Gateway: r.Gateway, Site: r.Site, Runbook: r.Runbook, State: r.State,
		Waiting: r.State == store.RunAwaitingApproval, ApprovalReason: r.ApprovalReason, AskedBy: who.name(r.RequestedBy),
		AskedAt: when(r.CreatedAt, zone), OverrideReason: r.OverrideReason, Error: r.Error, Active: !r.Terminal()}
	rc.Title = tr.T("run.on", tr.Word("runbook", r.Runbook), r.Gateway, r.Site)
	if r.OverriddenBy != "" {
		rc.OverriddenBy = who.name(r.OverriddenBy)
	}
	if r.ApprovedBy != "" {
		rc.ApprovedBy, rc.ApprovedAt = who.name(r.ApprovedBy), when(r.ApprovedAt, zone)
	}
	var p plan.Plan
	if len(r.Plan) > 0 {
		if err := json.Unmarshal(r.Plan, &p); err != nil {
			c.opt.Log.Error("console: reading a run's plan", "run", r.ID, "err", err)
		}
	}
	done := map[int]store.Step{}
	for _, s := range r.Steps {
		done[s.Index] = s
	}
	for _, s := range p.Steps {
		line := stepLine{N: s.Index + 1, Name: s.Name, Action: s.Action, Words: tr.Word("action", s.Action), Destructive: s.Destructive, Evidence: s.Evidence}
		if e := s.Expected; e != nil {
			line.Expected, line.Changes, line.Warnings = e.Summary, e.Changes, e.Warnings
		}
		if st, ok := done[s.Index]; ok {
			line.State, line.Attempts, line.Error = st.State, st.Attempts, st.Error
			line.Result = resultSummary(st.Result)
		}
		rc.Steps = append(rc.Steps, line)
	}
	for _, g := range p.Gates {
		gl := gateLine{Name: g.Name, Title: tr.Word("gatename", g.Name), Detail: g.Detail}
		switch {
		case g.Passed && strings.Contains(g.Detail, "overridden by"):
			gl.Status = "overridden"
		case g.Passed:
			gl.Status = "met"
		case g.Blocking:
			gl.Status = "owed"
			if rc.Waiting && !slices.Contains(rc.Why, g.Name) {
				rc.Why = append(rc.Why, g.Name)
			}
		default:
			gl.Status = "note"
		}
		rc.Gates = append(rc.Gates, gl)
	}
	return rc
}

// resultSummary is the summary line a step's result recorded.
func resultSummary(raw json.RawMessage) string {
	var res struct {
		Summary string `json:"summary"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &res) != nil {
		return ""
	}
	return res.Summary
}

// zoneOf is the time zone of a gateway's site (UTC when unknown).
func (c *Console) zoneOf(gateway string) *time.Location {
	inv := c.opt.Controller.Inventory()
	if gw, ok := inv.Gateway(gateway); ok {
		if s, ok := inv.Site(gw.Site); ok {
			return s.Location()
		}
	}
	return time.UTC
}

// inboxView is the inbox: the breaker, and the runs waiting for a person.
type inboxView struct {
	Breaker  store.Breaker
	Tripped  string
	CanReset bool
	Runs     []runCard
}

func (c *Console) inbox(rq *request) {
	c.showInbox(rq, http.StatusOK, "")
}

func (c *Console) showInbox(rq *request, status int, msg string) {
	st := c.opt.Controller.Store()
	waiting, err := st.Runs(rq.ctx, store.RunFilter{States: []string{store.RunAwaitingApproval}, Limit: 200})
	if err != nil {
		rq.internal("listing waiting runs", err)
		return
	}
	br, err := st.Breaker(rq.ctx)
	if err != nil {
		rq.internal("reading the circuit breaker", err)
		return
	}
	who := c.people(rq)
	iv := inboxView{Breaker: br, CanReset: rq.sess.p.Role.Can(auth.Administer)}
	if br.Tripped {
		iv.Tripped = rq.t("breaker.tripped", when(br.TrippedAt, time.UTC), br.Reason)
	}
	for _, r := range waiting {
		full, err := st.Run(rq.ctx, r.ID)
		if err != nil {
			rq.internal("reading a waiting run", err)
			return
		}
		iv.Runs = append(iv.Runs, c.card(rq, full, who))
	}
	v := rq.newView("inbox", rq.t("inbox.title"), iv)
	v.Error = msg
	rq.render(status, "inbox", v)
}

// runView is one run's page.
type runView struct {
	Run runCard
}

func (c *Console) runPage(rq *request) {
	c.showRun(rq, http.StatusOK, "")
}

func (c *Console) showRun(rq *request, status int, msg string) {
	r, err := c.opt.Controller.Store().Run(rq.ctx, rq.r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		rq.fail(http.StatusNotFound, rq.t("error.not_found"))
		return
	}
	if err != nil {
		rq.internal("reading a run", err)
		return
	}
	v := rq.newView("inbox", rq.t("run.title", r.ID), runView{Run: c.card(rq, r, c.people(rq))})
	v.Error = msg
	rq.render(status, "run", v)
}

// approve asks the API to approve a run as the signed-in person. The
// controller decides (role, four eyes, the release gates again); a refusal
// shows its reason on the run's page, with its status.
func (c *Console) approve(rq *request) {
	id := rq.r.PathValue("id")
	_, err := rq.api().Approve(rq.ctx, id, v1.ApproveRequest{Comment: strings.TrimSpace(rq.r.PostForm.Get("comment"))})
	if err != nil {
		rq.acted(err, func(status int, msg string) { c.showRun(rq, status, msg) })
		return
	}
	rq.seeOther(Prefix+"runs/"+id, "approved")
}

// cancel asks the API to cancel a run as the signed-in person.
func (c *Console) cancel(rq *request) {
	id := rq.r.PathValue("id")
	_, err := rq.api().Cancel(rq.ctx, id, v1.CancelRequest{Reason: strings.TrimSpace(rq.r.PostForm.Get("reason"))})
	if err != nil {
		rq.acted(err, func(status int, msg string) { c.showRun(rq, status, msg) })
		return
	}
	rq.seeOther(Prefix+"runs/"+id, "cancelled")
}

// resetBreaker asks the API to close the circuit breaker (admins).
func (c *Console) resetBreaker(rq *request) {
	res, err := rq.api().ResetBreaker(rq.ctx, v1.BreakerResetRequest{Reason: strings.TrimSpace(rq.r.PostForm.Get("reason"))})
	if err != nil {
		rq.acted(err, func(status int, msg string) { c.showInbox(rq, status, msg) })
		return
	}
	done := "reset"
	if !res.WasTripped {
		done = "not_tripped"
	}
	rq.seeOther(Prefix+"inbox", done)
}

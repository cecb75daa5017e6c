package console

import (
	"net/http"
	"net/url"
	"strings"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/store"
)

// releaseView is the release request: pick a gateway, see which release
// gates are met and which are owed, ask (with an override reason if need
// be); another person approves in the inbox.
type releaseView struct {
	Gateways []gatewayChoice
	Gateway  string
	Incident string
	Posture  string
	// NotQuarantined says the chosen gateway is not quarantined.
	NotQuarantined string
	Gates          []gateLine
	Override       string
}

type gatewayChoice struct {
	ID, Label string
	Selected  bool
}

func (c *Console) releasePage(rq *request) {
	q := rq.r.URL.Query()
	c.showRelease(rq, http.StatusOK, "", strings.TrimSpace(q.Get("gateway")), strings.TrimSpace(q.Get("incident")), "")
}

// showRelease draws the release request for gateway. The gates are a
// preview (controller.PlanManual, in a transaction it rolls back): looking
// changes nothing.
func (c *Console) showRelease(rq *request, status int, msg, gateway, incident, override string) {
	ctl := c.opt.Controller
	gws, err := ctl.Gateways(rq.ctx)
	if err != nil {
		rq.internal("listing gateways", err)
		return
	}
	tr := translator{rq.lang}
	rv := releaseView{Gateway: gateway, Incident: incident, Override: override}
	// Quarantined gateways first: those are the ones to release.
	for _, quarantined := range []bool{true, false} {
		for _, g := range gws {
			if (g.Posture.Desired == store.PostureQuarantined) != quarantined {
				continue
			}
			rv.Gateways = append(rv.Gateways, gatewayChoice{ID: g.ID, Label: g.ID + " — " + g.Site + " — " + tr.Word("posture", g.Posture.Desired), Selected: g.ID == gateway})
			if g.ID == gateway {
				rv.Posture = g.Posture.Desired
				if incident == "" {
					rv.Incident = g.Posture.Incident
				}
			}
		}
	}
	if gateway != "" && rv.Posture == "" {
		msg = strings.TrimSpace(msg + " " + rq.t("refused", "gateway: unknown gateway "+gateway))
		status = max(status, http.StatusNotFound)
		rv.Gateway = ""
	}
	if rv.Gateway != "" {
		if rv.Posture != store.PostureQuarantined {
			rv.NotQuarantined = rq.t("release.not_quarantined", gateway, tr.Word("posture", rv.Posture))
		}
		p, err := ctl.PlanManual(rq.ctx, controller.StartRequest{Runbook: v1.ReleaseRunbook, Gateway: rv.Gateway, Incident: rv.Incident, Actor: rq.sess.p.Actor()})
		if err != nil {
			rq.internal("previewing the release gates", err)
			return
		}
		for _, g := range p.Gates {
			if g.Name == "approval" {
				// The preview's "started by" you: the release's own
				// approval gate below says what counts.
				continue
			}
			gl := gateLine{Name: g.Name, Title: tr.Word("gatename", g.Name), Detail: g.Detail, Status: "note"}
			switch {
			case g.Passed:
				gl.Status = "met"
			case g.Blocking:
				gl.Status = "owed"
			}
			rv.Gates = append(rv.Gates, gl)
		}
	}
	v := rq.newView("release", rq.t("release.title"), rv)
	v.Error = msg
	rq.render(status, "release", v)
}

// requestRelease asks the API for the release as the signed-in person:
// the controller refuses it (with the unmet gates named) unless the gates
// are met or overridden, and it then waits for another person's approval.
func (c *Console) requestRelease(rq *request) {
	f := rq.r.PostForm
	gateway, incident, override := strings.TrimSpace(f.Get("gateway")), strings.TrimSpace(f.Get("incident")), strings.TrimSpace(f.Get("override_reason"))
	run, err := rq.api().Release(rq.ctx, v1.StartRunbookRequest{Gateway: gateway, Incident: incident, OverrideReason: override})
	if err != nil {
		rq.acted(err, func(status int, msg string) { c.showRelease(rq, status, msg, gateway, incident, override) })
		return
	}
	rq.seeOther(Prefix+"runs/"+url.PathEscape(run.ID), "asked")
}

package console

import (
	"cmp"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// mapMaxGateways is how many gateways the picture draws at most; beyond,
// it draws those with something going on and their peers, and says how
// many healthy ones it left out (a phone cannot show 5,000 sites).
const mapMaxGateways = 40

// mapView is the VPN map, which follows the fleet live.
type mapView struct {
	Live string
	Seq  int64
	Body mapBody
}

type mapBody struct {
	Pic     mapPicture
	Cards   []gatewayCard
	Others  int
	Revoked []string
}

// mapPicture is the SVG: gateways on a circle, grouped by site, tunnels
// between them.
type mapPicture struct {
	Alt           string
	Width, Height int
	Nodes         []mapNode
	Links         []mapLink
}

type mapNode struct {
	ID, Site, Posture string
	X, Y, LabelY      int
	OpenIncidents     int
}

type mapLink struct {
	Name, Kind     string
	X1, Y1, X2, Y2 int
	MX, MY         int
	Revoked        bool
}

// gatewayCard is a gateway under the picture: posture, last baseline
// result and open incidents.
type gatewayCard struct {
	ID, Site, Posture, Observed string
	Baseline, BaselineState     string
	Incidents                   []incidentRef
	Revoked                     bool
	Release                     string
}

type incidentRef struct {
	ID, Title, Href string
}

func (c *Console) fleetMap(rq *request) {
	v, err := c.mapView(rq)
	if err != nil {
		rq.internal("drawing the map", err)
		return
	}
	rq.render(http.StatusOK, "map", rq.newView("map", rq.t("map.title"), v))
}

func (c *Console) fleetMapLive(rq *request) {
	rq.follow(func() (int64, error) { return audit.LastSeq(rq.ctx, c.opt.Controller.Store().DB(), "") }, func() (string, error) {
		v, err := c.mapView(rq)
		if err != nil {
			return "", err
		}
		return c.fragment("map", "map-live", rq.newView("map", "", v))
	})
}

func (c *Console) mapView(rq *request) (mapView, error) {
	ctl := c.opt.Controller
	st := ctl.Store()
	seq, err := audit.LastSeq(rq.ctx, st.DB(), "")
	if err != nil {
		return mapView{}, err
	}
	gws, err := ctl.Gateways(rq.ctx)
	if err != nil {
		return mapView{}, err
	}
	incs, err := st.Incidents(rq.ctx, 1000)
	if err != nil {
		return mapView{}, err
	}
	open := map[string][]store.Incident{}
	for _, in := range incs {
		if in.Status != store.IncidentClosed {
			open[in.Gateway] = append(open[in.Gateway], in)
		}
	}
	revoked := map[string]bool{}
	for _, g := range gws {
		if revoked[g.ID], err = c.revokedIn(rq, g); err != nil {
			return mapView{}, err
		}
	}
	inv := ctl.Inventory()
	shown := pickShown(gws, inv.Tunnels, func(g controller.GatewayView) bool {
		return g.Posture.Desired != store.PostureNormal || len(open[g.ID]) > 0 || revoked[g.ID]
	})
	tr := translator{rq.lang}
	b := mapBody{Others: len(gws) - len(shown)}
	b.Pic = layoutMap(shown, inv.Tunnels, revoked, open)
	var alts []string
	for _, g := range shown {
		zone := c.zoneOf(g.ID)
		card := gatewayCard{ID: g.ID, Site: g.Site, Posture: g.Posture.Desired, Revoked: revoked[g.ID]}
		if g.Posture.Observed != "" {
			card.Observed = tr.T("map.observed", when(g.Posture.ObservedAt, zone), tr.Word("posture", g.Posture.Observed))
		}
		res, ok, err := st.LatestBaseline(rq.ctx, g.ID)
		switch {
		case err != nil:
			return mapView{}, err
		case !ok:
			card.Baseline, card.BaselineState = tr.T("map.baseline.none"), "none"
		case res.Passed:
			card.Baseline, card.BaselineState = tr.T("map.baseline.pass", when(res.CheckedAt, zone)), "pass"
		default:
			card.Baseline, card.BaselineState = tr.T("map.baseline.fail", when(res.CheckedAt, zone), res.Failed, res.Errored), "fail"
		}
		for _, in := range open[g.ID] {
			card.Incidents = append(card.Incidents, incidentRef{ID: in.ID, Title: in.Title, Href: Prefix + "incidents/" + url.PathEscape(in.ID)})
		}
		if g.Posture.Desired == store.PostureQuarantined && rq.sess.p.Role.Can(auth.Respond) {
			card.Release = Prefix + "release?gateway=" + url.QueryEscape(g.ID)
		}
		b.Cards = append(b.Cards, card)
		alts = append(alts, g.ID+" ("+g.Site+"): "+tr.Word("posture", g.Posture.Desired))
	}
	for _, l := range b.Pic.Links {
		if l.Revoked {
			b.Revoked = append(b.Revoked, l.Name)
		}
	}
	b.Pic.Alt = tr.T("map.alt", strings.Join(alts, "; "))
	return mapView{Live: Prefix + "map/live", Seq: seq, Body: b}, nil
}

// revokedIn says whether g was revoked at its peers (a revoke_peer step
// succeeded) in the incident its posture belongs to. Warden never undoes
// a revocation: its tunnels stay drawn revoked, released or not, until a
// later incident.
func (c *Console) revokedIn(rq *request, g controller.GatewayView) (bool, error) {
	if g.Posture.Incident == "" {
		return false, nil
	}
	st := c.opt.Controller.Store()
	runs, err := st.Runs(rq.ctx, store.RunFilter{Incident: g.Posture.Incident, Gateway: g.ID, Limit: 100})
	if err != nil {
		return false, err
	}
	for _, r := range runs {
		full, err := st.Run(rq.ctx, r.ID)
		if err != nil {
			return false, err
		}
		for _, s := range full.Steps {
			if s.Action == actions.NameRevokePeer && s.State == store.StepSucceeded {
				return true, nil
			}
		}
	}
	return false, nil
}

// pickShown is every gateway when they fit the picture; otherwise those
// busy says something goes on with, then their peers, up to
// mapMaxGateways, in inventory order.
func pickShown(gws []controller.GatewayView, tunnels []inventory.Tunnel, busy func(controller.GatewayView) bool) []controller.GatewayView {
	if len(gws) <= mapMaxGateways {
		return gws
	}
	pick := map[string]bool{}
	for _, g := range gws {
		if busy(g) && len(pick) < mapMaxGateways {
			pick[g.ID] = true
		}
	}
	for _, t := range tunnels {
		for _, pair := range [][2]string{{t.A, t.B}, {t.B, t.A}} {
			if pick[pair[0]] && !pick[pair[1]] && len(pick) < mapMaxGateways {
				pick[pair[1]] = true
			}
		}
	}
	var out []controller.GatewayView
	for _, g := range gws {
		if pick[g.ID] {
			out = append(out, g)
		}
	}
	return out
}

// layoutMap places the gateways on a circle, grouped by site, and draws
// each tunnel whose ends are both shown.
func layoutMap(gws []controller.GatewayView, tunnels []inventory.Tunnel, revoked map[string]bool, open map[string][]store.Incident) mapPicture {
	sorted := slices.Clone(gws)
	slices.SortStableFunc(sorted, func(a, b controller.GatewayView) int { return cmp.Compare(a.Site, b.Site) })
	n := len(sorted)
	r := max(100, n*14)
	const margin = 70
	p := mapPicture{Width: 2*r + 2*margin, Height: 2*r + 2*margin}
	cx, cy := p.Width/2, p.Height/2
	at := map[string][2]int{}
	for i, g := range sorted {
		// The first gateway at the top, then clockwise.
		a := -math.Pi/2 + 2*math.Pi*float64(i)/float64(max(n, 1))
		x, y := cx+int(math.Round(float64(r)*math.Cos(a))), cy+int(math.Round(float64(r)*math.Sin(a)))
		if n == 1 {
			x, y = cx, cy
		}
		at[g.ID] = [2]int{x, y}
		p.Nodes = append(p.Nodes, mapNode{ID: g.ID, Site: g.Site, Posture: g.Posture.Desired, X: x, Y: y, LabelY: y + 32, OpenIncidents: len(open[g.ID])})
	}
	for _, t := range tunnels {
		a, okA := at[t.A]
		b, okB := at[t.B]
		if !okA || !okB {
			continue
		}
		name := t.Name
		if name == "" {
			name = t.A + "–" + t.B
		}
		p.Links = append(p.Links, mapLink{Name: name, Kind: t.Kind, X1: a[0], Y1: a[1], X2: b[0], Y2: b[1],
			MX: (a[0] + b[0]) / 2, MY: (a[1] + b[1]) / 2, Revoked: revoked[t.A] || revoked[t.B]})
	}
	return p
}

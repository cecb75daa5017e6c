// Package investigation builds the attacker's timeline of an incident from
// what the gateways' agents collected (wire.InvestigateResult): every
// event normalised with its site and host, corrected for the clock offset
// measured between each agent and the controller, ordered; candidates
// marked for the entry point and for lateral movement; an estimate of the
// bytes that left towards each destination against the same hours before;
// and what could not be collected and why. It also writes the timeline as
// Timesketch-importable JSON lines.
//
// It owns only that reasoning: Build is a pure function over values. It
// must not do I/O, call agents or touch the store (the investigate action
// collects and files; the report reads the result).
package investigation

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// Marks an event can carry.
const (
	MarkEntryPoint     = "entry_point"
	MarkLateral        = "lateral_movement"
	MarkNewDestination = "new_destination"
	MarkSuspect        = "suspect_address"
)

// Site is one site of the VPN as the inventory describes it.
type Site struct {
	Name      string
	Gateway   string
	Networks  []netip.Prefix
	Addresses []netip.Addr
}

// Collection is what one gateway's agent answered, with the controller's
// clock around the call; Err is set when it could not be asked.
type Collection struct {
	Gateway  string
	Site     string
	Sent     time.Time
	Received time.Time
	Result   wire.InvestigateResult
	Err      string
	// Evidence maps the result's artefact names to the evidence ids the
	// controller filed them under.
	Evidence map[string]string
}

// Input is everything Build reasons over.
type Input struct {
	Incident string
	// Gateway is the compromised gateway.
	Gateway      string
	Since, Until time.Time
	Sites        []Site
	// Management networks are where administrators are expected to come
	// from: a login from there is no entry point.
	Management []netip.Prefix
	// Suspects are addresses the incident's indicators name (the C2
	// server); events involving them are marked.
	Suspects    []netip.Addr
	Collections []Collection
}

// Offset is the measured difference between an agent's clock and the
// controller's: agent time minus controller time, within ± Uncertainty.
type Offset struct {
	Gateway     string        `json:"gateway"`
	Offset      time.Duration `json:"offset_ns"`
	Uncertainty time.Duration `json:"uncertainty_ns"`
}

// Event is one normalised event on the controller's clock: the record as
// the gateway's agent read it (its Time corrected by the agent's measured
// clock offset), with where it was read and what the timeline makes of it.
type Event struct {
	wire.TimelineEvent
	// AgentTime is the time the gateway recorded, before correction.
	AgentTime time.Time `json:"agent_time"`
	Site      string    `json:"site"`
	Host      string    `json:"host"`
	// Evidence is the id the record's artefact was filed under.
	Evidence string   `json:"evidence,omitempty"`
	Marks    []string `json:"marks,omitempty"`
}

// Why an event is a candidate.
const (
	WhyNewSourceLogin  = "new_source_login"
	WhyFirstChange     = "first_config_change"
	WhyNewDestination  = "new_destination"
	WhyLateralConnect  = "lateral_connection"
	WhyLateralLogin    = "lateral_login"
	WhySuspectInvolved = "suspect_address"
)

// Candidate points at an event with why it was marked: Why for people
// (reports say it in their language), Reason in English for the record.
type Candidate struct {
	Event  int    `json:"event"`
	Kind   string `json:"kind"`
	Why    string `json:"why"`
	Reason string `json:"reason"`
	// Failures counts the failed logins from the same source before a
	// login candidate.
	Failures int `json:"failures,omitempty"`
	// Site is the site a lateral movement reached.
	Site string `json:"site,omitempty"`
}

// Transfer is the estimate of bytes that left towards one destination.
type Transfer struct {
	Destination string `json:"destination"`
	// Peer names the gateway (and site) the destination belongs to, when
	// it is one of the VPN's; empty for the outside.
	Peer string `json:"peer,omitempty"`
	Site string `json:"site,omitempty"`
	// Bytes left during the window; Before in the same length of time
	// before it (only what the records still hold).
	Bytes     uint64 `json:"bytes"`
	Before    uint64 `json:"bytes_before"`
	Flows     int    `json:"flows"`
	Accounted bool   `json:"accounted"`
	Suspect   bool   `json:"suspect,omitempty"`
}

// Reach is a site or host the attacker's connections reached.
type Reach struct {
	Site    string `json:"site"`
	Host    string `json:"host"`
	How     string `json:"how"`
	EventAt int    `json:"event"`
}

// Gap is something not collected.
type Gap struct {
	Gateway string `json:"gateway"`
	What    string `json:"what"`
	Why     string `json:"why"`
	// Unreachable is true when the whole gateway could not be asked.
	Unreachable bool `json:"unreachable,omitempty"`
}

// Timeline is the result.
type Timeline struct {
	Incident   string      `json:"incident"`
	Gateway    string      `json:"gateway"`
	Since      time.Time   `json:"since"`
	Until      time.Time   `json:"until"`
	Offsets    []Offset    `json:"clock_offsets"`
	Events     []Event     `json:"events"`
	EntryPoint []Candidate `json:"entry_point"`
	Lateral    []Candidate `json:"lateral_movement"`
	Transfers  []Transfer  `json:"transfers"`
	Reached    []Reach     `json:"reached"`
	Gaps       []Gap       `json:"gaps"`
	// Collected names the gateways whose agents answered.
	Collected []string `json:"collected"`
}

// MeasureOffset is the clock offset of an agent from one exchange, as NTP
// computes it: the controller sent at t0 and received at t3, the agent
// began at a1 and finished at a2.
func MeasureOffset(t0, a1, a2, t3 time.Time) (offset, uncertainty time.Duration) {
	offset = (a1.Sub(t0) + a2.Sub(t3)) / 2
	delay := t3.Sub(t0) - a2.Sub(a1)
	if delay < 0 {
		delay = 0
	}
	return offset, delay / 2
}

// Build makes the timeline. It is deterministic for the same input.
func Build(in Input) Timeline {
	tl := Timeline{Incident: in.Incident, Gateway: in.Gateway, Since: in.Since, Until: in.Until,
		Events: []Event{}, EntryPoint: []Candidate{}, Lateral: []Candidate{}, Transfers: []Transfer{}, Reached: []Reach{}, Gaps: []Gap{}, Offsets: []Offset{}}
	sites := map[string]Site{}
	for _, s := range in.Sites {
		sites[s.Gateway] = s
	}
	// The compromised gateway's own addresses: the inventory's and those
	// its agent reports (its LAN side and tunnel interfaces).
	own := sites[in.Gateway]
	own.Addresses = slices.Clone(own.Addresses)
	for _, c := range in.Collections {
		if c.Gateway != in.Gateway {
			continue
		}
		for _, s := range c.Result.Addresses {
			if a, ok := addrOf(s); ok && !slices.Contains(own.Addresses, a) {
				own.Addresses = append(own.Addresses, a)
			}
		}
	}
	sites[in.Gateway] = own
	var flows []siteFlow
	for _, c := range in.Collections {
		if c.Err != "" {
			tl.Gaps = append(tl.Gaps, Gap{Gateway: c.Gateway, What: "everything on " + c.Gateway, Why: c.Err, Unreachable: true})
			continue
		}
		tl.Collected = append(tl.Collected, c.Gateway)
		off, unc := MeasureOffset(c.Sent, c.Result.Started, c.Result.AgentTime, c.Received)
		tl.Offsets = append(tl.Offsets, Offset{Gateway: c.Gateway, Offset: off, Uncertainty: unc})
		for _, g := range c.Result.Gaps {
			tl.Gaps = append(tl.Gaps, Gap{Gateway: c.Gateway, What: g.What, Why: g.Why})
		}
		for _, e := range c.Result.Events {
			ev := Event{TimelineEvent: e, AgentTime: e.Time, Site: c.Site, Host: c.Gateway, Evidence: c.Evidence[e.Artefact]}
			ev.Time = e.Time.Add(-off).UTC()
			tl.Events = append(tl.Events, ev)
		}
		for _, f := range c.Result.Flows {
			flows = append(flows, siteFlow{Flow: f, gateway: c.Gateway, offset: off})
		}
	}
	sort.SliceStable(tl.Events, func(i, j int) bool {
		if !tl.Events[i].Time.Equal(tl.Events[j].Time) {
			return tl.Events[i].Time.Before(tl.Events[j].Time)
		}
		return tl.Events[i].Host < tl.Events[j].Host
	})
	v := view{in: in, sites: sites, tl: &tl}
	v.markSuspects()
	v.markEntryPoint()
	v.markLateral()
	v.markNewDestination()
	tl.Transfers = v.transfers(flows)
	slices.SortFunc(tl.Gaps, func(a, b Gap) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.What, b.What), cmp.Compare(a.Why, b.Why))
	})
	tl.Gaps = slices.Compact(tl.Gaps)
	return tl
}

type siteFlow struct {
	wire.Flow
	gateway string
	offset  time.Duration
}

type view struct {
	in    Input
	sites map[string]Site
	tl    *Timeline
}

func (v view) mark(i int, c Candidate, list *[]Candidate) {
	e := &v.tl.Events[i]
	if !slices.Contains(e.Marks, c.Kind) {
		e.Marks = append(e.Marks, c.Kind)
	}
	c.Event = i
	*list = append(*list, c)
}

func addrOf(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func within(ps []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(a) })
}

// siteOf names the site whose networks or gateway addresses hold a.
func (v view) siteOf(a netip.Addr) (Site, bool) {
	for _, s := range v.in.Sites {
		if within(s.Networks, a) || slices.Contains(s.Addresses, a) {
			return s, true
		}
	}
	return Site{}, false
}

// ours reports whether a belongs to the compromised gateway itself.
func (v view) ours(a netip.Addr) bool {
	return slices.Contains(v.sites[v.in.Gateway].Addresses, a)
}

func (v view) suspect(a netip.Addr) bool { return slices.Contains(v.in.Suspects, a) }

func (v view) markSuspects() {
	var none []Candidate
	for i, e := range v.tl.Events {
		if a, ok := addrOf(e.Address); ok && v.suspect(a) {
			v.mark(i, Candidate{Kind: MarkSuspect, Why: WhySuspectInvolved, Reason: "involves " + a.String() + ", named by the incident's indicators"}, &none)
		}
	}
}

// markEntryPoint marks, on the compromised gateway, the first successful
// login from a source outside the management networks that had no
// successful login before it, the first configuration change, and the
// first connection to a destination outside the VPN.
func (v view) markEntryPoint() {
	accepted := map[string]bool{}
	failures := map[string]int{}
	var login, change bool
	for i, e := range v.tl.Events {
		if e.Host != v.in.Gateway {
			continue
		}
		switch {
		case e.Action == wire.ActionLoginFailed:
			failures[e.Address]++
		case e.Action == wire.ActionLoginAccepted && !login:
			a, ok := addrOf(e.Address)
			if e.Address == "" || accepted[e.Address] || (ok && within(v.in.Management, a)) {
				accepted[e.Address] = true
				continue
			}
			login = true
			reason := fmt.Sprintf("first successful login from a new source %s (user %s)", e.Address, e.Actor)
			n := failures[e.Address]
			if n > 0 {
				reason += fmt.Sprintf(", after %d failed-login records from it", n)
			}
			v.mark(i, Candidate{Kind: MarkEntryPoint, Why: WhyNewSourceLogin, Reason: reason, Failures: n}, &v.tl.EntryPoint)
		case e.Action == wire.ActionLoginAccepted:
			accepted[e.Address] = true
		case e.Action == wire.ActionConfigChanged && !change:
			change = true
			v.mark(i, Candidate{Kind: MarkEntryPoint, Why: WhyFirstChange, Reason: "first configuration change in the window: " + e.Object}, &v.tl.EntryPoint)
		}
	}
}

// markNewDestination marks the compromised gateway's first connection to
// each destination outside the VPN and its management networks.
func (v view) markNewDestination() {
	var first bool
	seen := map[string]bool{}
	for i, e := range v.tl.Events {
		if e.Host != v.in.Gateway || e.Action != wire.ActionConnection {
			continue
		}
		src, ok1 := addrOf(e.Detail["src"])
		dst, ok2 := addrOf(e.Detail["dst"])
		if !ok1 || !ok2 || seen[dst.String()] || dst.IsLoopback() || within(v.in.Management, dst) {
			continue
		}
		if _, inside := v.siteOf(dst); inside {
			continue
		}
		if _, fromVPN := v.siteOf(src); !fromVPN {
			continue // inbound
		}
		seen[dst.String()] = true
		var list *[]Candidate
		var none []Candidate
		list = &none
		if !first {
			first, list = true, &v.tl.EntryPoint
		}
		v.mark(i, Candidate{Kind: MarkNewDestination, Why: WhyNewDestination, Reason: "first connection to " + dst.String() + ", outside the VPN"}, list)
	}
}

// markLateral marks connections from the compromised gateway's addresses
// into another site's networks (seen on any gateway), and logins on
// another gateway from the compromised gateway's addresses.
func (v view) markLateral() {
	own := v.sites[v.in.Gateway]
	reached := map[string]bool{}
	for i, e := range v.tl.Events {
		var dst netip.Addr
		var how, why string
		switch e.Action {
		case wire.ActionConnection:
			src, ok1 := addrOf(e.Detail["src"])
			d, ok2 := addrOf(e.Detail["dst"])
			if !ok1 || !ok2 || !v.ours(src) {
				continue
			}
			dst, how, why = d, fmt.Sprintf("connection %s", e.Object), WhyLateralConnect
		case wire.ActionLoginAccepted:
			src, ok := addrOf(e.Address)
			if !ok || !v.ours(src) || e.Host == v.in.Gateway {
				continue
			}
			dst, how, why = netip.Addr{}, fmt.Sprintf("login as %s on %s", e.Actor, e.Host), WhyLateralLogin
			if s, ok := v.sites[e.Host]; ok && len(s.Addresses) > 0 {
				dst = s.Addresses[0]
			}
		default:
			continue
		}
		s, ok := v.siteOf(dst)
		if !ok || s.Name == own.Name {
			continue
		}
		v.mark(i, Candidate{Kind: MarkLateral, Why: why, Site: s.Name, Reason: fmt.Sprintf("%s from %s into site %s", how, v.in.Gateway, s.Name)}, &v.tl.Lateral)
		key := s.Name + "|" + dst.String()
		if !reached[key] {
			reached[key] = true
			v.tl.Reached = append(v.tl.Reached, Reach{Site: s.Name, Host: dst.String(), How: how, EventAt: i})
		}
	}
}

// transfers estimates, from the compromised gateway's connection records,
// the bytes sent from its site (its own addresses and the networks behind
// it) towards every destination outside that site, during the window and
// in the same length of time before it. A connection seen in several
// records (the table now and the flows the quarantine ended) counts once,
// at its largest count.
func (v view) transfers(flows []siteFlow) []Transfer {
	own := v.sites[v.in.Gateway]
	type key struct{ proto, src, dst string }
	type conn struct {
		sport, dport uint16
		start        time.Time
	}
	best := map[key]map[conn]siteFlow{}
	for _, f := range flows {
		if f.gateway != v.in.Gateway {
			continue
		}
		k := key{f.Proto, f.Src, f.Dst}
		c := conn{f.SrcPort, f.DstPort, f.Start}
		if best[k] == nil {
			best[k] = map[conn]siteFlow{}
		}
		if old, ok := best[k][c]; !ok || f.OrigBytes > old.OrigBytes {
			best[k][c] = f
		}
	}
	length := v.in.Until.Sub(v.in.Since)
	byDst := map[string]*Transfer{}
	for k, conns := range best {
		src, ok1 := addrOf(k.src)
		dst, ok2 := addrOf(k.dst)
		if !ok1 || !ok2 || dst.IsLoopback() || within(v.in.Management, dst) {
			continue
		}
		if !(v.ours(src) || within(own.Networks, src)) || within(own.Networks, dst) || v.ours(dst) {
			continue
		}
		for _, f := range conns {
			at := f.Start
			if at.IsZero() {
				at = f.SeenAt
			}
			at = at.Add(-f.offset)
			t := byDst[k.dst]
			if t == nil {
				t = &Transfer{Destination: k.dst, Accounted: true, Suspect: v.suspect(dst)}
				if s, ok := v.siteOf(dst); ok {
					t.Peer, t.Site = s.Gateway, s.Name
				}
				byDst[k.dst] = t
			}
			t.Accounted = t.Accounted && f.Accounted
			switch {
			case !at.Before(v.in.Since) && !at.After(v.in.Until):
				t.Bytes += f.OrigBytes
				t.Flows++
			case !at.Before(v.in.Since.Add(-length)) && at.Before(v.in.Since):
				t.Before += f.OrigBytes
			}
		}
	}
	out := make([]Transfer, 0, len(byDst))
	for _, t := range byDst {
		if t.Flows > 0 {
			out = append(out, *t)
		}
	}
	slices.SortFunc(out, func(a, b Transfer) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), strings.Compare(a.Destination, b.Destination))
	})
	return out
}

// Suspected returns the events of the timeline worth a person's look
// first: marked ones, and logins, configuration changes, sudo and package
// events on the compromised gateway; at most n, in time order.
func (tl Timeline) Suspected(n int) []Event {
	var out []Event
	for _, e := range tl.Events {
		notable := len(e.Marks) > 0 || (e.Host == tl.Gateway && slices.Contains([]string{wire.ActionLoginAccepted, wire.ActionConfigChanged,
			wire.ActionSudo, wire.ActionPackage}, e.Action))
		if notable {
			out = append(out, e)
		}
	}
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Summary is what a person reads first, bounded: the report's section and
// the step's result carry it; the whole timeline is evidence.
type Summary struct {
	Incident string    `json:"incident"`
	Gateway  string    `json:"gateway"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Offsets  []Offset  `json:"clock_offsets"`
	// Events counts every event of the timeline; Key are the notable ones
	// (Suspected), in time order.
	Events     int        `json:"events"`
	Key        []Event    `json:"key_events"`
	EntryPoint []Marked   `json:"entry_point"`
	Lateral    []Marked   `json:"lateral_movement"`
	Transfers  []Transfer `json:"transfers"`
	Reached    []Reach    `json:"reached"`
	Gaps       []Gap      `json:"gaps"`
	Collected  []string   `json:"collected"`
	// Timeline and Export are the evidence ids of the whole timeline and
	// of its Timesketch export (set by whoever filed them).
	Timeline string `json:"timeline_evidence,omitempty"`
	Export   string `json:"export_evidence,omitempty"`
}

// Marked is a candidate with its event.
type Marked struct {
	Why      string `json:"why"`
	Reason   string `json:"reason"`
	Failures int    `json:"failures,omitempty"`
	Site     string `json:"site,omitempty"`
	Event    Event  `json:"event"`
}

// Bounds of a Summary.
const (
	summaryKeyEvents = 200
	summaryTransfers = 20
)

// Summarise bounds the timeline for people.
func (tl Timeline) Summarise() Summary {
	s := Summary{Incident: tl.Incident, Gateway: tl.Gateway, Since: tl.Since, Until: tl.Until, Offsets: tl.Offsets,
		Events: len(tl.Events), Key: tl.Suspected(summaryKeyEvents), Reached: tl.Reached, Gaps: tl.Gaps, Collected: tl.Collected,
		EntryPoint: []Marked{}, Lateral: []Marked{}}
	for _, c := range tl.EntryPoint {
		s.EntryPoint = append(s.EntryPoint, Marked{Why: c.Why, Reason: c.Reason, Failures: c.Failures, Event: tl.Events[c.Event]})
	}
	for _, c := range tl.Lateral {
		s.Lateral = append(s.Lateral, Marked{Why: c.Why, Reason: c.Reason, Site: c.Site, Event: tl.Events[c.Event]})
	}
	s.Transfers = tl.Transfers[:min(len(tl.Transfers), summaryTransfers)]
	if s.Key == nil {
		s.Key = []Event{}
	}
	return s
}

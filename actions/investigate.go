package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/investigation"
)

// NameInvestigate collects logs, logins, connection records, counters and
// configuration history from the compromised gateway and every peer of its
// tunnels, and builds the attacker's timeline.
const NameInvestigate = "investigate"

// Investigator collects through a gateway's agent (providers/linux's
// AgentPool).
type Investigator interface {
	GatewayAgent
	// Investigate asks gw's agent for what it recorded in p's window. It
	// only reads.
	Investigate(ctx context.Context, gw inventory.Gateway, p wire.InvestigateParams) (wire.InvestigateResult, error)
}

// IncidentSigns says when an incident's first sign arrived and which
// addresses its indicators name (the store, through the daemon).
type IncidentSigns interface {
	FirstSign(ctx context.Context, incident string) (time.Time, []netip.Addr, error)
}

// CollectionSink keeps what a step collected as evidence with chain of
// custody, under the step's key (the daemon's ledger).
type CollectionSink interface {
	EvidenceSink
	// StoreCollected keeps res's artefacts and, last, its manifest
	// (which marks the collection complete), as evidence of kind, with
	// step naming the action in each record's source.
	StoreCollected(ctx context.Context, incident string, gw inventory.Gateway, key, step, kind string, res wire.CaptureResult) ([]StoredArtefact, error)
	// LoadCollected reads one artefact stored under key by name (an
	// access on the chain of custody).
	LoadCollected(ctx context.Context, incident, key, name string) ([]byte, error)
}

// InvestigateSettings are the configuration's defaults.
type InvestigateSettings struct {
	// LookBack is how far before the incident's first sign the window
	// starts (param "since" overrides it).
	LookBack time.Duration
	// Timeout bounds the collection from one gateway.
	Timeout time.Duration
}

// NewInvestigate returns investigate over the inventory (sites, peers),
// the agents, the incident's signs and the evidence sink; now is the
// controller's clock (the timeline's and the offsets' reference).
func NewInvestigate(inv *inventory.Inventory, agents Investigator, signs IncidentSigns, sink CollectionSink, set InvestigateSettings, now func() time.Time) Action {
	if now == nil {
		now = time.Now
	}
	if set.LookBack <= 0 {
		set.LookBack = 24 * time.Hour
	}
	if set.Timeout <= 0 {
		set.Timeout = 90 * time.Second
	}
	return &investigateAction{inv: inv, agents: agents, signs: signs, sink: sink, set: set, now: now}
}

type investigateAction struct {
	inv    *inventory.Inventory
	agents Investigator
	signs  IncidentSigns
	sink   CollectionSink
	set    InvestigateSettings
	now    func() time.Time
}

func (a *investigateAction) Name() string { return NameInvestigate }

// Files of an investigation under its key.
const (
	investigationTimeline = "investigation-timeline.json"
	investigationSummary  = "investigation-summary.json"
)

// targets are the compromised gateway and every peer of its tunnels, in
// that order, peers by id.
func (a *investigateAction) targets(gw inventory.Gateway) []inventory.Gateway {
	out := []inventory.Gateway{gw}
	var ids []string
	for _, t := range a.inv.TunnelsOf(gw.ID) {
		if p := t.Peer(gw.ID); !slices.Contains(ids, p) {
			ids = append(ids, p)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if g, ok := a.inv.Gateway(id); ok {
			out = append(out, g)
		}
	}
	return out
}

// window is the step's window: from the look-back before the incident's
// first sign until now.
func (a *investigateAction) window(ctx context.Context, req Request) (since, until time.Time, suspects []netip.Addr, err error) {
	look := a.set.LookBack
	if s := req.Params["since"]; s != "" {
		if look, err = time.ParseDuration(s); err != nil || look <= 0 {
			return time.Time{}, time.Time{}, nil, Terminal(fmt.Errorf("investigate: param since %q is not a positive duration (24h, 90m)", s))
		}
	}
	until = a.now().UTC()
	first := until
	if req.Incident != "" && a.signs != nil {
		f, sus, err := a.signs.FirstSign(ctx, req.Incident)
		if err != nil {
			return time.Time{}, time.Time{}, nil, fmt.Errorf("reading the incident's first sign: %w", err)
		}
		if !f.IsZero() && f.Before(first) {
			first = f
		}
		suspects = sus
	}
	return first.Add(-look).UTC(), until, suspects, nil
}

func (a *investigateAction) Plan(ctx context.Context, req Request) (Change, error) {
	if err := a.agents.CheckAgent(req.Gateway); err != nil {
		return Change{}, err
	}
	since, until, _, err := a.window(ctx, req)
	if err != nil {
		return Change{}, err
	}
	ch := Change{Summary: fmt.Sprintf("investigate %s and the peers of its tunnels from %s to %s", req.Gateway.ID,
		since.Format(time.RFC3339), until.Format(time.RFC3339))}
	for _, g := range a.targets(req.Gateway) {
		line := "collect logs, logins, connection records, counters, package and configuration history from " + g.ID
		if err := a.agents.CheckAgent(g); err != nil {
			line = g.ID + ": cannot be collected (" + err.Error() + "): a gap in the timeline"
		}
		ch.Changes = append(ch.Changes, line)
	}
	ch.Changes = append(ch.Changes, "build the attacker's timeline and file it with its Timesketch export as evidence")
	return ch, nil
}

// Apply collects from every target at once, files each gateway's
// artefacts as evidence, builds the timeline and files it. A gateway that
// cannot be asked is a gap, never a failure; only the compromised
// gateway's own agent failing fails the step (and is retried). Applied
// again after the timeline was filed, it changes nothing.
func (a *investigateAction) Apply(ctx context.Context, req Request) (Result, error) {
	if err := a.agents.CheckAgent(req.Gateway); err != nil {
		return Result{}, err
	}
	if req.Incident == "" {
		return Result{}, Terminal(errors.New("investigate: the step belongs to no incident"))
	}
	if stored, ok, err := a.sink.Captured(ctx, req.Incident, req.IdempotencyKey+"/timeline"); err != nil {
		return Result{}, err
	} else if ok {
		return Result{Summary: "investigation already filed", Details: map[string]any{"artefacts": stored}}, nil
	}
	since, until, suspects, err := a.window(ctx, req)
	if err != nil {
		return Result{}, err
	}
	targets := a.targets(req.Gateway)
	cols := make([]investigation.Collection, len(targets))
	var wg sync.WaitGroup
	for i, g := range targets {
		wg.Go(func() { cols[i] = a.collect(ctx, req, g, since, until) })
	}
	wg.Wait()
	if cols[0].Err != "" {
		return Result{}, fmt.Errorf("investigating %s: %s", req.Gateway.ID, cols[0].Err)
	}
	stored := 0
	for i, g := range targets {
		if cols[i].Err != "" {
			continue
		}
		n, err := a.file(ctx, req, g, &cols[i])
		if err != nil {
			return Result{}, err
		}
		stored += n
	}
	tl := investigation.Build(investigation.Input{Incident: req.Incident, Gateway: req.Gateway.ID, Since: since, Until: until,
		Sites: a.sites(), Management: prefixes(req.Gateway.ManagementNetworks), Suspects: suspects, Collections: cols})
	sum, err := a.fileTimeline(ctx, req, tl)
	if err != nil {
		return Result{}, err
	}
	return Result{Changed: true, Summary: summaryLine(sum, stored), Details: map[string]any{"events": sum.Events, "artefacts": stored,
		"unreachable": unreachable(sum.Gaps), "timeline_evidence": sum.Timeline, "export_evidence": sum.Export}}, nil
}

// collect asks one gateway's agent; a failure is the collection's Err.
func (a *investigateAction) collect(ctx context.Context, req Request, g inventory.Gateway, since, until time.Time) investigation.Collection {
	c := investigation.Collection{Gateway: g.ID, Site: g.Site}
	if err := a.agents.CheckAgent(g); err != nil {
		c.Err = "no agent to ask: " + err.Error()
		return c
	}
	cctx, cancel := context.WithTimeout(ctx, a.set.Timeout)
	defer cancel()
	c.Sent = a.now()
	res, err := a.agents.Investigate(cctx, g, wire.InvestigateParams{Incident: req.Incident, Since: since, Until: until})
	c.Received = a.now()
	if err != nil {
		c.Err = "agent unreachable or failed: " + err.Error()
		return c
	}
	c.Result = res
	return c
}

// file keeps one gateway's artefacts (named after the gateway) and a
// manifest of the collection, and points the events at the evidence.
func (a *investigateAction) file(ctx context.Context, req Request, g inventory.Gateway, c *investigation.Collection) (int, error) {
	prefix := "investigation-" + g.ID + "-"
	renamed := map[string]string{}
	arts := make([]wire.Artefact, len(c.Result.Artefacts))
	for i, art := range c.Result.Artefacts {
		art.Name = prefix + art.Name
		renamed[c.Result.Artefacts[i].Name] = art.Name
		art.Source = "investigate: " + art.Source
		arts[i] = art
	}
	manifest, err := json.Marshal(map[string]any{"gateway": g.ID, "since": c.Result.Since, "until": c.Result.Until, "host": c.Result.Host,
		"agent_started": c.Result.Started, "agent_finished": c.Result.AgentTime, "controller_sent": c.Sent, "controller_received": c.Received,
		"gaps": c.Result.Gaps, "artefacts": manifestEntries(arts)})
	if err != nil {
		return 0, fmt.Errorf("encoding the collection's manifest: %w", err)
	}
	stored, err := a.sink.StoreCollected(ctx, req.Incident, g, req.IdempotencyKey+"/"+g.ID, NameInvestigate, "log",
		wire.CaptureResult{Artefacts: arts, Manifest: manifest})
	if err != nil {
		return 0, fmt.Errorf("filing what %s recorded: %w", g.ID, err)
	}
	c.Evidence = map[string]string{}
	for _, s := range stored {
		for orig, name := range renamed {
			if name == s.Name {
				c.Evidence[orig] = s.Evidence
			}
		}
	}
	for i := range c.Result.Events {
		if n, ok := renamed[c.Result.Events[i].Artefact]; ok {
			id := c.Evidence[c.Result.Events[i].Artefact]
			c.Result.Events[i].Artefact = n
			c.Evidence[n] = id
		}
	}
	for i := range c.Result.Flows {
		if n, ok := renamed[c.Result.Flows[i].Artefact]; ok {
			c.Result.Flows[i].Artefact = n
		}
	}
	return len(stored), nil
}

func manifestEntries(arts []wire.Artefact) []map[string]any {
	out := make([]map[string]any, len(arts))
	for i, a := range arts {
		out[i] = map[string]any{"name": a.Name, "sha256": a.SHA256, "size": a.Size, "source": a.Source}
	}
	return out
}

// fileTimeline keeps the whole timeline, its Timesketch export and the
// summary (last: it marks the investigation filed).
func (a *investigateAction) fileTimeline(ctx context.Context, req Request, tl investigation.Timeline) (investigation.Summary, error) {
	whole, err := json.MarshalIndent(tl, "", "  ")
	if err != nil {
		return investigation.Summary{}, fmt.Errorf("encoding the timeline: %w", err)
	}
	jsonl, err := investigation.TimesketchJSONL(tl)
	if err != nil {
		return investigation.Summary{}, err
	}
	now := a.now().UTC()
	stored, err := a.sink.StoreCollected(ctx, req.Incident, req.Gateway, req.IdempotencyKey+"/timeline-data", NameInvestigate, "log", wire.CaptureResult{
		Artefacts: []wire.Artefact{
			artefactOf(investigationTimeline, "application/json", "the attacker's timeline built by the controller", whole, now),
			artefactOf(investigation.TimesketchName, "application/jsonl", "the timeline as Timesketch imports it", jsonl, now),
		}})
	if err != nil {
		return investigation.Summary{}, fmt.Errorf("filing the timeline: %w", err)
	}
	sum := tl.Summarise()
	for _, s := range stored {
		switch s.Name {
		case investigationTimeline:
			sum.Timeline = s.Evidence
		case investigation.TimesketchName:
			sum.Export = s.Evidence
		}
	}
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return investigation.Summary{}, fmt.Errorf("encoding the summary: %w", err)
	}
	if _, err := a.sink.StoreCollected(ctx, req.Incident, req.Gateway, req.IdempotencyKey+"/timeline", NameInvestigate, "log", wire.CaptureResult{
		Artefacts: []wire.Artefact{artefactOf(investigationSummary, "application/json", "the summary of the attacker's timeline", b, now)},
		Manifest:  json.RawMessage(`{"complete": true}`)}); err != nil {
		return investigation.Summary{}, fmt.Errorf("filing the timeline's summary: %w", err)
	}
	return sum, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func artefactOf(name, media, source string, content []byte, at time.Time) wire.Artefact {
	return wire.Artefact{Name: name, MediaType: media, Source: source, Content: content, Size: int64(len(content)), Collected: at, SHA256: sha256Hex(content)}
}

// Verify re-hashes everything the step filed and reads the summary back:
// the step's result carries it (the report's section).
func (a *investigateAction) Verify(ctx context.Context, req Request) (Result, error) {
	if err := a.sink.VerifyStored(ctx, req.Incident, req.IdempotencyKey+"/timeline"); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrNotVerified, err)
	}
	b, err := a.sink.LoadCollected(ctx, req.Incident, req.IdempotencyKey+"/timeline", investigationSummary)
	if err != nil {
		return Result{}, fmt.Errorf("%w: reading the filed summary: %v", ErrNotVerified, err)
	}
	var sum investigation.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return Result{}, fmt.Errorf("%w: reading the filed summary: %v", ErrNotVerified, err)
	}
	for _, g := range sum.Collected {
		if err := a.sink.VerifyStored(ctx, req.Incident, req.IdempotencyKey+"/"+g); err != nil {
			return Result{}, fmt.Errorf("%w: %v", ErrNotVerified, err)
		}
	}
	line := fmt.Sprintf("timeline and artefacts of %d gateway(s) verified", len(sum.Collected))
	if n := len(unreachable(sum.Gaps)); n > 0 {
		line += fmt.Sprintf("; %d gateway(s) could not be asked", n)
	}
	return Result{Summary: line, Details: map[string]any{"investigation": sum}}, nil
}

func (a *investigateAction) sites() []investigation.Site {
	var out []investigation.Site
	for _, g := range a.inv.Gateways {
		s := investigation.Site{Name: g.Site, Gateway: g.ID}
		if site, ok := a.inv.Site(g.Site); ok {
			s.Networks = prefixes(site.Networks)
		}
		for _, addr := range g.Addresses {
			if p, err := netip.ParseAddr(addr); err == nil {
				s.Addresses = append(s.Addresses, p.Unmap())
			}
		}
		out = append(out, s)
	}
	return out
}

func prefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func unreachable(gaps []investigation.Gap) []string {
	var out []string
	for _, g := range gaps {
		if g.Unreachable {
			out = append(out, g.Gateway)
		}
	}
	return out
}

// summaryLine is the step's one line.
func summaryLine(s investigation.Summary, artefacts int) string {
	line := fmt.Sprintf("investigated %d gateway(s): %d events, %d artefacts, %d entry-point and %d lateral-movement candidate(s)",
		len(s.Collected), s.Events, artefacts, len(s.EntryPoint), len(s.Lateral))
	if u := unreachable(s.Gaps); len(u) > 0 {
		line += "; not reachable: " + strings.Join(u, ", ")
	}
	return line
}

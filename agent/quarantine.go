package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// buildSpec merges the isolate's networks with the agent's own management
// networks and the caller's address, so the path the command arrived on
// survives the quarantine whatever the controller asked for.
func (s *Server) buildSpec(p wire.IsolateParams, caller netip.Addr) (specRecord, error) {
	mgmt, err := parsePrefixes(p.Management)
	if err != nil {
		return specRecord{}, fmt.Errorf("management: %w", err)
	}
	forensics, err := parsePrefixes(p.Forensics)
	if err != nil {
		return specRecord{}, fmt.Errorf("forensics: %w", err)
	}
	for _, q := range s.cfg.Management {
		q, _ = normalisePrefix(q) // validated in New
		mgmt = append(mgmt, q)
	}
	if caller.IsValid() {
		mgmt = append(mgmt, netip.PrefixFrom(caller, caller.BitLen()))
	}
	if len(mgmt) == 0 {
		return specRecord{}, errors.New("no management network: the quarantine would lock responders out")
	}
	return specRecord{Management: prefixStrings(mgmt), Forensics: prefixStrings(forensics)}, nil
}

// isolate puts the quarantine in force. A new or changed quarantine gets a
// new generation and is recorded, fsync'd, before the kernel is touched; it
// reverts unless confirmed within the window. Repeating the same isolate
// re-enforces it (repairing anything missing) and reports the generation
// already in force.
func (s *Server) isolate(ctx context.Context, p wire.IsolateParams, caller netip.Addr, nonce *commandNonce) (wire.IsolateResult, error) {
	spec, err := s.buildSpec(p, caller)
	if err != nil {
		return wire.IsolateResult{}, badParams(err)
	}
	if p.Capture != nil {
		if err := p.Capture.Validate(); err != nil {
			return wire.IsolateResult{}, badParams(fmt.Errorf("capture: %w", err))
		}
	}
	window := s.cfg.ConfirmWindow
	if w := time.Duration(p.ConfirmWindow); w != 0 {
		if w < MinConfirmWindow || w > MaxConfirmWindow {
			return wire.IsolateResult{}, badParams(fmt.Errorf("confirm window %s is outside [%s, %s]", w, MinConfirmWindow, MaxConfirmWindow))
		}
		window = w
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return wire.IsolateResult{}, errStopping
	}
	now := s.clock.Now()
	if s.rec.pending() && !now.Before(s.rec.ConfirmBy) {
		// Its window has passed and the timer is about to revert it: do
		// that now, so this isolate starts a live generation instead of
		// reporting a dead one.
		if err := nonce.durable(); err != nil {
			return wire.IsolateResult{}, err
		}
		if err := s.revertLocked(ctx, fmt.Sprintf("generation %d was not confirmed by %s", s.rec.Generation, s.rec.ConfirmBy.UTC().Format(time.RFC3339Nano))); err != nil {
			return wire.IsolateResult{}, err
		}
	}
	var res wire.IsolateResult
	var found *tunnels
	// Flows are kept only by a quarantine that has not killed them yet:
	// killed flows cannot come back, and an isolate without KeepFlows of a
	// quarantine that kept them kills them now.
	keep := p.KeepFlows && (!s.rec.Quarantined || s.rec.FlowsKept)
	if !s.rec.Quarantined || !s.rec.Spec.equal(spec) || s.rec.FlowsKept != keep {
		next := s.rec.clone()
		switch {
		case !s.rec.Quarantined:
			next.Previous, next.QuarantinedAt = nil, now
			next.LinksDown, next.TerminatedSAs = nil, nil
		case s.rec.Confirmed:
			prev := s.rec.Spec
			next.Previous = &prev
		}
		// A change of an unconfirmed quarantine keeps its Previous: the
		// last confirmed one is what an unconfirmed change reverts to.
		next.Quarantined, next.Confirmed = true, false
		next.Generation++
		next.ConfirmBy = now.Add(window)
		next.Spec = spec
		next.FlowsKept = keep
		// The tunnels to take down, and the command's nonce, go into the
		// same durable write.
		t := s.findTunnelsLocked(ctx)
		next, _ = withTunnels(next, t)
		found = &t
		if err := next.carryNonce(nonce, now); err != nil {
			return res, err
		}
		if err := s.commit(next); err != nil {
			return res, err
		}
		nonce.recorded()
		s.armConfirmLocked()
		res.Changed = true
		s.log.Info("quarantine recorded, awaiting confirm", "generation", next.Generation, "confirm_by", next.ConfirmBy, "management", spec.Management, "forensics", spec.Forensics)
	} else if err := nonce.durable(); err != nil {
		return res, err
	}
	out, err := s.enforceLocked(ctx, found)
	res.Generation, res.Confirmed, res.ConfirmBy = s.rec.Generation, s.rec.Confirmed, s.rec.ConfirmBy
	res.Management, res.Forensics = slices.Clone(s.rec.Spec.Management), slices.Clone(s.rec.Spec.Forensics)
	res.LinksDown = slices.Clone(s.rec.LinksDown)
	res.KilledFlows, res.SAsTerminated, res.Warnings = out.killed, out.sasTerminated, out.warnings
	if err != nil {
		return res, err
	}
	res.Changed = res.Changed || out.changed()
	if p.Capture != nil && res.Changed {
		res.Warnings = append(res.Warnings, s.startQuarantineCapture(ctx, *p.Capture, res.Generation)...)
	}
	return res, nil
}

// killFlows deletes the tracked flows of a quarantine that kept them for
// the capture. That it no longer keeps them is recorded first, so a crash
// in between leaves an agent that kills them when it re-enforces. Run again,
// it deletes whatever is left outside the kept networks.
func (s *Server) killFlows(ctx context.Context, _ struct{}) (wire.KillFlowsResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return wire.KillFlowsResult{}, errStopping
	}
	if !s.rec.Quarantined {
		return wire.KillFlowsResult{}, conflict("no quarantine is in force: flows are killed only under one")
	}
	spec, err := s.rec.Spec.spec()
	if err != nil {
		return wire.KillFlowsResult{}, err
	}
	res := wire.KillFlowsResult{WereKept: s.rec.FlowsKept}
	if s.rec.FlowsKept {
		next := s.rec.clone()
		next.FlowsKept = false
		if err := s.commit(next); err != nil {
			return res, err
		}
	}
	if res.Killed, err = s.deps.KillFlows(ctx, spec.Keep()); err != nil {
		return res, fmt.Errorf("killing established flows: %w", err)
	}
	res.Changed = res.WereKept || res.Killed > 0
	s.log.Info("quarantine flows killed", "generation", s.rec.Generation, "killed", res.Killed, "were_kept", res.WereKept)
	return res, nil
}

// startQuarantineCapture starts the packet capture a new quarantine asks
// for, so that what tries to leave during it is recorded. A capture that
// cannot start is a warning: the quarantine stands regardless.
func (s *Server) startQuarantineCapture(ctx context.Context, spec wire.CaptureSpec, generation int64) []string {
	if s.deps.PacketCapture == nil {
		return []string{"packet capture: " + errNoPacketCapture.Error()}
	}
	spec.Reason = fmt.Sprintf("quarantine generation %d", generation)
	res, err := s.deps.PacketCapture(ctx, wire.PacketCaptureParams{Op: wire.CaptureOpStart, Spec: &spec})
	if err != nil {
		s.log.Warn("starting the quarantine's packet capture", "error", err.Error())
		return []string{"packet capture not started: " + err.Error()}
	}
	if res.Capture != nil {
		s.log.Info("quarantine packet capture running", "id", res.Capture.ID, "new", res.Changed)
	}
	return nil
}

// enforceOutcome is what one enforcement pass did.
type enforceOutcome struct {
	rulesChanged  bool
	killed        int
	linksDowned   int
	sasTerminated int
	warnings      []string
}

func (o enforceOutcome) changed() bool {
	return o.rulesChanged || o.killed > 0 || o.linksDowned > 0 || o.sasTerminated > 0
}

// tunnels is what a quarantine takes down: tunnel links that are up and
// the IKE SAs charon holds.
type tunnels struct {
	links    []string
	sas      []wire.SA
	warnings []string
}

// findTunnelsLocked lists the tunnels currently up. It only reads.
func (s *Server) findTunnelsLocked(ctx context.Context) tunnels {
	var t tunnels
	if s.deps.Links != nil {
		links, err := s.deps.Links.Links(ctx)
		if err != nil {
			t.warnings = append(t.warnings, fmt.Sprintf("listing tunnel links: %v", err))
		}
		for _, l := range links {
			if l.Up && s.isTunnelLink(l) {
				t.links = append(t.links, l.Name)
			}
		}
	}
	if s.deps.SAs != nil {
		sas, err := s.deps.SAs.List(ctx)
		if err != nil {
			t.warnings = append(t.warnings, fmt.Sprintf("listing IKE SAs: %v", err))
		}
		t.sas = sas
	}
	return t
}

// withTunnels returns r recording t too, and whether that added anything.
func withTunnels(r record, t tunnels) (record, bool) {
	next := r.clone()
	for _, n := range t.links {
		if !slices.Contains(next.LinksDown, n) {
			next.LinksDown = append(next.LinksDown, n)
		}
	}
	next.TerminatedSAs = mergeSAs(next.TerminatedSAs, t.sas)
	return next, len(next.LinksDown) != len(r.LinksDown) || !saNamesEqual(next.TerminatedSAs, r.TerminatedSAs)
}

func saNamesEqual(a, b []wire.SA) bool {
	return slices.EqualFunc(a, b, func(x, y wire.SA) bool { return x.IKE == y.IKE && slices.Equal(x.Children, y.Children) })
}

// enforceLocked applies the recorded quarantine: rules first, then the
// killing of established flows (the drop must be in place so they cannot
// come back), then the tunnels (found now unless the caller already found
// and recorded them). Firewall and flow errors fail the pass; tunnel
// errors are warnings, the rules already cut the gateway off.
func (s *Server) enforceLocked(ctx context.Context, found *tunnels) (enforceOutcome, error) {
	var out enforceOutcome
	spec, err := s.rec.Spec.spec()
	if err != nil {
		return out, err
	}
	if out.rulesChanged, err = s.deps.Firewall.Apply(ctx, spec); err != nil {
		return out, fmt.Errorf("applying quarantine rules: %w", err)
	}
	if !s.rec.FlowsKept {
		if out.killed, err = s.deps.KillFlows(ctx, spec.Keep()); err != nil {
			return out, fmt.Errorf("killing established flows: %w", err)
		}
	}
	t := found
	if t == nil {
		f := s.findTunnelsLocked(ctx)
		t = &f
	}
	s.downTunnelsLocked(ctx, *t, &out)
	return out, nil
}

// downTunnelsLocked brings tunnel links down and terminates IKE SAs. What
// it is about to take down is recorded first (if it is not yet), so a crash
// in between cannot make the agent forget what release must bring back.
func (s *Server) downTunnelsLocked(ctx context.Context, t tunnels, out *enforceOutcome) {
	out.warnings = append(out.warnings, t.warnings...)
	defer func() {
		for _, w := range out.warnings {
			s.log.Warn("quarantine incomplete", "warning", w)
		}
	}()
	if len(t.links) == 0 && len(t.sas) == 0 {
		return
	}
	if next, added := withTunnels(s.rec, t); added {
		if err := s.commit(next); err != nil {
			out.warnings = append(out.warnings, fmt.Sprintf("not taking tunnels down (links %v, IKE SAs %d): %v", t.links, len(t.sas), err))
			return
		}
	}
	for _, n := range t.links {
		if err := s.deps.Links.SetDown(ctx, n); err != nil {
			out.warnings = append(out.warnings, fmt.Sprintf("bringing link %s down: %v", n, err))
			continue
		}
		out.linksDowned++
	}
	for _, sa := range t.sas {
		if err := s.deps.SAs.Terminate(ctx, sa); err != nil {
			out.warnings = append(out.warnings, fmt.Sprintf("terminating IKE SA %s: %v", sa.IKE, err))
			continue
		}
		out.sasTerminated++
	}
}

// isTunnelLink selects the links isolate brings down: the configured ones,
// or else every WireGuard link (by kind, or by the conventional wg* name).
func (s *Server) isTunnelLink(l Link) bool {
	if len(s.cfg.WireGuardLinks) > 0 {
		return slices.Contains(s.cfg.WireGuardLinks, l.Name)
	}
	return l.Type == "wireguard" || strings.HasPrefix(l.Name, "wg")
}

// mergeSAs adds sas to have, merging children of the same connection.
func mergeSAs(have, sas []wire.SA) []wire.SA {
	out := slices.Clone(have)
	for _, sa := range sas {
		i := slices.IndexFunc(out, func(h wire.SA) bool { return h.IKE == sa.IKE })
		if i < 0 {
			out = append(out, wire.SA{IKE: sa.IKE, Children: slices.Clone(sa.Children)})
			continue
		}
		for _, c := range sa.Children {
			if !slices.Contains(out[i].Children, c) {
				out[i].Children = append(out[i].Children, c)
			}
		}
	}
	return out
}

// restoreTunnelsLocked brings back what the quarantine took down. Failures
// are warnings: the quarantine is already gone and retrying belongs to the
// operator.
func (s *Server) restoreTunnelsLocked(ctx context.Context, r record) (linksUp []string, sasRestarted int, warnings []string) {
	if s.deps.Links != nil {
		for _, n := range r.LinksDown {
			if err := s.deps.Links.SetUp(ctx, n); err != nil {
				warnings = append(warnings, fmt.Sprintf("bringing link %s up: %v", n, err))
				continue
			}
			linksUp = append(linksUp, n)
		}
	}
	if s.deps.SAs != nil {
		for _, sa := range r.TerminatedSAs {
			if err := s.deps.SAs.Initiate(ctx, sa); err != nil {
				warnings = append(warnings, fmt.Sprintf("initiating connection %s: %v", sa.IKE, err))
				continue
			}
			sasRestarted++
		}
	}
	for _, w := range warnings {
		s.log.Warn("tunnel restore incomplete", "warning", w)
	}
	return linksUp, sasRestarted, warnings
}

// confirm ends the commit-confirmed window of a generation. The controller
// sends it only after it reached the agent again through the quarantine.
// Confirming the generation already confirmed changes nothing; any other
// generation, or one whose window has passed, is a conflict.
func (s *Server) confirm(ctx context.Context, p wire.ConfirmParams, nonce *commandNonce) (wire.ConfirmResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return wire.ConfirmResult{}, errStopping
	}
	r := s.rec
	switch {
	case !r.Quarantined:
		msg := fmt.Sprintf("generation %d cannot be confirmed: the gateway is not quarantined", p.Generation)
		if !r.LastReverted.IsZero() {
			msg += fmt.Sprintf(" (last revert at %s: %s)", r.LastReverted.UTC().Format(time.RFC3339), r.LastRevertReason)
		}
		return wire.ConfirmResult{}, conflict("%s", msg)
	case r.Generation != p.Generation:
		return wire.ConfirmResult{}, conflict("generation %d cannot be confirmed: generation %d is in force", p.Generation, r.Generation)
	case r.Confirmed:
		res := wire.ConfirmResult{Changed: false, Generation: r.Generation}
		if p.Check {
			st, err := s.observeLocked(ctx)
			if err != nil {
				return res, err
			}
			res.State = &st
		}
		return res, nil
	case !s.clock.Now().Before(r.ConfirmBy):
		if err := nonce.durable(); err != nil {
			return wire.ConfirmResult{}, err // the confirm timer, already due, reverts it
		}
		if err := s.revertLocked(ctx, "confirm arrived after the window closed"); err != nil {
			s.log.Error("reverting unconfirmed quarantine", "error", err.Error())
		}
		return wire.ConfirmResult{}, conflict("generation %d missed its confirm window (it closed at %s); the agent reverts it", p.Generation, r.ConfirmBy.UTC().Format(time.RFC3339Nano))
	}
	var checked *wire.State
	if p.Check {
		st, err := s.observeLocked(ctx)
		if err != nil {
			return wire.ConfirmResult{}, err
		}
		if fw := st.Firewall; !fw.Quarantined || len(fw.Drift) > 0 {
			return wire.ConfirmResult{}, conflict("%s (generation %d; drift: %s); the agent reverts it unless confirmed", wire.ConfirmNotEnforced, p.Generation, strings.Join(fw.Drift, "; "))
		}
		checked = &st
	}
	next := r.clone()
	next.Confirmed, next.ConfirmBy, next.Previous = true, time.Time{}, nil
	if err := next.carryNonce(nonce, s.clock.Now()); err != nil {
		return wire.ConfirmResult{}, err
	}
	if err := s.commit(next); err != nil {
		return wire.ConfirmResult{}, err
	}
	nonce.recorded()
	s.armConfirmLocked()
	s.log.Info("quarantine confirmed", "generation", next.Generation)
	if checked != nil {
		checked.Confirmed, checked.ConfirmBy = true, time.Time{}
	}
	return wire.ConfirmResult{Changed: true, Generation: next.Generation, State: checked}, nil
}

// release removes exactly what the quarantine added, brings the tunnels it
// took down back, and clears the record. Releasing twice changes nothing.
func (s *Server) release(ctx context.Context) (wire.ReleaseResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return wire.ReleaseResult{}, errStopping
	}
	r := s.rec
	removed, err := s.deps.Firewall.Remove(ctx)
	if err != nil {
		return wire.ReleaseResult{}, fmt.Errorf("removing quarantine rules: %w", err)
	}
	var res wire.ReleaseResult
	res.LinksUp, res.SAsRestarted, res.Warnings = s.restoreTunnelsLocked(ctx, r)
	res.Changed = removed || r.Quarantined || len(res.LinksUp) > 0 || res.SAsRestarted > 0
	next := cleared(r)
	// Memory follows the kernel even if the disk write fails; a retried
	// release then writes the record again.
	s.rec = next
	s.armConfirmLocked()
	if err := saveRecord(s.cfg.StateDir, next); err != nil {
		return res, fmt.Errorf("recording release: %w", err)
	}
	if res.Changed {
		s.log.Info("quarantine released", "generation", r.Generation, "links_up", res.LinksUp, "sas_restarted", res.SAsRestarted)
	}
	return res, nil
}

// cleared is r without a quarantine; generation and revert history stay.
func cleared(r record) record {
	return record{
		Version:          stateVersion,
		Nonces:           maps.Clone(r.Nonces),
		Generation:       r.Generation,
		LastReverted:     r.LastReverted,
		LastRevertReason: r.LastRevertReason,
		LastHealed:       r.LastHealed,
		Heals:            r.Heals,
	}
}

// revertLocked undoes an unconfirmed quarantine: back to the confirmed one
// it replaced, or to no quarantine. The kernel changes first and the
// record after: a crash in between leaves a pending record, which start
// re-applies (fail closed) and reverts again after a fresh window.
func (s *Server) revertLocked(ctx context.Context, reason string) error {
	r := s.rec
	now := s.clock.Now()
	var next record
	if r.Previous != nil {
		prev, err := r.Previous.spec()
		if err != nil {
			return err
		}
		if _, err := s.deps.Firewall.Apply(ctx, prev); err != nil {
			return fmt.Errorf("restoring the confirmed quarantine: %w", err)
		}
		if _, err := s.deps.KillFlows(ctx, prev.Keep()); err != nil {
			s.log.Warn("killing flows after restoring the confirmed quarantine", "error", err.Error())
		}
		next = r.clone()
		next.Spec, next.Previous = *r.Previous, nil
		next.Confirmed, next.ConfirmBy = true, time.Time{}
		// A new generation, so a late confirm of the reverted one fails.
		next.Generation++
	} else {
		if _, err := s.deps.Firewall.Remove(ctx); err != nil {
			return fmt.Errorf("removing unconfirmed quarantine: %w", err)
		}
		s.restoreTunnelsLocked(ctx, r)
		next = cleared(r)
	}
	next.LastReverted, next.LastRevertReason = now, reason
	s.rec = next
	s.armConfirmLocked()
	s.log.Warn("reverted unconfirmed quarantine", "generation", r.Generation, "reason", reason, "still_quarantined", next.Quarantined)
	if err := saveRecord(s.cfg.StateDir, next); err != nil {
		return fmt.Errorf("recording revert: %w", err)
	}
	return nil
}

// commit persists next and only then makes it the agent's record.
func (s *Server) commit(next record) error {
	if err := saveRecord(s.cfg.StateDir, next); err != nil {
		return err
	}
	s.rec = next
	return nil
}

// armConfirmLocked (re)starts the confirm timer for a pending record and
// stops it otherwise.
func (s *Server) armConfirmLocked() {
	if s.confirmTimer != nil {
		s.confirmTimer.Stop()
		s.confirmTimer = nil
	}
	if !s.rec.pending() || s.closed {
		return
	}
	gen := s.rec.Generation
	d := max(s.rec.ConfirmBy.Sub(s.clock.Now()), 0)
	s.confirmTimer = s.clock.AfterFunc(d, func() { s.confirmDeadline(gen) })
}

// confirmDeadline reverts generation gen if it is still unconfirmed.
func (s *Server) confirmDeadline(gen int64) {
	ctx, cancel := context.WithTimeout(s.bg, opTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.rec.pending() || s.rec.Generation != gen {
		return
	}
	if s.clock.Now().Before(s.rec.ConfirmBy) {
		s.armConfirmLocked()
		return
	}
	reason := fmt.Sprintf("generation %d was not confirmed by %s", gen, s.rec.ConfirmBy.UTC().Format(time.RFC3339Nano))
	if err := s.revertLocked(ctx, reason); err != nil {
		// The heal loop retries: the record is still pending and late.
		s.log.Error("reverting unconfirmed quarantine", "generation", gen, "error", err.Error())
	}
}

// observe returns the record and the rules read back.
func (s *Server) observe(ctx context.Context) (wire.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observeLocked(ctx)
}

// observeLocked is observe for a caller holding s.mu.
func (s *Server) observeLocked(ctx context.Context) (wire.State, error) {
	var want wire.QuarantineSpec
	if s.rec.Quarantined {
		var err error
		if want, err = s.rec.Spec.spec(); err != nil {
			return wire.State{}, err
		}
	}
	fw, err := s.deps.Firewall.Observe(ctx, want)
	if err != nil {
		return wire.State{}, fmt.Errorf("reading quarantine rules: %w", err)
	}
	st := s.rec.view()
	st.Firewall = &fw
	st.AgentStarted = s.started
	st.LeaseEpoch = s.epochs.highest()
	return st, nil
}

// restore re-applies a recorded quarantine when the agent starts. A
// pending one gets a fresh confirm window: the controller that asked for it
// may still be waiting to confirm. Failures are logged and left to the heal
// loop; the agent serves regardless, so the controller can still act.
func (s *Server) restore(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rec.Quarantined {
		return
	}
	if s.rec.pending() {
		next := s.rec.clone()
		next.ConfirmBy = s.clock.Now().Add(s.cfg.ConfirmWindow)
		if err := s.commit(next); err != nil {
			s.log.Error("recording fresh confirm window", "error", err.Error())
			s.rec = next
		}
	}
	out, err := s.enforceLocked(ctx, nil)
	s.armConfirmLocked()
	if err != nil {
		s.log.Error("re-applying recorded quarantine at start", "generation", s.rec.Generation, "error", err.Error())
		return
	}
	s.log.Info("re-applied recorded quarantine at start", "generation", s.rec.Generation, "confirmed", s.rec.Confirmed,
		"confirm_by", s.rec.ConfirmBy, "rules_changed", out.rulesChanged, "killed_flows", out.killed)
}

// scheduleHealLocked arms the next self-heal pass.
func (s *Server) scheduleHealLocked() {
	if s.closed || s.cfg.HealInterval <= 0 {
		return
	}
	s.healTimer = s.clock.AfterFunc(s.cfg.HealInterval, s.healTick)
}

func (s *Server) healTick() {
	ctx, cancel := context.WithTimeout(s.bg, opTimeout)
	defer cancel()
	s.heal(ctx)
	if err := s.nonces.tick(s.clock.Now()); err != nil {
		s.log.Warn("compacting nonce journal", "error", err.Error())
	}
	s.mu.Lock()
	s.scheduleHealLocked()
	s.mu.Unlock()
}

// heal is one self-heal pass: a late unconfirmed quarantine is reverted
// (the timer's backstop); a confirmed or pending one whose rules drifted, or
// whose tunnels came back, is enforced again. It never removes a
// quarantine because the controller has gone quiet.
func (s *Server) heal(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.healBlocksLocked(ctx)
	if !s.rec.Quarantined {
		return
	}
	now := s.clock.Now()
	if s.rec.pending() && !now.Before(s.rec.ConfirmBy) {
		reason := fmt.Sprintf("generation %d was not confirmed by %s", s.rec.Generation, s.rec.ConfirmBy.UTC().Format(time.RFC3339Nano))
		if err := s.revertLocked(ctx, reason); err != nil {
			s.log.Error("reverting unconfirmed quarantine", "error", err.Error())
		}
		return
	}
	spec, err := s.rec.Spec.spec()
	if err != nil {
		s.log.Error("reading recorded quarantine", "error", err.Error())
		return
	}
	fw, err := s.deps.Firewall.Observe(ctx, spec)
	if err != nil {
		s.log.Warn("observing quarantine rules", "error", err.Error())
		return
	}
	var out enforceOutcome
	if len(fw.Drift) > 0 || !fw.Quarantined {
		s.log.Warn("quarantine drifted; re-applying", "generation", s.rec.Generation, "drift", fw.Drift, "enforced", fw.Quarantined)
		if out, err = s.enforceLocked(ctx, nil); err != nil {
			s.log.Error("repairing quarantine", "error", err.Error())
			return
		}
	} else {
		s.downTunnelsLocked(ctx, s.findTunnelsLocked(ctx), &out)
	}
	if !out.changed() && len(fw.Drift) == 0 && fw.Quarantined {
		return
	}
	next := s.rec.clone()
	next.Heals++
	next.LastHealed = now
	if err := s.commit(next); err != nil {
		s.log.Warn("recording heal", "error", err.Error())
	}
	s.log.Info("quarantine repaired", "generation", next.Generation, "heals", next.Heals,
		"rules_changed", out.rulesChanged, "killed_flows", out.killed, "links_downed", out.linksDowned, "sas_terminated", out.sasTerminated)
}

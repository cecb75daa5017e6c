package actions

import (
	"context"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/agent/wire"
)

// EvidenceRecorder files what a step preserved or changed as evidence, with
// chain of custody (the daemon implements it over the evidence ledger).
type EvidenceRecorder interface {
	// Recorded reports whether incident already holds evidence with note.
	Recorded(ctx context.Context, incident, note string) (bool, error)
	// Record files e; the same content under the same name is kept once.
	Record(ctx context.Context, e Evidence) (EvidenceRecord, error)
}

// Evidence is a reference filed as evidence: its canonical JSON is what
// the ledger stores and hashes (application/json, stored by the
// controller).
type Evidence struct {
	Incident, Gateway, Name, Kind, Source string
	// CollectedBy ("controller", "agent:gw-osaka") and CollectedFrom say
	// who collected it and where.
	CollectedBy, CollectedFrom string
	// Note marks what the step filed ("config:<key>"), so it is filed
	// once per step.
	Note      string
	Reference map[string]any
}

// EvidenceRecord is what the recorder stored.
type EvidenceRecord struct {
	ID, Incident, Name, SHA256 string
}

// Evidence kinds the decorators file.
const (
	EvidenceSnapshot = "snapshot"
	EvidenceConfig   = "config"
)

// RecordEvidence is the evidence layer of the catalogue, composed where it
// is built: snapshot files a reference to the snapshot it took, isolate
// and release file the configuration they changed (before and after), and
// a verified patch files the integrity-manifest entries it re-recorded;
// each once per step. Other entries, and unavailable ones, are left as
// they are.
func RecordEvidence(rec EvidenceRecorder) func(Entry) Action {
	return func(e Entry) Action {
		if _, ok := e.Action.(Unavailable); ok {
			return e.Action
		}
		switch e.Name() {
		case NameSnapshot:
			return snapshotEvidence{e.Action, rec}
		case NameIsolate, NameRelease:
			return configEvidence{e.Action, rec}
		case NamePatch:
			return patchEvidence{e.Action, rec}
		}
		return e.Action
	}
}

// recordOnce files e unless a record with its note exists.
func recordOnce(ctx context.Context, rec EvidenceRecorder, e Evidence) error {
	if done, err := rec.Recorded(ctx, e.Incident, e.Note); err != nil || done {
		return err
	}
	_, err := rec.Record(ctx, e)
	return err
}

// snapshotEvidence records the snapshot a step took as evidence (a
// reference: the memory image stays in the datastore), once per step.
type snapshotEvidence struct {
	Action
	rec EvidenceRecorder
}

func (s snapshotEvidence) Apply(ctx context.Context, req Request) (Result, error) {
	res, err := s.Action.Apply(ctx, req)
	if err != nil || req.Incident == "" {
		return res, err
	}
	return res, recordOnce(ctx, s.rec, Evidence{Incident: req.Incident, Gateway: req.Gateway.ID, Name: "vm-snapshot.json",
		Kind: EvidenceSnapshot, Source: "vsphere snapshot with memory", CollectedBy: "controller", CollectedFrom: "vCenter VM " + req.Gateway.VM,
		Note: "snapshot:" + req.IdempotencyKey, Reference: map[string]any{"vm": req.Gateway.VM, "gateway": req.Gateway.ID,
			"incident": req.Incident, "summary": res.Summary, "details": res.Details}})
}

// configEvidence records the configuration a step changed (the VM's NIC
// networks and flags before and after, the quarantine rules in force) as
// evidence of kind "config", once per step.
type configEvidence struct {
	Action
	rec EvidenceRecorder
}

func (c configEvidence) Apply(ctx context.Context, req Request) (Result, error) {
	res, err := c.Action.Apply(ctx, req)
	if err != nil {
		return res, err
	}
	return res, c.record(ctx, req, res)
}

// ApplyVerified implements ApplyVerifier, so that an action verifying as
// it applies (the OS isolate) still does under the decorator. What
// changed is recorded even when its verification failed, where the action
// returns it with the error (the retry that follows would find it applied
// already and report no change).
func (c configEvidence) ApplyVerified(ctx context.Context, req Request) (Result, Result, error) {
	res, vres, err := applyVerified(ctx, c.Action, req)
	if rerr := c.record(ctx, req, res); err == nil {
		err = rerr
	}
	if err != nil {
		return Result{}, Result{}, err
	}
	return res, vres, nil
}

// record files what a step changed, once per step.
func (c configEvidence) record(ctx context.Context, req Request, res Result) error {
	if !res.Changed || req.Incident == "" {
		return nil
	}
	return recordOnce(ctx, c.rec, Evidence{Incident: req.Incident, Gateway: req.Gateway.ID, Name: c.Name() + "-configuration-change.json",
		Kind: EvidenceConfig, Source: "warden " + c.Name() + " step result (before and after)", CollectedBy: "controller",
		CollectedFrom: req.Gateway.ID, Note: "config:" + req.IdempotencyKey,
		Reference: map[string]any{"action": c.Name(), "gateway": req.Gateway.ID, "summary": res.Summary, "details": res.Details}})
}

// patchEvidence records, once per step, the integrity-manifest entries a
// verified patch re-recorded — path, owning package and version, old and
// new SHA-256 — and the differences it left as violations, as evidence of
// kind "config" with chain of custody. A step outside any incident (a
// patch wave on a healthy gateway) files it under its run's id, so that
// `warden evidence list RUN` finds it.
//
// It is idempotent: the agent reports the same entries when a resumed
// step asks again, and the recorder keeps the same content under the same
// name once.
type patchEvidence struct {
	Action
	rec EvidenceRecorder
}

// ManifestEvidenceName is the name of a patch's manifest artefact.
const ManifestEvidenceName = "integrity-manifest-rerecord.json"

func (p patchEvidence) Verify(ctx context.Context, req Request) (Result, error) {
	res, err := p.Action.Verify(ctx, req)
	if err != nil {
		return res, err
	}
	s, _ := res.Details["manifest"].(*wire.ManifestSanction)
	if s == nil || len(s.Rerecorded)+len(s.Refused) == 0 {
		return res, nil
	}
	filed := req.Incident
	if filed == "" {
		filed, _, _ = strings.Cut(req.IdempotencyKey, "/") // the run ("RUN/INDEX/ACTION")
	}
	rec, err := p.rec.Record(ctx, Evidence{Incident: filed, Gateway: req.Gateway.ID, Name: ManifestEvidenceName, Kind: EvidenceConfig,
		Source:      "patch: integrity manifest entries re-recorded after the verified patch (old and new SHA-256)",
		CollectedBy: "agent:" + req.Gateway.ID, CollectedFrom: req.Gateway.ID, Note: "manifest:" + req.IdempotencyKey,
		Reference: map[string]any{"gateway": req.Gateway.ID, "step": req.IdempotencyKey, "packages": req.Params["packages"],
			"security": req.Params["security"] == "true", "rerecorded": s.Rerecorded, "refused": s.Refused}})
	if err != nil {
		return res, fmt.Errorf("recording the integrity manifest re-record as evidence: %w", err)
	}
	if res.Details == nil {
		res.Details = map[string]any{}
	}
	res.Details["manifest_evidence"] = map[string]any{"id": rec.ID, "incident": rec.Incident, "name": rec.Name, "sha256": rec.SHA256}
	return res, nil
}

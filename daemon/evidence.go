package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/linux"
	"github.com/warden-ir/warden/store"
)

// evidenceSink keeps captured artefacts in the ledger. Records of one
// capture carry the step's idempotency key in their note; the manifest is
// stored last, so a capture interrupted half-way is not mistaken for a
// complete one and is taken again.
type evidenceSink struct{ l *evidence.Ledger }

var _ linux.EvidenceSink = evidenceSink{}

const manifestName = "manifest.json"

func captureNote(key string) string { return "capture:" + key }

func (s evidenceSink) records(ctx context.Context, incident, key string) ([]evidence.Record, bool, error) {
	recs, err := s.l.List(ctx, incident)
	if err != nil {
		return nil, false, err
	}
	var out []evidence.Record
	complete := false
	for _, r := range recs {
		if r.Note != captureNote(key) {
			continue
		}
		out = append(out, r)
		if strings.HasPrefix(r.Name, strings.TrimSuffix(manifestName, ".json")) {
			complete = true
		}
	}
	return out, complete, nil
}

func (s evidenceSink) Captured(ctx context.Context, incident, key string) ([]linux.StoredArtefact, bool, error) {
	recs, complete, err := s.records(ctx, incident, key)
	if err != nil || !complete {
		return nil, false, err
	}
	out := make([]linux.StoredArtefact, len(recs))
	for i, r := range recs {
		out[i] = linux.StoredArtefact{Name: r.Name, SHA256: r.SHA256, Size: r.Size, Evidence: r.ID}
	}
	return out, true, nil
}

func (s evidenceSink) StoreCapture(ctx context.Context, incident string, gw inventory.Gateway, key string, res wire.CaptureResult) ([]linux.StoredArtefact, error) {
	from := gw.ID
	if u, err := url.Parse(gw.Agent); err == nil && u.Host != "" {
		from = gw.ID + " (" + u.Host + ")"
	}
	var out []linux.StoredArtefact
	add := func(name, media, source string, art wire.Artefact, content []byte) error {
		rec, err := s.l.Add(ctx, evidence.Item{Incident: incident, Gateway: gw.ID, Name: name, MediaType: media, Kind: "volatile",
			Source: source, CollectedAt: art.Collected, CollectedBy: "agent:" + gw.ID, CollectedFrom: from, StoredBy: "controller",
			Note: captureNote(key), Content: content})
		if err != nil {
			return fmt.Errorf("storing %s: %w", name, err)
		}
		out = append(out, linux.StoredArtefact{Name: rec.Name, SHA256: rec.SHA256, Size: rec.Size, Evidence: rec.ID, Error: art.Error})
		return nil
	}
	for _, art := range res.Artefacts {
		if err := add(art.Name, art.MediaType, "capture_volatile: "+art.Source, art, art.Content); err != nil {
			return out, err
		}
	}
	if len(res.Manifest) > 0 {
		if err := add(manifestName, "application/json", "capture_volatile: agent manifest", wire.Artefact{}, res.Manifest); err != nil {
			return out, err
		}
	}
	return out, nil
}

func (s evidenceSink) VerifyStored(ctx context.Context, incident, key string) error {
	recs, complete, err := s.records(ctx, incident, key)
	if err != nil {
		return err
	}
	if !complete {
		return fmt.Errorf("capture %s is incomplete in the evidence store", key)
	}
	for _, r := range recs {
		rc, err := s.l.Open(ctx, r.ID, "controller:verify")
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != r.SHA256 {
			return fmt.Errorf("evidence %s (%s) hashes to %s, recorded %s", r.ID, r.Name, got, r.SHA256)
		}
	}
	return nil
}

// snapshotEvidence records the snapshot a step took as evidence (a
// reference: the memory image stays in the datastore), once per step.
type snapshotEvidence struct {
	actions.Action
	l *evidence.Ledger
}

func (s snapshotEvidence) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	res, err := s.Action.Apply(ctx, req)
	if err != nil || req.Incident == "" {
		return res, err
	}
	recs, lerr := s.l.List(ctx, req.Incident)
	if lerr != nil {
		return res, lerr
	}
	note := "snapshot:" + req.IdempotencyKey
	for _, r := range recs {
		if r.Note == note {
			return res, nil
		}
	}
	ref := map[string]any{"vm": req.Gateway.VM, "gateway": req.Gateway.ID, "incident": req.Incident, "summary": res.Summary, "details": res.Details}
	_, aerr := s.l.Add(ctx, evidence.Item{Incident: req.Incident, Gateway: req.Gateway.ID, Name: "vm-snapshot.json", MediaType: "application/json",
		Kind: "snapshot", Source: "vsphere snapshot with memory", CollectedBy: "controller", CollectedFrom: "vCenter VM " + req.Gateway.VM,
		StoredBy: "controller", Note: note, Reference: ref})
	return res, aerr
}

// configEvidence records the configuration a step changed (the VM's NIC
// networks and flags before and after, the quarantine rules in force) as
// evidence of kind "config", once per step.
type configEvidence struct {
	actions.Action
	l *evidence.Ledger
}

func (c configEvidence) Apply(ctx context.Context, req actions.Request) (actions.Result, error) {
	res, err := c.Action.Apply(ctx, req)
	if err != nil || !res.Changed || req.Incident == "" {
		return res, err
	}
	recs, lerr := c.l.List(ctx, req.Incident)
	if lerr != nil {
		return res, lerr
	}
	note := "config:" + req.IdempotencyKey
	for _, r := range recs {
		if r.Note == note {
			return res, nil
		}
	}
	ref := map[string]any{"action": c.Name(), "gateway": req.Gateway.ID, "summary": res.Summary, "details": res.Details}
	_, aerr := c.l.Add(ctx, evidence.Item{Incident: req.Incident, Gateway: req.Gateway.ID, Name: c.Name() + "-configuration-change.json",
		MediaType: "application/json", Kind: evidence.KindConfig, Source: "warden " + c.Name() + " step result (before and after)",
		CollectedBy: "controller", CollectedFrom: req.Gateway.ID, StoredBy: "controller", Note: note, Reference: ref})
	return res, aerr
}

// Undo keeps the wrapped action's undo reachable.
func (c configEvidence) Undo(ctx context.Context, req actions.Request) (actions.Result, error) {
	u, ok := c.Action.(actions.Undoer)
	if !ok {
		return actions.Result{}, fmt.Errorf("%s cannot be undone: %w", c.Name(), actions.ErrUnsupported)
	}
	return u.Undo(ctx, req)
}

// patchEvidence records, once per step, the integrity-manifest entries a
// verified patch re-recorded — path, owning package and version, old and
// new SHA-256 — and the differences it left as violations, as evidence of
// kind "config" with chain of custody. A step outside any incident (a
// patch wave on a healthy gateway) files it under its run's id, so that
// `warden evidence list RUN` finds it.
//
// It is idempotent: the agent reports the same entries when a resumed
// step asks again, and the ledger keeps the same content under the same
// name once.
type patchEvidence struct {
	actions.Action
	l *evidence.Ledger
}

// manifestEvidenceName is the artefact's name.
const manifestEvidenceName = "integrity-manifest-rerecord.json"

func (p patchEvidence) Verify(ctx context.Context, req actions.Request) (actions.Result, error) {
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
		filed = runOfStep(req.IdempotencyKey)
	}
	ref := map[string]any{"gateway": req.Gateway.ID, "step": req.IdempotencyKey, "packages": req.Params["packages"],
		"security": req.Params["security"] == "true", "rerecorded": s.Rerecorded, "refused": s.Refused}
	rec, err := p.l.Add(ctx, evidence.Item{Incident: filed, Gateway: req.Gateway.ID, Name: manifestEvidenceName,
		MediaType: "application/json", Kind: evidence.KindConfig,
		Source:      "patch: integrity manifest entries re-recorded after the verified patch (old and new SHA-256)",
		CollectedBy: "agent:" + req.Gateway.ID, CollectedFrom: req.Gateway.ID, StoredBy: "controller",
		Note: "manifest:" + req.IdempotencyKey, Reference: ref})
	if err != nil {
		return res, fmt.Errorf("recording the integrity manifest re-record as evidence: %w", err)
	}
	if res.Details == nil {
		res.Details = map[string]any{}
	}
	res.Details["manifest_evidence"] = map[string]any{"id": rec.ID, "incident": rec.Incident, "name": rec.Name, "sha256": rec.SHA256}
	return res, nil
}

// runOfStep is the run id of a step's idempotency key ("RUN/INDEX/ACTION").
func runOfStep(key string) string {
	run, _, _ := strings.Cut(key, "/")
	return run
}

// storeIncidents tells the ledger which incidents the store holds
// (evidence.WithIncidents), so an id nobody knows is an error rather than
// an incident without evidence.
type storeIncidents struct{ st *store.Store }

var _ evidence.Incidents = storeIncidents{}

func (s storeIncidents) IncidentExists(ctx context.Context, id string) (bool, error) {
	_, err := s.st.Incident(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

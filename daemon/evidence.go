package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// ledgerEvidence is the catalogue's view of the evidence ledger: it keeps
// captured artefacts (actions.EvidenceSink) and the evidence the
// decorators of actions.RecordEvidence file (actions.EvidenceRecorder).
// Records of one capture carry the step's idempotency key in their note;
// the manifest is stored last, so a capture interrupted half-way is not
// mistaken for a complete one and is taken again.
type ledgerEvidence struct{ l *evidence.Ledger }

var (
	_ actions.EvidenceSink     = ledgerEvidence{}
	_ actions.EvidenceRecorder = ledgerEvidence{}
)

const manifestName = "manifest.json"

func captureNote(key string) string { return "capture:" + key }

func (s ledgerEvidence) records(ctx context.Context, incident, key string) ([]evidence.Record, bool, error) {
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

func (s ledgerEvidence) Captured(ctx context.Context, incident, key string) ([]actions.StoredArtefact, bool, error) {
	recs, complete, err := s.records(ctx, incident, key)
	if err != nil || !complete {
		return nil, false, err
	}
	out := make([]actions.StoredArtefact, len(recs))
	for i, r := range recs {
		out[i] = actions.StoredArtefact{Name: r.Name, SHA256: r.SHA256, Size: r.Size, Evidence: r.ID}
	}
	return out, true, nil
}

func (s ledgerEvidence) StoreCapture(ctx context.Context, incident string, gw inventory.Gateway, key string, res wire.CaptureResult) ([]actions.StoredArtefact, error) {
	return s.StoreCollected(ctx, incident, gw, key, actions.NameCaptureVolatile, "volatile", res)
}

// StoreCollected implements actions.CollectionSink.
func (s ledgerEvidence) StoreCollected(ctx context.Context, incident string, gw inventory.Gateway, key, step, kind string, res wire.CaptureResult) ([]actions.StoredArtefact, error) {
	from := gw.ID
	if u, err := url.Parse(gw.Agent); err == nil && u.Host != "" {
		from = gw.ID + " (" + u.Host + ")"
	}
	var out []actions.StoredArtefact
	add := func(name, media, source string, art wire.Artefact, content []byte) error {
		rec, err := s.l.Add(ctx, evidence.Item{Incident: incident, Gateway: gw.ID, Name: name, MediaType: media, Kind: kind,
			Source: source, CollectedAt: art.Collected, CollectedBy: "agent:" + gw.ID, CollectedFrom: from, StoredBy: "controller",
			Note: captureNote(key), Content: content})
		if err != nil {
			return fmt.Errorf("storing %s: %w", name, err)
		}
		out = append(out, actions.StoredArtefact{Name: rec.Name, SHA256: rec.SHA256, Size: rec.Size, Evidence: rec.ID, Error: art.Error})
		return nil
	}
	for _, art := range res.Artefacts {
		source := art.Source
		if !strings.HasPrefix(source, step+":") {
			source = step + ": " + source
		}
		if err := add(art.Name, art.MediaType, source, art, art.Content); err != nil {
			return out, err
		}
	}
	if len(res.Manifest) > 0 {
		if err := add(manifestName, "application/json", step+": agent manifest", wire.Artefact{}, res.Manifest); err != nil {
			return out, err
		}
	}
	return out, nil
}

// LoadCollected implements actions.CollectionSink.
func (s ledgerEvidence) LoadCollected(ctx context.Context, incident, key, name string) ([]byte, error) {
	recs, _, err := s.records(ctx, incident, key)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Name == name {
			rc, err := s.l.Open(ctx, r.ID, "controller:verify")
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(io.LimitReader(rc, 64<<20))
		}
	}
	return nil, fmt.Errorf("no %s filed under %s", name, key)
}

func (s ledgerEvidence) VerifyStored(ctx context.Context, incident, key string) error {
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

func (s ledgerEvidence) Recorded(ctx context.Context, incident, note string) (bool, error) {
	recs, err := s.l.List(ctx, incident)
	return slices.ContainsFunc(recs, func(r evidence.Record) bool { return r.Note == note }), err
}

func (s ledgerEvidence) Record(ctx context.Context, e actions.Evidence) (actions.EvidenceRecord, error) {
	rec, err := s.l.Add(ctx, evidence.Item{Incident: e.Incident, Gateway: e.Gateway, Name: e.Name, MediaType: "application/json",
		Kind: e.Kind, Source: e.Source, CollectedBy: e.CollectedBy, CollectedFrom: e.CollectedFrom, StoredBy: "controller",
		Note: e.Note, Reference: e.Reference})
	return actions.EvidenceRecord{ID: rec.ID, Incident: rec.Incident, Name: rec.Name, SHA256: rec.SHA256}, err
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

// storeSigns reads an incident's first sign and the addresses its
// indicators name (actions.IncidentSigns).
type storeSigns struct{ st *store.Store }

var _ actions.IncidentSigns = storeSigns{}

func (s storeSigns) FirstSign(ctx context.Context, incident string) (time.Time, []netip.Addr, error) {
	inds, err := s.st.IndicatorsOfIncident(ctx, incident)
	if err != nil {
		return time.Time{}, nil, err
	}
	var first time.Time
	var addrs []netip.Addr
	for _, r := range inds {
		for _, t := range []time.Time{r.ReceivedAt, r.Indicator.ObservedAt} {
			if !t.IsZero() && (first.IsZero() || t.Before(first)) {
				first = t
			}
		}
		for _, ip := range r.Indicator.Observables.IPs {
			if a, err := netip.ParseAddr(ip); err == nil && !slices.Contains(addrs, a.Unmap()) {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	return first, addrs, nil
}

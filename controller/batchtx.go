package controller

import (
	"context"
	"time"

	"github.com/warden-ir/warden/store"
)

// batchTx is the transaction of one intake batch, remembering the reads
// every indicator of the batch repeats about its gateway: how many
// indicators it had recently (a count of up to store.RecentIndicatorsCap
// index rows, a fifth of the decider's time when read for each), its
// posture, and its open incidents. Its own writes keep them true: an indicator inserted counts,
// a posture set is read again, and a savepoint rolled back forgets
// everything. Every other method is the transaction's own
// (TestBatchTxKnowsEveryWrite lists which cannot change what it keeps).
type batchTx struct {
	store.Tx
	recent  map[gwSince]int
	posture map[string]store.Posture
	// incident, open and openCount remember IncidentByID,
	// OpenIncidentFor and CountOpenIncidents: every indicator joining an
	// incident reads it and writes it back (touchIncident).
	incident  map[string]store.Incident
	open      map[gwSince]openAnswer
	openCount map[string]int
}

type openAnswer struct {
	inc   store.Incident
	found bool
}

// gwSince keys a read about a gateway since a time.
type gwSince struct {
	gw    string
	since int64 // UnixNano
}

func newBatchTx(tx store.Tx) *batchTx {
	return &batchTx{Tx: tx, recent: map[gwSince]int{}, posture: map[string]store.Posture{},
		incident: map[string]store.Incident{}, open: map[gwSince]openAnswer{}, openCount: map[string]int{}}
}

func (b *batchTx) forget() {
	clear(b.recent)
	clear(b.posture)
	b.forgetIncidents()
}

func (b *batchTx) forgetIncidents() {
	clear(b.incident)
	clear(b.open)
	clear(b.openCount)
}

// forgetGateway forgets what was read about gw's open incidents ("" :
// every gateway's).
func (b *batchTx) forgetGateway(gw string) {
	if gw == "" {
		clear(b.open)
		clear(b.openCount)
		return
	}
	for k := range b.open {
		if k.gw == gw {
			delete(b.open, k)
		}
	}
	delete(b.openCount, gw)
}

func (b *batchTx) IncidentByID(ctx context.Context, id string) (store.Incident, error) {
	if in, ok := b.incident[id]; ok {
		return in, nil
	}
	in, err := b.Tx.IncidentByID(ctx, id)
	if err == nil {
		b.incident[id] = in
	}
	return in, err
}

func (b *batchTx) OpenIncidentFor(ctx context.Context, gw string, since time.Time) (store.Incident, bool, error) {
	k := gwSince{gw, since.UnixNano()}
	if a, ok := b.open[k]; ok {
		return a.inc, a.found, nil
	}
	in, found, err := b.Tx.OpenIncidentFor(ctx, gw, since)
	if err == nil {
		b.open[k] = openAnswer{in, found}
	}
	return in, found, err
}

func (b *batchTx) CountOpenIncidents(ctx context.Context, gw string) (int, error) {
	if n, ok := b.openCount[gw]; ok {
		return n, nil
	}
	n, err := b.Tx.CountOpenIncidents(ctx, gw)
	if err == nil {
		b.openCount[gw] = n
	}
	return n, err
}

// UpsertIncident writes in and keeps what is remembered true: an incident
// known from IncidentByID takes the columns the upsert updates (the
// others keep their stored values); an incident not known, or whose
// status opens or closes, makes its gateway's open incidents be read
// again; the gateway's newest open incident touched stays the newest.
func (b *batchTx) UpsertIncident(ctx context.Context, in store.Incident) error {
	if err := b.Tx.UpsertIncident(ctx, in); err != nil {
		b.forget()
		return err
	}
	prev, known := b.incident[in.ID]
	if !known {
		delete(b.incident, in.ID)
		b.forgetGateway(in.Gateway)
		return nil
	}
	merged := prev
	merged.UpdatedAt, merged.Status, merged.Severity, merged.Title, merged.LastStatus = in.UpdatedAt, in.Status, in.Severity, in.Title, in.LastStatus
	b.incident[in.ID] = merged
	closed := func(s string) bool { return s == store.IncidentClosed }
	if closed(prev.Status) != closed(merged.Status) || merged.UpdatedAt.Before(prev.UpdatedAt) {
		b.forgetGateway(prev.Gateway)
		return nil
	}
	for k, a := range b.open {
		if k.gw != prev.Gateway {
			continue
		}
		if !a.found || a.inc.ID != in.ID || merged.UpdatedAt.UnixNano() < k.since {
			delete(b.open, k) // it may be the newest open incident now
			continue
		}
		b.open[k] = openAnswer{merged, true}
	}
	return nil
}

func (b *batchTx) SetIncidentStatus(ctx context.Context, id, status string, at time.Time) error {
	b.forgetIncidents()
	return b.Tx.SetIncidentStatus(ctx, id, status, at)
}

func (b *batchTx) CountRecentIndicators(ctx context.Context, gw string, since time.Time) (int, error) {
	k := gwSince{gw, since.UnixNano()}
	if n, ok := b.recent[k]; ok {
		return n, nil
	}
	n, err := b.Tx.CountRecentIndicators(ctx, gw, since)
	if err == nil {
		b.recent[k] = n
	}
	return n, err
}

func (b *batchTx) InsertIndicator(ctx context.Context, r store.IndicatorRecord) error {
	if err := b.Tx.InsertIndicator(ctx, r); err != nil {
		b.forget()
		return err
	}
	if !r.Matched {
		return nil
	}
	for k, n := range b.recent {
		// CountRecentIndicators counts matched rows of the gateway
		// received at or after since.
		if k.gw == r.Indicator.Gateway && r.ReceivedAt.UnixNano() >= k.since {
			b.recent[k] = min(n+1, store.RecentIndicatorsCap)
		}
	}
	return nil
}

func (b *batchTx) Posture(ctx context.Context, gw string) (store.Posture, error) {
	if p, ok := b.posture[gw]; ok {
		return p, nil
	}
	p, err := b.Tx.Posture(ctx, gw)
	if err == nil {
		b.posture[gw] = p
	}
	return p, err
}

func (b *batchTx) SetDesiredPosture(ctx context.Context, gw, desired, incident string, at time.Time) error {
	delete(b.posture, gw)
	return b.Tx.SetDesiredPosture(ctx, gw, desired, incident, at)
}

func (b *batchTx) Savepoint(ctx context.Context, fn func() error) error {
	err := b.Tx.Savepoint(ctx, fn)
	if err != nil {
		b.forget() // its writes are undone
	}
	return err
}

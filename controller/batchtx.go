package controller

import (
	"context"
	"time"

	"github.com/warden-ir/warden/store"
)

// batchTx is the transaction of one intake batch, remembering the reads
// every indicator of the batch repeats about its gateway: how many
// indicators it had recently (a count of up to store.RecentIndicatorsCap
// index rows, a fifth of the decider's time when read for each) and its
// posture. Its own writes keep them true: an indicator inserted counts,
// a posture set is read again, and a savepoint rolled back forgets
// everything. Every other method is the transaction's own
// (TestBatchTxKnowsEveryWrite lists which cannot change what it keeps).
type batchTx struct {
	store.Tx
	recent  map[recentKey]int
	posture map[string]store.Posture
}

type recentKey struct {
	gw    string
	since int64 // UnixNano
}

func newBatchTx(tx store.Tx) *batchTx {
	return &batchTx{Tx: tx, recent: map[recentKey]int{}, posture: map[string]store.Posture{}}
}

func (b *batchTx) forget() {
	clear(b.recent)
	clear(b.posture)
}

func (b *batchTx) CountRecentIndicators(ctx context.Context, gw string, since time.Time) (int, error) {
	k := recentKey{gw, since.UnixNano()}
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

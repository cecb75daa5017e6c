package controller

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/warden-ir/warden/audit"

	"github.com/warden-ir/warden/journal"
	"github.com/warden-ir/warden/store"
)

// Journaled intake: bulk alerts are made durable by appending them to the
// intake journal (one write and one fsync for every request that arrived
// meanwhile) and answered at once, each with the id its indicator will
// keep and Queued set; the decider (RunDecider) then takes them off the
// journal in order and through the core loop, in the same group-committed
// batches and behind the same priority lane as Accept. An urgent request
// (a high or critical indicator), or one that asks to wait, is decided
// before its answer as before (Accept).
//
// Nothing acknowledged is lost: the answer follows the journal's fsync.
// None is decided twice: an indicator and its decision commit together,
// and a record read again after a restart (the decider's place is not
// durable, only the store's contents) finds its indicator stored and is
// skipped in the same transaction that would have decided it.

// journalRecord is one journaled item.
type journalRecord struct {
	Actor string    `json:"actor"`
	At    time.Time `json:"at"`
	Item  Item      `json:"item"`
}

// Enqueue is Accept for bulk intake: with a journal, items without a high
// or critical indicator are answered once journaled (Queued) and decided
// by RunDecider; otherwise, and without a journal, it is Accept.
func (c *intake) Enqueue(ctx context.Context, actor string, items []Item) ([]Accepted, error) {
	if c.opt.Journal == nil || urgent(items) {
		return c.Accept(ctx, actor, items)
	}
	now := c.clock.Now().UTC()
	recs := make([][]byte, len(items))
	out := make([]Accepted, len(items))
	for i, it := range items {
		it.ID = store.NewID("ind")
		b, err := json.Marshal(journalRecord{Actor: actor, At: now, Item: it})
		if err != nil {
			return nil, fmt.Errorf("journaling item %d: %w", i, err)
		}
		recs[i] = b
		out[i] = Accepted{Index: i, IndicatorID: it.ID, Gateway: it.Indicator.Gateway, Matched: it.Matched, Reason: it.Reason,
			Status: it.Indicator.Status, Queued: true}
	}
	if _, err := c.opt.Journal.Append(ctx, recs...); err != nil {
		return nil, err
	}
	c.m.IntakeBacklog.Add(float64(len(recs)))
	return out, nil
}

// UseJournal makes bulk intake journaled (before the API serves and the
// decider runs). It counts the records the journal keeps into the backlog
// (warden_intake_backlog): those an earlier run may not have decided.
func (c *intake) UseJournal(j *journal.Journal) error {
	n, err := j.Count()
	if err != nil {
		return err
	}
	c.opt.Journal = j
	c.m.IntakeBacklog.Set(float64(n))
	return nil
}

// Journaled reports whether bulk intake is journaled (Enqueue answers
// before deciding).
func (c *intake) Journaled() bool { return c.opt.Journal != nil }

// decideBatch bounds the records the decider reads at once.
const decideBatch = 4 * MaxBatchItems

// decideGroup is how many journaled items of one sender share a request
// (one savepoint) in the decider's batches: fewer statements per item,
// and still a short wait for an urgent request, which cuts a batch short
// between requests.
const decideGroup = 8

// decidePace is the least time between two of the decider's batches
// while it keeps up: records arriving meanwhile wait to be decided
// together, in one transaction and one sync of the store, rather than
// each few in their own, whose syncs would compete on the disk with the
// journal's (on which every answer waits). Behind, it reads full batches
// back to back.
const decidePace = 10 * time.Millisecond

// RunDecider decides the journaled items in order until ctx ends: from
// the oldest segment kept (records already decided before a restart are
// found stored and skipped), then each batch as it becomes durable.
// Segments wholly decided are released. Without a journal it returns at
// once.
func (c *intake) RunDecider(ctx context.Context) error {
	j := c.opt.Journal
	if j == nil {
		return nil
	}
	pos, err := j.First()
	if err != nil {
		return err
	}
	// Records before replayEnd may have been decided by an earlier run of
	// the process: each is checked in the transaction deciding it.
	replayEnd, _ := j.Durable()
	kept := pos.Segment // the oldest segment not yet released
	var last time.Time  // when the decider last took records
	for {
		if wait := decidePace - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		recs, next, err := j.Read(pos, decideBatch)
		if err != nil {
			// An acknowledged record that cannot be read is a broken disk:
			// stop deciding, loudly, rather than skip it.
			c.log.Error("the intake journal cannot be read; journaled indicators are not being decided", "err", err)
			return err
		}
		if len(recs) == 0 {
			pos = next // past the end of a segment read to its end
			if end, moved := j.Durable(); !pos.Before(end) {
				select {
				case <-ctx.Done():
					return nil
				case <-moved:
				}
			}
			continue
		}
		last = time.Now()
		reqs := make([]*acceptReq, 0, len(recs))
		for _, b := range recs {
			var r journalRecord
			if err := json.Unmarshal(b, &r); err != nil {
				c.log.Error("the intake journal holds a record that cannot be decoded; journaled indicators are not being decided", "err", err)
				return fmt.Errorf("intake journal: %w", err)
			}
			r.Item.replay = pos.Before(replayEnd)
			r.Item.receivedAt = r.At.UTC().Truncate(time.Microsecond)
			r.Item.batched = true
			if n := len(reqs); n > 0 && reqs[n-1].actor == r.Actor && len(reqs[n-1].items) < decideGroup {
				reqs[n-1].items = append(reqs[n-1].items, r.Item)
				continue
			}
			reqs = append(reqs, &acceptReq{actor: r.Actor, items: []Item{r.Item}, journaled: true})
		}
		if err := c.decideAll(ctx, reqs); err != nil {
			return nil // ctx ended: the rest is decided after the restart
		}
		c.m.IntakeBacklog.Sub(float64(len(recs)))
		pos = next
		if pos.Segment > kept {
			if err := j.Release(pos); err != nil {
				c.log.Warn("releasing decided intake journal segments", "err", err)
			}
			kept = pos.Segment
		}
	}
}

// decideAll commits reqs through the normal lane, in order, and tries
// again those that failed, one item per request: after a failure an item
// is checked for having been stored after all, and from the third attempt
// on it is recorded as unmatched with the reason, so that an item no
// policy can be decided for (its gateway left the inventory) is still
// kept. It returns only once every item is stored, or ctx ended.
func (c *intake) decideAll(ctx context.Context, reqs []*acceptReq) error {
	for attempt := 1; len(reqs) > 0; attempt++ {
		for _, r := range reqs {
			r.committed, r.done, r.err, r.out = make(chan struct{}), false, nil, nil
		}
		c.qmu.Lock()
		c.queue = append(c.queue, reqs...)
		c.qmu.Unlock()
		c.commitUntil(context.WithoutCancel(ctx), reqs[len(reqs)-1])
		var failed []*acceptReq
		for _, r := range reqs {
			<-r.committed
			if r.err != nil {
				failed = append(failed, r)
				continue
			}
			for _, a := range r.out {
				c.m.IndicatorsAccepted.WithLabelValues(matchLabel(a)).Inc()
			}
		}
		c.flushPages(ctx)
		c.Kick()
		if len(failed) == 0 {
			return nil
		}
		c.log.Warn("journaled indicators could not be decided; trying again", "requests", len(failed), "attempt", attempt, "err", failed[0].err)
		reqs = reqs[:0:0]
		for _, r := range failed {
			// A request of several items is tried again one item at a
			// time, so that one that cannot be decided spoils no other.
			for _, it := range r.items {
				it.replay = true
				if attempt >= 2 && len(r.items) == 1 && it.Matched {
					it.Matched, it.Reason = false, "could not be decided: "+r.err.Error()
				}
				reqs = append(reqs, &acceptReq{actor: r.actor, items: []Item{it}, journaled: true})
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, 5*time.Second)):
		}
	}
	return nil
}

// alreadyStored is the answer for a journaled item found stored when it
// is read again: it was decided before.
func alreadyStored(ctx context.Context, tx store.Tx, it Item) (Accepted, bool, error) {
	if !it.replay || it.ID == "" {
		return Accepted{}, false, nil
	}
	rec, err := tx.IndicatorByID(ctx, it.ID)
	if errors.Is(err, store.ErrNotFound) {
		return Accepted{}, false, nil
	}
	if err != nil {
		return Accepted{}, false, err
	}
	return Accepted{IndicatorID: rec.ID, Gateway: rec.Indicator.Gateway, Matched: rec.Matched, Reason: rec.Reason,
		IncidentID: rec.Incident, Duplicate: rec.Duplicate, Status: rec.Indicator.Status, earlier: true}, true, nil
}

// BatchAction is the audit action of the entry that keeps a batch of
// journaled indicators: its data holds their ids, in leaf order, and the
// Merkle root over the leaves of their stored rows
// (store.IndicatorDigests), so that editing any one stored indicator is
// found by VerifyIntakeBatches and each has a proof of membership
// (ProveIndicator).
const BatchAction = "intake.batch"

// batchData is the data of a BatchAction entry.
type batchData struct {
	Indicators []string `json:"indicators"`
	Root       string   `json:"root"`
	Leaf       string   `json:"leaf"`
}

// leafRule says in the entry how a leaf is made.
const leafRule = "sha256(0x00 || each column of the stored indicator row, uvarint length then bytes); nodes sha256(0x01 || left || right), an odd node carried up"

// auditJournaled writes the batch entry for the journaled indicators the
// transaction stored (none: nothing).
func (c *intake) auditJournaled(ctx context.Context, tx store.Tx, now time.Time, reqs []*acceptReq) error {
	var ids []string
	for _, r := range reqs {
		if !r.journaled || r.err != nil {
			continue
		}
		for _, a := range r.out {
			if !a.earlier {
				ids = append(ids, a.IndicatorID)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	digests, err := tx.IndicatorDigests(ctx, ids)
	if err != nil {
		return err
	}
	leaves := make([][32]byte, len(ids))
	for i, id := range ids {
		d, ok := digests[id]
		if !ok {
			return fmt.Errorf("indicator %s was just stored but cannot be read back", id)
		}
		leaves[i] = d
	}
	root := audit.MerkleRoot(leaves)
	return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: BatchAction,
		Data: mustJSON(batchData{Indicators: ids, Root: hex.EncodeToString(root[:]), Leaf: leafRule})})
}

// IndicatorProof is a stored indicator's proof of membership in the batch
// entry that keeps it.
type IndicatorProof struct {
	Indicator string            `json:"indicator"`
	AuditSeq  int64             `json:"audit_seq"`
	Leaf      string            `json:"leaf"`
	Root      string            `json:"root"`
	Path      []audit.ProofStep `json:"path"`
	// Valid says the leaf of the row as stored now, with Path, makes
	// the root the chained entry holds.
	Valid bool `json:"valid"`
}

// batchEntries reads the BatchAction entries of the chain.
func batchEntries(ctx context.Context, st store.Backend) ([]audit.Entry, []batchData, error) {
	all, err := audit.List(ctx, st.DB(), "")
	if err != nil {
		return nil, nil, err
	}
	var es []audit.Entry
	var ds []batchData
	for _, e := range all {
		if e.Action != BatchAction {
			continue
		}
		var d batchData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, nil, fmt.Errorf("audit entry %d: %w", e.Seq, err)
		}
		es, ds = append(es, e), append(ds, d)
	}
	return es, ds, nil
}

// ProveIndicator returns the proof of membership of a journaled
// indicator (ErrNotFound-wrapped when no batch entry holds it: an
// indicator decided before its answer is kept by its own entries).
func ProveIndicator(ctx context.Context, st store.Backend, id string) (IndicatorProof, error) {
	es, ds, err := batchEntries(ctx, st)
	if err != nil {
		return IndicatorProof{}, err
	}
	for k, d := range ds {
		i := slices.Index(d.Indicators, id)
		if i < 0 {
			continue
		}
		digests, err := st.IndicatorDigests(ctx, d.Indicators)
		if err != nil {
			return IndicatorProof{}, err
		}
		leaves := make([][32]byte, len(d.Indicators))
		for j, x := range d.Indicators {
			leaves[j] = digests[x] // a deleted row is the zero leaf: it proves nothing
		}
		path, err := audit.MerkleProof(leaves, i)
		if err != nil {
			return IndicatorProof{}, err
		}
		mine := digests[id]
		p := IndicatorProof{Indicator: id, AuditSeq: es[k].Seq, Leaf: hex.EncodeToString(mine[:]), Root: d.Root, Path: path}
		p.Valid = audit.VerifyMerkleProof(mine, path, d.Root)
		return p, nil
	}
	return IndicatorProof{}, fmt.Errorf("indicator %s is in no %s audit entry: %w", id, BatchAction, store.ErrNotFound)
}

// VerifyIntakeBatches checks every BatchAction entry against the
// indicators as stored: the root over their rows' leaves must be the one
// chained. It names the first indicator that differs, and returns how
// many indicators it checked; a mismatch is an *audit.BrokenError at the
// batch's entry. (The chain itself is audit.Verify's.)
func VerifyIntakeBatches(ctx context.Context, st store.Backend) (int, error) {
	es, ds, err := batchEntries(ctx, st)
	if err != nil {
		return 0, err
	}
	n := 0
	for k, d := range ds {
		digests, err := st.IndicatorDigests(ctx, d.Indicators)
		if err != nil {
			return n, err
		}
		leaves := make([][32]byte, len(d.Indicators))
		for j, x := range d.Indicators {
			leaves[j] = digests[x]
		}
		if r := audit.MerkleRoot(leaves); hex.EncodeToString(r[:]) == d.Root {
			n += len(d.Indicators)
			continue
		}
		for _, x := range d.Indicators {
			if _, ok := digests[x]; !ok {
				return n, &audit.BrokenError{Seq: es[k].Seq, Reason: fmt.Sprintf("indicator %s of this batch is missing from the store", x)}
			}
		}
		return n, &audit.BrokenError{Seq: es[k].Seq, Reason: fmt.Sprintf("one of the %d indicators of this batch was changed since it was stored (their rows do not make the Merkle root chained for the batch)", len(d.Indicators))}
	}
	return n, nil
}

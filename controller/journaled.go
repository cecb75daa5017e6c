package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
	for {
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
		reqs := make([]*acceptReq, 0, len(recs))
		for _, b := range recs {
			var r journalRecord
			if err := json.Unmarshal(b, &r); err != nil {
				c.log.Error("the intake journal holds a record that cannot be decoded; journaled indicators are not being decided", "err", err)
				return fmt.Errorf("intake journal: %w", err)
			}
			r.Item.replay = pos.Before(replayEnd)
			reqs = append(reqs, &acceptReq{actor: r.Actor, items: []Item{r.Item}})
		}
		if err := c.decideAll(ctx, reqs); err != nil {
			return nil // ctx ended: the rest is decided after the restart
		}
		c.m.IntakeBacklog.Sub(float64(len(reqs)))
		pos = next
		if pos.Segment > kept {
			if err := j.Release(pos); err != nil {
				c.log.Warn("releasing decided intake journal segments", "err", err)
			}
			kept = pos.Segment
		}
	}
}

// decideAll commits reqs (one item each) through the normal lane, in
// order, and tries again those that failed: after a failure an item is
// checked for having been stored after all, and from the third attempt
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
		c.log.Warn("journaled indicators could not be decided; trying again", "count", len(failed), "attempt", attempt, "err", failed[0].err)
		for _, r := range failed {
			it := &r.items[0]
			it.replay = true
			if attempt >= 2 && it.Matched {
				it.Matched, it.Reason = false, "could not be decided: "+failed[0].err.Error()
			}
		}
		reqs = failed
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
		IncidentID: rec.Incident, Duplicate: rec.Duplicate, Status: rec.Indicator.Status}, true, nil
}

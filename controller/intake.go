package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// Item is one alert handed to Accept: a decoded indicator, or an unmatched
// alert with its reason.
type Item struct {
	Indicator indicator.Indicator
	Matched   bool
	Reason    string
	// ID, when set, is the id the indicator is stored under (given when
	// it was journaled and answered).
	ID string `json:",omitempty"`
	// replay marks a journaled item that may have been stored before
	// (read again after a restart, or tried again): the transaction that
	// would decide it checks first.
	replay bool
	// receivedAt, when set, is when a journaled item was answered: its
	// indicator is recorded as received then, not when it was decided.
	receivedAt time.Time
	// batched marks a journaled item: the intake batch entry keeps it in
	// the audit, and what became of it is recorded on its row
	// (store.IndicatorDecision) rather than in entries of its own, unless
	// it starts a run.
	batched bool
}

// Accepted says what became of one item.
type Accepted struct {
	Index       int    `json:"index"`
	IndicatorID string `json:"indicator_id"`
	Gateway     string `json:"gateway,omitempty"`
	Matched     bool   `json:"matched"`
	Reason      string `json:"unmatched_reason,omitempty"`
	IncidentID  string `json:"incident_id,omitempty"`
	Duplicate   bool   `json:"duplicate,omitempty"`
	Status      string `json:"status,omitempty"`
	Policy      string `json:"policy,omitempty"`
	RunID       string `json:"run_id,omitempty"`
	RunState    string `json:"run_state,omitempty"`
	// Queued says the indicator is durable and waits to be decided
	// (journaled intake): IncidentID, Policy and RunID are not known yet.
	Queued bool `json:"queued,omitempty"`
	// earlier says the indicator was found stored by an earlier
	// transaction (a journaled item read again): this one wrote nothing.
	earlier bool
	// started is the run the decision recorded started, with its first
	// step's first attempt (startsAtOnce), as committed.
	started *store.Run
}

// Accept stores every item, groups them into incidents, decides, and creates
// runs: when it returns nil, everything is durable (safety invariant 3).
// Runs then execute in the background.
//
// Concurrent calls are group-committed: whoever holds the commit lock
// writes the requests queued so far in one transaction (one fsync), each
// request inside its own savepoint so a failing one cannot spoil the
// others, and goes on until its own request is written. A caller returns
// only after the transaction holding its items has committed.
//
// Batches are bounded (MaxBatchItems items, a request never split), and
// requests with a high or critical indicator are taken before any other
// (the priority lane): in a storm of low-severity alerts, a C2 alert makes
// the batch being written stop after its current request and commit, and
// is written next.
func (c *intake) Accept(ctx context.Context, actor string, items []Item) ([]Accepted, error) {
	req := &acceptReq{actor: actor, items: items, committed: make(chan struct{})}
	c.qmu.Lock()
	if urgent(items) {
		c.urgent = append(c.urgent, req)
		c.urgentWaiting.Store(true)
	} else {
		c.queue = append(c.queue, req)
	}
	c.qmu.Unlock()
	c.commitUntil(ctx, req)
	if req.err != nil {
		return nil, req.err
	}
	var started []string
	for _, a := range req.out {
		c.m.IndicatorsAccepted.WithLabelValues(matchLabel(a)).Inc()
		switch {
		case a.started != nil:
			c.handOver(*a.started)
			started = append(started, a.RunID)
		case a.RunID != "" && a.RunState == store.RunPending:
			started = append(started, a.RunID)
		}
	}
	c.flushPages(ctx)
	if len(started) > 0 {
		c.startRuns(started...) // a C2 alert's containment starts now
	} else {
		c.Kick()
	}
	return req.out, nil
}

// commitUntil returns once req is committed: by this caller, which takes
// the commit lock when it is free and writes batches until its own request
// is written, or by another caller holding it. A caller whose request
// another committer wrote returns at once, without waiting for the lock.
func (c *intake) commitUntil(ctx context.Context, req *acceptReq) {
	for {
		c.qmu.Lock()
		if c.freed == nil {
			c.freed = make(chan struct{})
		}
		freed := c.freed
		c.qmu.Unlock()
		if c.commitMu.TryLock() {
			for !req.done {
				// The batch holds other callers' items: the first caller
				// going away must not abort their commit.
				c.commitBatch(context.WithoutCancel(ctx), c.nextBatch())
			}
			c.letGo()
			return
		}
		select {
		case <-req.committed:
			return
		case <-freed:
		}
	}
}

// letGo releases commitMu, which the caller holds, and wakes the callers
// waiting to take it over.
//
// The lock is released before the waiters are woken: a waiter that read
// the channel after it was replaced, and then failed to take the lock,
// would wait for a wake-up nobody sends (it hung a journaled API test in
// CI). In this order, a waiter that reads the new channel finds the lock
// free, or held by a committer that will close that channel in turn.
func (c *intake) letGo() {
	c.commitMu.Unlock()
	if letGoPause != nil {
		letGoPause()
	}
	c.qmu.Lock()
	if c.freed != nil {
		close(c.freed)
	}
	c.freed = make(chan struct{})
	c.qmu.Unlock()
}

// letGoPause, set only by tests, runs between letGo's two halves to widen
// the window in which a waiter can look.
var letGoPause func()

// MaxBatchItems bounds the items of one intake transaction (a request is
// never split, so one larger request makes a batch of its own).
const MaxBatchItems = 256

// urgent reports whether items hold an indicator of high or critical
// severity: its request takes the priority lane.
func urgent(items []Item) bool {
	for _, it := range items {
		if it.Matched && it.Indicator.Severity.Rank() >= indicator.High.Rank() {
			return true
		}
	}
	return false
}

// nextBatch takes the next batch off the queues, the priority lane first,
// each up to MaxBatchItems items. The caller holds commitMu.
func (c *intake) nextBatch() []*acceptReq {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.urgent) > 0 {
		b := take(&c.urgent)
		c.urgentWaiting.Store(len(c.urgent) > 0)
		return b
	}
	return take(&c.queue)
}

// take removes the first requests of q up to MaxBatchItems items (at least
// one request) and returns them.
func take(q *[]*acceptReq) []*acceptReq {
	n, items := 0, 0
	for n < len(*q) && (n == 0 || items+len((*q)[n].items) <= MaxBatchItems) {
		items += len((*q)[n].items)
		n++
	}
	b := (*q)[:n:n]
	*q = (*q)[n:]
	return b
}

type acceptReq struct {
	actor string
	items []Item
	// journaled marks the decider's requests: their indicators are
	// recorded in the audit by one entry per batch (auditJournaled).
	journaled bool
	out       []Accepted
	err       error
	// done is set, and committed closed, once the transaction holding
	// the request has committed (or failed).
	done      bool
	committed chan struct{}
}

func (c *intake) commitBatch(ctx context.Context, batch []*acceptReq) {
	// Audit times are kept to the microsecond; so are the records they
	// describe, or an alert would appear to arrive after its decision.
	now := c.clock.Now().UTC().Truncate(time.Microsecond)
	written := len(batch)
	err := c.st.Tx(ctx, func(stx store.Tx) error {
		tx := newBatchTx(stx)
		written = len(batch)
		for i, req := range batch {
			if i > 0 && c.urgentWaiting.Load() {
				// A high or critical alert arrived: commit what is
				// written and let it go next.
				written = i
				break
			}
			out := make([]Accepted, len(req.items))
			req.err = tx.Savepoint(ctx, func() error {
				for i, it := range req.items {
					a, err := c.acceptOne(ctx, tx, req.actor, now, it)
					if err != nil {
						return fmt.Errorf("accepting item %d: %w", i, err)
					}
					a.Index = i
					out[i] = a
				}
				return nil
			})
			if req.err == nil {
				req.out = out
			}
		}
		return c.auditJournaled(ctx, tx, now, batch[:written])
	})
	for _, req := range batch[:written] {
		if err != nil {
			req.err, req.out = err, nil
		}
		req.done = true
		close(req.committed)
	}
	if rest := batch[written:]; len(rest) > 0 {
		c.qmu.Lock()
		c.queue = append(slices.Clip(rest), c.queue...)
		c.qmu.Unlock()
	}
}

func matchLabel(a Accepted) string {
	switch {
	case !a.Matched:
		return "unmatched"
	case a.Duplicate:
		return "duplicate"
	}
	return "matched"
}

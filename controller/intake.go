package controller

import (
	"context"
	"fmt"
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
}

// Accept stores every item, groups them into incidents, decides, and creates
// runs: when it returns nil, everything is durable (safety invariant 3).
// Runs then execute in the background.
//
// Concurrent calls are group-committed: whoever holds the commit lock
// writes every request queued so far in one transaction (one fsync), each
// request inside its own savepoint so a failing one cannot spoil the
// others. A caller returns only after the transaction holding its items
// has committed.
func (c *intake) Accept(ctx context.Context, actor string, items []Item) ([]Accepted, error) {
	req := &acceptReq{actor: actor, items: items}
	c.qmu.Lock()
	c.queue = append(c.queue, req)
	c.qmu.Unlock()

	c.commitMu.Lock()
	if !req.done {
		c.qmu.Lock()
		batch := c.queue
		c.queue = nil
		c.qmu.Unlock()
		// The batch holds other callers' items: the first caller going
		// away must not abort their commit.
		c.commitBatch(context.WithoutCancel(ctx), batch)
	}
	c.commitMu.Unlock()
	if req.err != nil {
		return nil, req.err
	}
	for _, a := range req.out {
		c.m.IndicatorsAccepted.WithLabelValues(matchLabel(a)).Inc()
	}
	c.flushPages(ctx)
	c.Kick()
	return req.out, nil
}

type acceptReq struct {
	actor string
	items []Item
	out   []Accepted
	err   error
	done  bool
}

func (c *intake) commitBatch(ctx context.Context, batch []*acceptReq) {
	// Audit times are kept to the microsecond; so are the records they
	// describe, or an alert would appear to arrive after its decision.
	now := c.clock.Now().UTC().Truncate(time.Microsecond)
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		for _, req := range batch {
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
		return nil
	})
	for _, req := range batch {
		if err != nil {
			req.err, req.out = err, nil
		}
		req.done = true
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

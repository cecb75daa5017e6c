package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// The block unit: remote addresses and networks from threat intelligence
// (STIX, MISP), a detector or an orchestrator (OpenC2) blocked at every
// gateway of the fleet, with an expiry. A block is fleet-wide desired
// state, not a run about one gateway: each request is recorded (durably,
// before the caller hears back), judged by pure safety rules (BlockSafety)
// — a safe block is in force at once, an unsafe one waits for a second
// person's approval and says why — and the leader reconciles every
// gateway's kernel set to the union of the blocks in force through the
// catalogue's block_ioc action (apply, then verify by reading the set
// back). Expired and withdrawn blocks leave the set on the next pass.

// BlockState is where a block stands.
type BlockState string

// Block states.
const (
	// BlockPending waits for a person's approval (BlockSafety gave reasons).
	BlockPending BlockState = "pending_approval"
	// BlockActive is in force (until ExpiresAt).
	BlockActive BlockState = "active"
	// BlockWithdrawn was lifted by a person or the source.
	BlockWithdrawn BlockState = "withdrawn"
	// BlockExpired passed its expiry.
	BlockExpired BlockState = "expired"
	// BlockRefused was refused by a person at approval.
	BlockRefused BlockState = "refused"
)

// BlockRequest asks for remote addresses to be blocked at every gateway.
type BlockRequest struct {
	// Prefixes to block (addresses are /32 or /128).
	Prefixes []netip.Prefix
	// Domains named by the source: recorded and reported, never blocked
	// (a packet filter cannot block a name).
	Domains []string
	// Source names where it came from: "stix", "misp", "openc2", "api".
	Source string
	// Ref is the source's id (a STIX indicator id, a MISP attribute
	// uuid, an OpenC2 request id): a second request with the same Source
	// and Ref is the same block (idempotent).
	Ref string
	// Name is a human line ("C2 server of campaign X").
	Name string
	// Kind is what the addresses are (c2_beacon, exfiltration, …).
	Kind indicator.Kind
	// TLP is the source's traffic light marking ("TLP:AMBER"), kept.
	TLP string
	// Confidence 0..1 as the source gives it.
	Confidence float64
	// ValidFrom and ValidUntil bound the block; zero ValidUntil means the
	// configured default lifetime, and no block outlives the configured
	// maximum.
	ValidFrom, ValidUntil time.Time
	// Labels are free-form context (STIX labels, MISP tags, sightings).
	Labels map[string]string
}

// Block is one recorded block.
type Block struct {
	// Number is the block's rule number (OpenC2 slpf:rule_number).
	Number   int64          `json:"number"`
	Prefixes []netip.Prefix `json:"prefixes"`
	Domains  []string       `json:"domains,omitempty"`
	Source   string         `json:"source"`
	Ref      string         `json:"ref,omitempty"`
	Name     string         `json:"name,omitempty"`
	Kind     indicator.Kind `json:"kind,omitempty"`
	TLP      string         `json:"tlp,omitempty"`
	// Confidence 0..1.
	Confidence float64    `json:"confidence,omitempty"`
	State      BlockState `json:"state"`
	// Unsafe lists why the block needs a person's approval (empty when
	// it went into force by itself).
	Unsafe      []string          `json:"unsafe,omitempty"`
	RequestedBy string            `json:"requested_by"`
	DecidedBy   string            `json:"decided_by,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	ValidFrom   time.Time         `json:"valid_from"`
	ExpiresAt   time.Time         `json:"expires_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// BlockOutcome is what became of one BlockRequest.
type BlockOutcome struct {
	Block Block
	// Created is false when the same Source and Ref was already recorded
	// (the recorded block is returned unchanged).
	Created bool
}

// BlockFilter selects blocks; zero selects the most recent ones.
type BlockFilter struct {
	State BlockState
	Limit int
}

// blocker is the block unit.
type blocker struct {
	*core
	kick chan struct{}
	// applied is what each gateway was last seen to hold or failed with,
	// for status; the kernel is the truth, read back on every pass.
	amu     sync.Mutex
	applied map[string]GatewayBlocks
}

// GatewayBlocks is the block set at one gateway as last reconciled.
type GatewayBlocks struct {
	Gateway string    `json:"gateway"`
	Count   int       `json:"count"`
	Digest  string    `json:"digest,omitempty"`
	InSync  bool      `json:"in_sync"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

func newBlocker(co *core) *blocker {
	return &blocker{core: co, kick: make(chan struct{}, 1), applied: map[string]GatewayBlocks{}}
}

// blockFromRecord is the controller's view of a stored block.
func blockFromRecord(r store.BlockRecord) Block {
	b := Block{Number: r.Number, Domains: r.Domains, Source: r.Source, Ref: r.Ref, Name: r.Name, Kind: indicator.Kind(r.Kind),
		TLP: r.TLP, Confidence: r.Confidence, State: BlockState(r.State), Unsafe: r.Unsafe, RequestedBy: r.RequestedBy,
		DecidedBy: r.DecidedBy, Labels: r.Labels, CreatedAt: r.CreatedAt, ValidFrom: r.ValidFrom, ExpiresAt: r.ExpiresAt, UpdatedAt: r.UpdatedAt}
	for _, s := range r.Prefixes {
		if p, err := netip.ParsePrefix(s); err == nil {
			b.Prefixes = append(b.Prefixes, p)
		}
	}
	return b
}

// BlockNoted is a request that named only domains: recorded, nothing to
// block (a packet filter cannot block a name).
const BlockNoted BlockState = "noted"

// RequestBlocks records each request, in one transaction, before it
// returns: a request whose prefixes are all safe to block goes into force
// at once; one with an unsafe prefix (BlockSafety: special-purpose ranges,
// the fleet's own addresses and networks, networks wider than
// blocks.max_auto_prefix_v4/v6) waits for a person's approval, and its
// Unsafe says why. The same Source and Ref again returns the recorded
// block. A request that cannot be a block (no prefix and no domain,
// already expired) is ErrInvalid naming it; nothing of the batch is
// recorded then.
func (c *blocker) RequestBlocks(ctx context.Context, actor string, reqs []BlockRequest) ([]BlockOutcome, error) {
	if actor == "" {
		return nil, fmt.Errorf("%w: actor: who asks for the block is required", ErrInvalid)
	}
	now := c.clock.Now()
	judge := newBlockJudge(c.inv, c.opt.Blocks)
	recs := make([]store.BlockRecord, len(reqs))
	for i, r := range reqs {
		rec, err := c.blockRecord(judge, actor, r, now)
		if err != nil {
			return nil, fmt.Errorf("%w: blocks[%d]: %v", ErrInvalid, i, err)
		}
		recs[i] = rec
	}
	out := make([]BlockOutcome, len(reqs))
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		for i := range recs {
			rec := &recs[i]
			if rec.Ref != "" {
				if prev, err := tx.BlockByRef(ctx, rec.Source, rec.Ref); err == nil {
					out[i] = BlockOutcome{Block: blockFromRecord(prev)}
					continue
				} else if !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
			if err := tx.InsertBlock(ctx, rec); err != nil {
				return err
			}
			if err := tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: "block.requested", Subject: fmt.Sprintf("block:%d", rec.Number),
				Data: mustJSON(map[string]any{"state": rec.State, "prefixes": clipList(rec.Prefixes, 20), "count": len(rec.Prefixes),
					"domains": clipList(rec.Domains, 20), "source": rec.Source, "ref": rec.Ref, "tlp": rec.TLP,
					"unsafe": clipList(rec.Unsafe, 20), "expires_at": rec.ExpiresAt})}); err != nil {
				return err
			}
			out[i] = BlockOutcome{Block: blockFromRecord(*rec), Created: true}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.kickBlocks()
	return out, nil
}

// PlanBlocks judges requests as RequestBlocks would and records nothing:
// each block comes back in the state it would take (Number 0), and Unsafe
// says why one would wait for approval (the dry run of a block).
func (c *blocker) PlanBlocks(ctx context.Context, actor string, reqs []BlockRequest) ([]Block, error) {
	if actor == "" {
		return nil, fmt.Errorf("%w: actor: who asks for the block is required", ErrInvalid)
	}
	now := c.clock.Now()
	judge := newBlockJudge(c.inv, c.opt.Blocks)
	out := make([]Block, len(reqs))
	for i, r := range reqs {
		rec, err := c.blockRecord(judge, actor, r, now)
		if err != nil {
			return nil, fmt.Errorf("%w: blocks[%d]: %v", ErrInvalid, i, err)
		}
		out[i] = blockFromRecord(rec)
	}
	return out, ctx.Err()
}

// blockRecord turns a request into the record to store.
func (c *blocker) blockRecord(judge blockJudge, actor string, r BlockRequest, now time.Time) (store.BlockRecord, error) {
	if len(r.Prefixes) == 0 && len(r.Domains) == 0 {
		return store.BlockRecord{}, errors.New("prefixes: name at least one address, network or domain")
	}
	if r.Source == "" {
		return store.BlockRecord{}, errors.New("source: is required")
	}
	if r.Kind != "" && !r.Kind.Valid() {
		return store.BlockRecord{}, fmt.Errorf("kind: unknown kind %q", r.Kind)
	}
	from := r.ValidFrom
	if from.IsZero() || from.Before(now) {
		from = now
	}
	until := r.ValidUntil
	if until.IsZero() {
		until = from.Add(c.opt.Blocks.DefaultTTL)
	}
	if limit := now.Add(c.opt.Blocks.MaxTTL); until.After(limit) {
		until = limit
	}
	if !until.After(now) {
		return store.BlockRecord{}, fmt.Errorf("valid_until: %s has passed", r.ValidUntil.UTC().Format(time.RFC3339))
	}
	rec := store.BlockRecord{Domains: r.Domains, Source: r.Source, Ref: r.Ref, Name: r.Name, Kind: string(r.Kind), TLP: r.TLP,
		Confidence: r.Confidence, State: string(BlockActive), RequestedBy: actor, Labels: r.Labels,
		CreatedAt: now, ValidFrom: from, ExpiresAt: until, UpdatedAt: now}
	ps, err := wire.NormalizePrefixes(r.Prefixes)
	if err != nil {
		return store.BlockRecord{}, fmt.Errorf("prefixes: %v", err)
	}
	for _, p := range ps {
		rec.Prefixes = append(rec.Prefixes, p.String())
		rec.Unsafe = append(rec.Unsafe, judge.unsafe(p)...)
	}
	switch {
	case len(ps) == 0:
		rec.State = string(BlockNoted)
	case len(rec.Unsafe) > 0 || c.opt.Blocks.RequireApproval:
		rec.State = string(BlockPending)
		if len(rec.Unsafe) == 0 {
			rec.Unsafe = []string{"every block needs a person's approval (blocks.require_approval)"}
		}
	}
	return rec, nil
}

// ApproveBlock puts a block waiting for approval into force. The safety
// rules are judged again now and the reasons the approver accepts are
// recorded. With four eyes on, the person who asked cannot approve.
func (c *blocker) ApproveBlock(ctx context.Context, actor string, number int64, reason string) (Block, error) {
	return c.decideBlock(ctx, actor, number, func(tx store.Tx, rec store.BlockRecord, now time.Time) (string, map[string]any, error) {
		if BlockState(rec.State) != BlockPending {
			return "", nil, fmt.Errorf("%w: block %d is %s, not waiting for approval", ErrConflict, number, rec.State)
		}
		if c.opt.Guards.FourEyes() && rec.RequestedBy == actor {
			return "", nil, fmt.Errorf("%w: four eyes: %s asked for block %d and cannot approve it too", ErrForbidden, actor, number)
		}
		judge := newBlockJudge(c.inv, c.opt.Blocks)
		var unsafe []string
		for _, b := range blockFromRecord(rec).Prefixes {
			unsafe = append(unsafe, judge.unsafe(b)...)
		}
		return string(BlockActive), map[string]any{"reason": reason, "accepted": clipList(unsafe, 20)}, nil
	}, "block.approved")
}

// RefuseBlock refuses a block waiting for approval.
func (c *blocker) RefuseBlock(ctx context.Context, actor string, number int64, reason string) (Block, error) {
	return c.decideBlock(ctx, actor, number, func(tx store.Tx, rec store.BlockRecord, now time.Time) (string, map[string]any, error) {
		if BlockState(rec.State) != BlockPending {
			return "", nil, fmt.Errorf("%w: block %d is %s, not waiting for approval", ErrConflict, number, rec.State)
		}
		return string(BlockRefused), map[string]any{"reason": reason}, nil
	}, "block.refused")
}

// WithdrawBlock lifts a block (in force or waiting): the next pass takes
// it out of every gateway's set. A block already lifted is returned as it
// is.
func (c *blocker) WithdrawBlock(ctx context.Context, actor string, number int64, reason string) (Block, error) {
	return c.decideBlock(ctx, actor, number, func(tx store.Tx, rec store.BlockRecord, now time.Time) (string, map[string]any, error) {
		switch BlockState(rec.State) {
		case BlockActive, BlockPending, BlockNoted:
			return string(BlockWithdrawn), map[string]any{"reason": reason, "was": rec.State}, nil
		}
		return "", nil, nil
	}, "block.withdrawn")
}

// WithdrawBlockByRef withdraws the block a source recorded under ref (a
// STIX indicator revoked by a later version of itself); found is false
// when there is none.
func (c *blocker) WithdrawBlockByRef(ctx context.Context, actor, source, ref, reason string) (b Block, found bool, err error) {
	var number int64
	err = c.st.Tx(ctx, func(tx store.Tx) error {
		rec, err := tx.BlockByRef(ctx, source, ref)
		if err == nil {
			number = rec.Number
		}
		return err
	})
	if errors.Is(err, store.ErrNotFound) || ref == "" {
		return Block{}, false, nil
	}
	if err != nil {
		return Block{}, false, err
	}
	b, err = c.WithdrawBlock(ctx, actor, number, reason)
	return b, err == nil, err
}

// decideBlock moves block number to the state decide returns (none: no
// change), audited as action, in one transaction, and kicks the pass.
func (c *blocker) decideBlock(ctx context.Context, actor string, number int64,
	decide func(tx store.Tx, rec store.BlockRecord, now time.Time) (string, map[string]any, error), action string) (Block, error) {
	if actor == "" {
		return Block{}, fmt.Errorf("%w: actor: who decides is required", ErrInvalid)
	}
	var out store.BlockRecord
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		rec, err := tx.BlockByNumber(ctx, number)
		if err != nil {
			return err
		}
		now := c.clock.Now()
		state, data, err := decide(tx, rec, now)
		if err != nil || state == "" {
			out = rec
			return err
		}
		if err := tx.SetBlockState(ctx, number, state, actor, now); err != nil {
			return err
		}
		if err := tx.Audit(ctx, audit.Entry{At: now, Actor: actor, Action: action, Subject: fmt.Sprintf("block:%d", number), Data: mustJSON(data)}); err != nil {
			return err
		}
		out, err = tx.BlockByNumber(ctx, number)
		return err
	})
	if err != nil {
		return Block{}, err
	}
	c.kickBlocks()
	return blockFromRecord(out), nil
}

// Blocks lists recorded blocks, newest first.
func (c *blocker) Blocks(ctx context.Context, f BlockFilter) ([]Block, error) {
	recs, err := c.st.Blocks(ctx, string(f.State), f.Limit)
	if err != nil {
		return nil, err
	}
	out := make([]Block, len(recs))
	for i, r := range recs {
		out[i] = blockFromRecord(r)
	}
	return out, nil
}

// Block reads one block.
func (c *blocker) Block(ctx context.Context, number int64) (Block, error) {
	r, err := c.st.Block(ctx, number)
	if err != nil {
		return Block{}, err
	}
	return blockFromRecord(r), nil
}

// GatewayBlockStatus is what each gateway held at the last pass.
func (c *blocker) GatewayBlockStatus() []GatewayBlocks {
	c.amu.Lock()
	defer c.amu.Unlock()
	out := make([]GatewayBlocks, 0, len(c.applied))
	for _, g := range c.applied {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b GatewayBlocks) int { return strings.Compare(a.Gateway, b.Gateway) })
	return out
}

func (c *blocker) kickBlocks() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// blockLoop reconciles on a kick and every blocks.interval, while this
// process holds the writer lease.
func (c *blocker) blockLoop(ctx context.Context) {
	if _, ok := c.acts[actions.NameBlockIOC]; !ok {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-c.clock.After(c.opt.Blocks.Interval):
		}
		if _, err := c.leaseEpoch(); err != nil {
			continue
		}
		if err := c.ReconcileBlocks(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("reconciling blocks", "err", err)
		}
	}
}

// ReconcileBlocks makes every gateway with an agent hold exactly the
// blocks in force: it expires the blocks due, judges the automatic ones
// again (a block that became unsafe since — a gateway now has an address
// inside it — is held back for approval), and then, gateway by gateway,
// plans block_ioc (reading the kernel's set) and applies and verifies it
// where the set differs.
func (c *blocker) ReconcileBlocks(ctx context.Context) error {
	set, err := c.blocksInForce(ctx)
	if err != nil {
		return err
	}
	a, ok := c.acts[actions.NameBlockIOC]
	if !ok {
		return fmt.Errorf("%w: block_ioc is not in the catalogue", actions.ErrUnsupported)
	}
	var errs []error
	for _, gw := range c.inv.Gateways {
		if gw.Agent == "" {
			continue
		}
		if _, err := c.leaseEpoch(); err != nil {
			return err // fenced: another controller holds the lease now
		}
		if err := c.holdBlocks(ctx, a, gw, set); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", gw.ID, err))
		}
	}
	return errors.Join(errs...)
}

// blocksInForce expires what is due, holds back automatic blocks that
// became unsafe, and returns the prefixes of every block in force now.
func (c *blocker) blocksInForce(ctx context.Context) ([]netip.Prefix, error) {
	var set []netip.Prefix
	err := c.st.Tx(ctx, func(tx store.Tx) error {
		now := c.clock.Now()
		for _, from := range []BlockState{BlockActive, BlockPending} {
			nums, err := tx.ExpireBlocks(ctx, string(from), string(BlockExpired), now)
			if err != nil {
				return err
			}
			if len(nums) > 0 {
				if err := tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "block.expired",
					Data: mustJSON(map[string]any{"blocks": nums, "was": from})}); err != nil {
					return err
				}
			}
		}
		active, err := tx.Blocks(ctx, string(BlockActive), 0)
		if err != nil {
			return err
		}
		judge := newBlockJudge(c.inv, c.opt.Blocks)
		for _, rec := range active {
			b := blockFromRecord(rec)
			if b.ValidFrom.After(now) {
				continue
			}
			if b.DecidedBy == "" { // automatic: safety is judged again at the moment of acting
				var unsafe []string
				for _, p := range b.Prefixes {
					unsafe = append(unsafe, judge.unsafe(p)...)
				}
				if len(unsafe) > 0 {
					if err := tx.SetBlockState(ctx, b.Number, string(BlockPending), "", now); err != nil {
						return err
					}
					if err := tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "block.held", Subject: fmt.Sprintf("block:%d", b.Number),
						Data: mustJSON(map[string]any{"unsafe": clipList(unsafe, 20)})}); err != nil {
						return err
					}
					continue
				}
			}
			set = append(set, b.Prefixes...)
		}
		return nil
	})
	return set, err
}

// holdBlocks makes gw hold set: plan (read), and apply and verify only
// when the kernel differs.
func (c *blocker) holdBlocks(ctx context.Context, a actions.Action, gw inventory.Gateway, set []netip.Prefix) error {
	set, kept := keepReachable(gw, set)
	if len(kept) > 0 {
		c.log.Warn("blocks in force that would cut a gateway off are not written there", "gateway", gw.ID, "kept_out", clipList(kept, 10))
	}
	req := actions.Request{Gateway: gw, Blocks: set}
	now := c.clock.Now()
	ch, err := a.Plan(ctx, req)
	if err == nil && len(ch.Changes) > 0 {
		var res actions.Result
		res, err = actions.Execute(ctx, a, req)
		if err == nil {
			err = c.st.Tx(ctx, func(tx store.Tx) error {
				return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "block.applied", Subject: gw.ID,
					Data: mustJSON(map[string]any{"summary": res.Summary, "details": res.Details})})
			})
		}
	}
	st := GatewayBlocks{Gateway: gw.ID, InSync: err == nil, At: now}
	if ps, nerr := wire.NormalizePrefixes(set); nerr == nil {
		st.Count, st.Digest = len(ps), wire.PrefixDigest(ps)
	}
	if err != nil {
		st.Error = err.Error()
	}
	c.amu.Lock()
	prev := c.applied[gw.ID]
	c.applied[gw.ID] = st
	c.amu.Unlock()
	if err != nil && prev.Error != st.Error {
		// a new failure is audited once, not on every pass
		if aerr := c.st.Tx(ctx, func(tx store.Tx) error {
			return tx.Audit(ctx, audit.Entry{At: now, Actor: "controller", Action: "block.failed", Subject: gw.ID,
				Data: mustJSON(map[string]any{"error": st.Error})})
		}); aerr != nil {
			return errors.Join(err, aerr)
		}
	}
	return err
}

// keepReachable drops from set, for gw, the prefixes that overlap gw's
// own addresses or management networks (even an approved block never
// cuts the controller off from a gateway), and names them.
func keepReachable(gw inventory.Gateway, set []netip.Prefix) (keep []netip.Prefix, kept []string) {
	var own []netip.Prefix
	for _, s := range append(slices.Clone(gw.Addresses), gw.ManagementNetworks...) {
		if p, err := wire.ParseAllowedIP(s); err == nil {
			own = append(own, wire.CanonicalPrefix(p))
		}
	}
	keep = make([]netip.Prefix, 0, len(set))
	for _, p := range set {
		if slices.ContainsFunc(own, p.Overlaps) {
			kept = append(kept, p.String())
			continue
		}
		keep = append(keep, p)
	}
	return keep, kept
}

// clipList keeps the first n items of a list shown in an audit entry,
// with how many were left out.
func clipList(l []string, n int) []string {
	if len(l) <= n {
		return l
	}
	return append(slices.Clone(l[:n]), fmt.Sprintf("… and %d more", len(l)-n))
}

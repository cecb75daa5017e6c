package actions

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// IOCBlocker holds a gateway's set of blocked remote prefixes (threat
// intelligence, detectors, OpenC2): providers/linux's AgentPool, through
// the gateway's agent, which installs the whole set in one atomic kernel
// transaction. A gateway without an agent is an error wrapping
// ErrUnsupported.
type IOCBlocker interface {
	// SetIOCBlocks makes the gateway's set exactly prefixes (empty removes
	// it); idempotent: the same set twice reports Changed=false.
	SetIOCBlocks(ctx context.Context, gw inventory.Gateway, prefixes []netip.Prefix) (wire.IOCBlockResult, error)
	// ObserveIOCBlocks reads the set back from the kernel.
	ObserveIOCBlocks(ctx context.Context, gw inventory.Gateway) (wire.IOCBlockResult, error)
}

// NewBlockIOC returns block_ioc: the gateway drops every packet from and
// to Request.Blocks (IPv4 and IPv6, input, output and forward), and
// nothing else of Warden's IoC set. Verify compares the digest of the set
// read back from the kernel with the digest of the set asked for. Undo
// empties the set.
func NewBlockIOC(b IOCBlocker) Action { return &blockIOC{b: b} }

var _ Undoer = (*blockIOC)(nil)

type blockIOC struct{ b IOCBlocker }

func (a *blockIOC) Name() string { return NameBlockIOC }

// want is the normalised set asked for and its digest.
func (a *blockIOC) want(req Request) ([]netip.Prefix, string, error) {
	ps, err := wire.NormalizePrefixes(req.Blocks)
	if err != nil {
		return nil, "", Terminal(fmt.Errorf("blocks: %w", err))
	}
	return ps, wire.PrefixDigest(ps), nil
}

func (a *blockIOC) Plan(ctx context.Context, req Request) (Change, error) {
	ps, digest, err := a.want(req)
	if err != nil {
		return Change{}, err
	}
	cur, err := a.b.ObserveIOCBlocks(ctx, req.Gateway)
	if err != nil {
		return Change{}, err
	}
	if cur.Enforced && cur.Digest == digest {
		return Change{Summary: fmt.Sprintf("%s already blocks the %d prefixes asked for", req.Gateway.ID, len(ps))}, nil
	}
	change := fmt.Sprintf("replace the blocked set at %s (%d prefixes in force) with %d prefixes, dropped both ways on input, output and forward, in one kernel transaction", req.Gateway.ID, cur.Count, len(ps))
	if len(ps) == 0 {
		change = fmt.Sprintf("remove the blocked set at %s (%d prefixes)", req.Gateway.ID, cur.Count)
	}
	c := Change{Summary: change, Changes: []string{change}}
	if !cur.Enforced && len(cur.Faults) > 0 {
		c.Warnings = append(c.Warnings, cur.Faults...)
	}
	return c, nil
}

func (a *blockIOC) Apply(ctx context.Context, req Request) (Result, error) {
	ps, _, err := a.want(req)
	if err != nil {
		return Result{}, err
	}
	res, err := a.b.SetIOCBlocks(ctx, req.Gateway, ps)
	if err != nil {
		return Result{}, err
	}
	summary := fmt.Sprintf("%s already blocked the %d prefixes", req.Gateway.ID, res.Count)
	if res.Changed {
		summary = fmt.Sprintf("%s blocks %d prefixes", req.Gateway.ID, res.Count)
	}
	return Result{Changed: res.Changed, Summary: summary, Details: blockDetails(res)}, nil
}

func (a *blockIOC) Verify(ctx context.Context, req Request) (Result, error) {
	ps, digest, err := a.want(req)
	if err != nil {
		return Result{}, err
	}
	cur, err := a.b.ObserveIOCBlocks(ctx, req.Gateway)
	if err != nil {
		return Result{}, err
	}
	if !cur.Enforced || cur.Digest != digest {
		return Result{Details: blockDetails(cur)}, fmt.Errorf("%w: %s holds %d blocked prefixes (digest %.12s, enforced %v), want %d (digest %.12s); faults: %v",
			ErrNotVerified, req.Gateway.ID, cur.Count, cur.Digest, cur.Enforced, len(ps), digest, cur.Faults)
	}
	return Result{Summary: fmt.Sprintf("%s drops the %d prefixes asked for (read back from the kernel)", req.Gateway.ID, cur.Count), Details: blockDetails(cur)}, nil
}

func (a *blockIOC) Undo(ctx context.Context, req Request) (Result, error) {
	res, err := a.b.SetIOCBlocks(ctx, req.Gateway, nil)
	if err != nil {
		return Result{}, err
	}
	return Result{Changed: res.Changed, Summary: "removed the blocked set at " + req.Gateway.ID, Details: blockDetails(res)}, nil
}

func blockDetails(r wire.IOCBlockResult) map[string]any {
	d := map[string]any{"backend": r.Backend, "count": r.Count, "digest": r.Digest, "enforced": r.Enforced}
	if len(r.Faults) > 0 {
		d["faults"] = r.Faults
	}
	return d
}

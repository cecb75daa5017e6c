package linux

// The controller's side of the agent's IoC blocklist (ioc_block): the set
// of remote prefixes block_ioc keeps blocked at a gateway, sent whole and
// read back as a count and a digest.

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

var (
	_ actions.IOCBlocker   = (*AgentPool)(nil)
	_ actions.Investigator = (*AgentPool)(nil)
)

// IOCBlock replaces the gateway's IoC blocklist (p.Set) or reads it back.
// Idempotent: the same set twice reports Changed=false.
func (c *AgentClient) IOCBlock(ctx context.Context, p wire.IOCBlockParams) (wire.IOCBlockResult, error) {
	return call[wire.IOCBlockResult](ctx, c, wire.KindIOCBlock, p)
}

// SetIOCBlocks implements actions.IOCBlocker: gw's agent makes the
// gateway's IoC blocklist exactly prefixes (normalised first, see
// wire.NormalizePrefixes; none removes it), in one kernel transaction, and
// reports the set read back from the kernel. Idempotent: the same set
// again reports Changed=false. It does not judge the read-back; block_ioc's
// Verify compares its digest with the digest of the set asked for.
//
// A gateway without an agent is an error wrapping actions.ErrUnsupported.
// Before anything is sent, an invalid prefix, a set larger than
// wire.MaxIOCPrefixes and a prefix overlapping one of gw's management
// networks are refused as terminal errors: a block must never cut the
// controller off from the gateway (the agent refuses those too, with its
// own list of what stays reachable).
func (p *AgentPool) SetIOCBlocks(ctx context.Context, gw inventory.Gateway, prefixes []netip.Prefix) (wire.IOCBlockResult, error) {
	if gw.Agent == "" {
		return wire.IOCBlockResult{}, fmt.Errorf("%s has no agent: %w", gw.ID, actions.ErrUnsupported)
	}
	params, err := iocSetParams(gw, prefixes)
	if err != nil {
		return wire.IOCBlockResult{}, actions.Terminal(fmt.Errorf("blocking IoC prefixes at %s: %w", gw.ID, err))
	}
	return through(p, gw, "blocking IoC prefixes at %s", func(c *AgentClient) (wire.IOCBlockResult, error) {
		return c.IOCBlock(ctx, params)
	})
}

// ObserveIOCBlocks implements actions.IOCBlocker: the gateway's IoC
// blocklist as its agent reads it back from the kernel. It changes
// nothing. A gateway without an agent is an error wrapping
// actions.ErrUnsupported.
func (p *AgentPool) ObserveIOCBlocks(ctx context.Context, gw inventory.Gateway) (wire.IOCBlockResult, error) {
	if gw.Agent == "" {
		return wire.IOCBlockResult{}, fmt.Errorf("%s has no agent: %w", gw.ID, actions.ErrUnsupported)
	}
	return through(p, gw, "reading the IoC blocklist of %s", func(c *AgentClient) (wire.IOCBlockResult, error) {
		return c.IOCBlock(ctx, wire.IOCBlockParams{})
	})
}

// iocSetParams normalises prefixes into the command that sets them at gw.
func iocSetParams(gw inventory.Gateway, prefixes []netip.Prefix) (wire.IOCBlockParams, error) {
	ps, err := wire.NormalizePrefixes(prefixes)
	if err != nil {
		return wire.IOCBlockParams{}, err
	}
	if len(ps) > wire.MaxIOCPrefixes {
		return wire.IOCBlockParams{}, fmt.Errorf("%d prefixes after merging, at most %d", len(ps), wire.MaxIOCPrefixes)
	}
	var mgmt []netip.Prefix
	for _, m := range gw.ManagementNetworks {
		if pm, err := netip.ParsePrefix(m); err == nil {
			mgmt = append(mgmt, wire.CanonicalPrefix(pm))
		}
	}
	out := wire.IOCBlockParams{Set: true, Prefixes: make([]string, len(ps))}
	for i, pr := range ps {
		for _, m := range mgmt {
			if pr.Overlaps(m) {
				return wire.IOCBlockParams{}, fmt.Errorf("refusing to block %s: it overlaps the management network %s", pr, m)
			}
		}
		out.Prefixes[i] = pr.String()
	}
	return out, nil
}

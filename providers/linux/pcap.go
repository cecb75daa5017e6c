package linux

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

var _ actions.PacketCapturer = (*AgentPool)(nil)

// PacketCapture implements actions.PacketCapturer: one packet_capture
// command on gw's agent.
func (p *AgentPool) PacketCapture(ctx context.Context, gw inventory.Gateway, params wire.PacketCaptureParams) (wire.PacketCaptureResult, error) {
	return through(p, gw, "capturing packets on %s", func(c *AgentClient) (wire.PacketCaptureResult, error) {
		return call[wire.PacketCaptureResult](ctx, c, wire.KindPacketCapture, params)
	})
}

// FetchCapture implements actions.PacketCapturer: it reads a finished
// capture's file in chunks and checks its size and SHA-256 against what
// the agent reported.
func (p *AgentPool) FetchCapture(ctx context.Context, gw inventory.Gateway, st wire.CaptureStatus) ([]byte, error) {
	if st.File == "" || st.SHA256 == "" {
		return nil, actions.Terminal(fmt.Errorf("capture %s on %s has no finished file", st.ID, gw.ID))
	}
	var out []byte
	for off := int64(0); ; {
		res, err := p.PacketCapture(ctx, gw, wire.PacketCaptureParams{Op: wire.CaptureOpRead, ID: st.ID, Offset: off, Length: wire.MaxCaptureChunk})
		if err != nil {
			return nil, err
		}
		out, off = append(out, res.Chunk...), off+int64(len(res.Chunk))
		if res.EOF || len(res.Chunk) == 0 {
			break
		}
		if off > st.Size {
			return nil, fmt.Errorf("capture %s on %s: more than the %d bytes reported", st.ID, gw.ID, st.Size)
		}
	}
	sum := sha256.Sum256(out)
	if got := hex.EncodeToString(sum[:]); got != st.SHA256 || int64(len(out)) != st.Size {
		return nil, fmt.Errorf("capture %s from %s: %d bytes hashing %s, the agent reported %d bytes hashing %s (damaged in transit?)", st.ID, gw.ID, len(out), got, st.Size, st.SHA256)
	}
	return out, nil
}

package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/internal/fault"
)

var _ agent.VICIRunner = (*VICI)(nil)

// maxRunEvents bounds the events one streamed command buffers.
const maxRunEvents = maxListedSAs

// Run runs one whitelisted VICI command and returns charon's reply and,
// for a streamed command, its events (collected by charon.CallStreamed, as
// for List). The whitelist is checked again here.
// Charon refusing the command (success=no) is a terminal error carrying
// its errmsg; no VICI socket is agent.ErrUnavailable. Whether Run is
// idempotent is the command's: reads are; load-shared of the same id
// replaces the key; unload-shared of an id charon does not hold succeeds
// (strongSwan 5.9.8); unload-conn and terminate of what is gone fail with
// charon's words ("connection 'x' not found", "no matching SAs to terminate found").
func (v *VICI) Run(ctx context.Context, p wire.VICIParams) (wire.VICIResult, error) {
	event, ok := wire.VICICommands()[p.Command]
	if !ok {
		return wire.VICIResult{}, fmt.Errorf("%w: command: %q is not allowed", agent.ErrInvalidParams, p.Command)
	}
	if p.Event != "" && p.Event != event {
		return wire.VICIResult{}, fmt.Errorf("%w: event: command %s does not stream %q", agent.ErrInvalidParams, p.Command, p.Event)
	}
	if err := wire.CheckVICIMessage(p.Command, p.Message); err != nil {
		return wire.VICIResult{}, fmt.Errorf("%w: %w", agent.ErrInvalidParams, err)
	}
	msg, err := charon.FromWire(p.Message)
	if err != nil {
		return wire.VICIResult{}, fmt.Errorf("%w: message: %w", agent.ErrInvalidParams, err)
	}
	s, err := v.session(ctx)
	if errors.Is(err, errNoDaemon) {
		return wire.VICIResult{}, fmt.Errorf("%w: %w", agent.ErrUnavailable, err)
	}
	if err != nil {
		return wire.VICIResult{}, err
	}
	defer s.Close()
	reply, events, err := charon.CallStreamed(ctx, s, p.Command, msg, event, maxRunEvents)
	if err != nil {
		if reply != nil {
			// Only charon's words: the request (which may hold a key) is
			// not quoted.
			errmsg, _ := reply.Get("errmsg").(string)
			if errmsg == "" {
				errmsg = "no error message"
			}
			return wire.VICIResult{}, fault.Terminal(fmt.Errorf("charon refused %s: %s", p.Command, errmsg))
		}
		return wire.VICIResult{}, fmt.Errorf("calling VICI %s: %w", p.Command, err)
	}
	res := wire.VICIResult{Reply: charon.ToWire(reply)}
	for _, ev := range events {
		res.Events = append(res.Events, charon.ToWire(ev))
	}
	if len(res.Events) >= maxRunEvents {
		// The buffer filled up: events may have been dropped.
		return wire.VICIResult{}, fmt.Errorf("running VICI %s: %d or more %s events, the most one command may return", p.Command, maxRunEvents, event)
	}
	return res, nil
}

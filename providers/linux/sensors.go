package linux

import (
	"context"
	"fmt"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// Sensors reads what gw's sensors watch and have learned (`warden sensors
// show`). It changes nothing. A gateway without an agent is an error
// wrapping actions.ErrUnsupported; an agent without sensors answers 501.
func (p *AgentPool) Sensors(ctx context.Context, gw inventory.Gateway) (wire.SensorsSummary, error) {
	if gw.Agent == "" {
		return wire.SensorsSummary{}, fmt.Errorf("%s has no agent: %w", gw.ID, actions.ErrUnsupported)
	}
	return through(p, gw, "reading the sensors of %s", func(c *AgentClient) (wire.SensorsSummary, error) {
		return call[wire.SensorsSummary](ctx, c, wire.KindSensors, struct{}{})
	})
}

package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/inventory"
)

// SensorsReader asks a gateway's agent what its sensors have learned
// (providers/linux's AgentPool.Sensors).
type SensorsReader func(ctx context.Context, gw inventory.Gateway) (wire.SensorsSummary, error)

func (s *Server) getSensors(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	gw, ok := s.opt.Controller.Inventory().Gateway(id)
	if !ok {
		s.fail(w, http.StatusNotFound, "", fmt.Errorf("gateway %q is not in the inventory", id))
		return
	}
	if s.opt.Sensors == nil {
		writeJSON(w, http.StatusServiceUnavailable, v1.Error{Error: "this controller reaches no agents (agents.cert_file)"})
		return
	}
	sum, err := s.opt.Sensors(r.Context(), gw)
	if errors.Is(err, actions.ErrUnsupported) {
		s.fail(w, http.StatusConflict, "", err)
		return
	}
	if err != nil {
		// The agent's own answer (unreachable, no sensors) is what a
		// person needs; it carries no secret.
		s.opt.Log.Warn("reading a gateway's sensors", "gateway", gw.ID, "err", err)
		writeJSON(w, http.StatusBadGateway, v1.Error{Error: err.Error()})
		return
	}
	out := v1.GatewaySensors{Gateway: gw.ID, Enabled: sum.Enabled, Learning: sum.Learning, LearningStarted: sum.LearningStarted,
		LearningEnds: sum.LearningEnds, AdminSources: []v1.AdminSource{}, Destinations: sum.Destinations,
		DestinationSample: sum.DestinationSample, Profiles: sum.Profiles, Queued: sum.Queued, Dropped: sum.Dropped}
	for _, a := range sum.AdminSources {
		out.AdminSources = append(out.AdminSources, v1.AdminSource(a))
	}
	writeJSON(w, http.StatusOK, out)
}

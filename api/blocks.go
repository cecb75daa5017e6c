package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/indicator"
)

// BlockV1 is a block in the API's shape.
func BlockV1(b controller.Block) v1.Block {
	out := v1.Block{Number: b.Number, Domains: b.Domains, Source: b.Source, Ref: b.Ref, Name: b.Name, Kind: string(b.Kind),
		TLP: b.TLP, Confidence: b.Confidence, State: string(b.State), Unsafe: b.Unsafe, RequestedBy: b.RequestedBy,
		DecidedBy: b.DecidedBy, Labels: b.Labels, CreatedAt: b.CreatedAt, ValidFrom: b.ValidFrom, ExpiresAt: b.ExpiresAt,
		UpdatedAt: b.UpdatedAt, Prefixes: make([]string, len(b.Prefixes))}
	for i, p := range b.Prefixes {
		out.Prefixes[i] = p.String()
	}
	return out
}

func (s *Server) listBlocks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 200
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			s.fail(w, http.StatusBadRequest, "", fmt.Errorf("limit: %q is not a count", l))
			return
		}
		limit = n
	}
	state := controller.BlockState(q.Get("state"))
	switch state {
	case "", controller.BlockPending, controller.BlockActive, controller.BlockWithdrawn, controller.BlockExpired, controller.BlockRefused, controller.BlockNoted:
	default:
		s.fail(w, http.StatusBadRequest, "", fmt.Errorf("state: unknown state %q", state))
		return
	}
	bs, err := s.opt.Controller.Blocks(r.Context(), controller.BlockFilter{State: state, Limit: limit})
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	out := v1.BlockList{Blocks: make([]v1.Block, len(bs)), Gateways: []v1.GatewayBlocks{}}
	for i, b := range bs {
		out.Blocks[i] = BlockV1(b)
	}
	for _, g := range s.opt.Controller.GatewayBlockStatus() {
		out.Gateways = append(out.Gateways, v1.GatewayBlocks(g))
	}
	writeJSON(w, http.StatusOK, out)
}

// blockNumber reads the path's block number, answering 400 when it is not
// one.
func (s *Server) blockNumber(w http.ResponseWriter, r *http.Request) (int64, bool) {
	n, err := strconv.ParseInt(r.PathValue("number"), 10, 64)
	if err != nil || n <= 0 {
		s.fail(w, http.StatusBadRequest, "", fmt.Errorf("number: %q is not a block number", r.PathValue("number")))
		return 0, false
	}
	return n, true
}

func (s *Server) getBlock(w http.ResponseWriter, r *http.Request) {
	n, ok := s.blockNumber(w, r)
	if !ok {
		return
	}
	b, err := s.opt.Controller.Block(r.Context(), n)
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, BlockV1(b))
}

func (s *Server) postBlock(w http.ResponseWriter, r *http.Request) {
	var req v1.BlockRequest
	if !s.decodeSmall(w, r, &req) {
		return
	}
	br := controller.BlockRequest{Source: "api", Ref: req.Ref, Name: req.Name, Kind: indicator.Kind(req.Kind), ValidUntil: req.ValidUntil}
	if br.Kind == "" {
		br.Kind = indicator.C2Beacon
	}
	if len(req.Prefixes) == 0 {
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "prefixes", Reason: "name at least one address or CIDR"})
		return
	}
	for i, p := range req.Prefixes {
		pr, err := wire.ParseAllowedIP(strings.TrimSpace(p))
		if err != nil {
			s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: fmt.Sprintf("prefixes[%d]", i), Reason: err.Error()})
			return
		}
		br.Prefixes = append(br.Prefixes, pr)
	}
	if dry := r.URL.Query().Get("dry_run"); dry == "true" || dry == "1" {
		planned, err := s.opt.Controller.PlanBlocks(r.Context(), actor(r), []controller.BlockRequest{br})
		if err != nil {
			s.fail(w, statusFor(err), "", err)
			return
		}
		writeJSON(w, http.StatusOK, BlockV1(planned[0]))
		return
	}
	out, err := s.opt.Controller.RequestBlocks(r.Context(), actor(r), []controller.BlockRequest{br})
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	status := http.StatusCreated
	if !out[0].Created {
		status = http.StatusOK
	}
	writeJSON(w, status, BlockV1(out[0].Block))
}

// blockDecider is the controller's ApproveBlock, RefuseBlock or
// WithdrawBlock.
type blockDecider func(ctx context.Context, actor string, number int64, reason string) (controller.Block, error)

// decideBlock serves approve, refuse and withdraw with the decider pick
// names on the server's controller.
func (s *Server) decideBlock(pick func(*controller.Controller) blockDecider) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, ok := s.blockNumber(w, r)
		if !ok {
			return
		}
		var d v1.BlockDecision
		if !s.decodeSmall(w, r, &d) {
			return
		}
		b, err := pick(s.opt.Controller)(r.Context(), actor(r), n, d.Reason)
		if err != nil {
			s.fail(w, statusFor(err), "", err)
			return
		}
		writeJSON(w, http.StatusOK, BlockV1(b))
	}
}

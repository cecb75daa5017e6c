package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// NameCapture starts or stops a bounded packet capture on the gateway's
// interfaces; stopping files every finished capture as evidence.
const NameCapture = "capture"

// PacketCapturer starts, stops and reads packet captures through a
// gateway's agent (providers/linux's AgentPool).
type PacketCapturer interface {
	GatewayAgent
	PacketCapture(ctx context.Context, gw inventory.Gateway, p wire.PacketCaptureParams) (wire.PacketCaptureResult, error)
	// FetchCapture reads a finished capture's file and checks it against
	// its reported size and SHA-256.
	FetchCapture(ctx context.Context, gw inventory.Gateway, st wire.CaptureStatus) ([]byte, error)
}

// CaptureSettings are the configuration's defaults for a capture.
type CaptureSettings struct {
	Duration time.Duration
	MaxBytes int64
	Filter   string
}

// NewPacketCapture returns capture: param op start (with duration,
// max_bytes, filter, defaulting to set) or stop. Stopping files every
// finished capture of the gateway not filed yet (pcapng, SHA-256 checked
// on arrival, custody) under the step's incident, or its run when it has
// none.
func NewPacketCapture(c PacketCapturer, sink CollectionSink, set CaptureSettings) Action {
	return &packetCaptureAction{c: c, sink: sink, set: set}
}

type packetCaptureAction struct {
	c    PacketCapturer
	sink CollectionSink
	set  CaptureSettings
}

func (a *packetCaptureAction) Name() string { return NameCapture }

// spec is the step's capture: its params over the defaults.
func (a *packetCaptureAction) spec(req Request) (wire.CaptureSpec, error) {
	s := wire.CaptureSpec{Duration: wire.Duration(a.set.Duration), MaxBytes: a.set.MaxBytes, Filter: a.set.Filter, Reason: "warden capture"}
	if v := req.Params["duration"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return s, Terminal(fmt.Errorf("capture: param duration %q: %w", v, err))
		}
		s.Duration = wire.Duration(d)
	}
	if v := req.Params["max_bytes"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, Terminal(fmt.Errorf("capture: param max_bytes %q is not a number of bytes", v))
		}
		s.MaxBytes = n
	}
	if v, ok := req.Params["filter"]; ok {
		s.Filter = v
	}
	if err := s.Validate(); err != nil {
		return s, Terminal(fmt.Errorf("capture: %w", err))
	}
	return s, nil
}

func (a *packetCaptureAction) op(req Request) (string, error) {
	switch op := req.Params["op"]; op {
	case wire.CaptureOpStart, wire.CaptureOpStop:
		return op, nil
	default:
		return "", Terminal(fmt.Errorf("capture: param op %q is neither start nor stop", op))
	}
}

func (a *packetCaptureAction) Plan(_ context.Context, req Request) (Change, error) {
	if err := a.c.CheckAgent(req.Gateway); err != nil {
		return Change{}, err
	}
	op, err := a.op(req)
	if err != nil {
		return Change{}, err
	}
	if op == wire.CaptureOpStop {
		return Change{Summary: "stop the packet capture on " + req.Gateway.ID,
			Changes: []string{"file every finished capture of " + req.Gateway.ID + " as pcapng evidence (SHA-256, custody)"}}, nil
	}
	s, err := a.spec(req)
	if err != nil {
		return Change{}, err
	}
	return Change{Summary: fmt.Sprintf("capture packets on every interface of %s for %s, keeping the newest %d bytes", req.Gateway.ID, time.Duration(s.Duration), s.MaxBytes),
		Changes: []string{"filter: " + orEverything(s.Filter)}}, nil
}

func orEverything(f string) string {
	if strings.TrimSpace(f) == "" {
		return "everything"
	}
	return f
}

// Apply starts (idempotent: a capture already running is left as it is)
// or stops and files. Filing is once per capture: applied again, nothing
// is fetched anew.
func (a *packetCaptureAction) Apply(ctx context.Context, req Request) (Result, error) {
	if err := a.c.CheckAgent(req.Gateway); err != nil {
		return Result{}, err
	}
	op, err := a.op(req)
	if err != nil {
		return Result{}, err
	}
	if op == wire.CaptureOpStart {
		s, err := a.spec(req)
		if err != nil {
			return Result{}, err
		}
		res, err := a.c.PacketCapture(ctx, req.Gateway, wire.PacketCaptureParams{Op: wire.CaptureOpStart, Spec: &s})
		if err != nil {
			return Result{}, err
		}
		if res.Capture == nil {
			return Result{}, errors.New("the agent started no capture")
		}
		line := fmt.Sprintf("packet capture %s running on %s", res.Capture.ID, req.Gateway.ID)
		if !res.Changed {
			line = fmt.Sprintf("packet capture %s was already running on %s", res.Capture.ID, req.Gateway.ID)
		}
		return Result{Changed: res.Changed, Summary: line, Details: map[string]any{"capture": res.Capture}}, nil
	}
	stopped, err := a.c.PacketCapture(ctx, req.Gateway, wire.PacketCaptureParams{Op: wire.CaptureOpStop})
	if err != nil {
		return Result{}, err
	}
	filed, err := a.fileFinished(ctx, req)
	if err != nil {
		return Result{}, err
	}
	return Result{Changed: stopped.Changed || len(filed) > 0, Summary: fmt.Sprintf("packet capture stopped on %s; %d capture(s) filed", req.Gateway.ID, len(filed)),
		Details: map[string]any{"filed": filed}}, nil
}

// incidentOf is where a step files: its incident, or its run.
func incidentOf(req Request) string {
	if req.Incident != "" {
		return req.Incident
	}
	run, _, _ := strings.Cut(req.IdempotencyKey, "/")
	return run
}

// fileFinished fetches and files each finished capture not filed yet.
func (a *packetCaptureAction) fileFinished(ctx context.Context, req Request) ([]StoredArtefact, error) {
	list, err := a.c.PacketCapture(ctx, req.Gateway, wire.PacketCaptureParams{Op: wire.CaptureOpStatus})
	if err != nil {
		return nil, err
	}
	var out []StoredArtefact
	for _, st := range list.Captures {
		if st.Running || st.SHA256 == "" {
			continue
		}
		key := "pcap/" + req.Gateway.ID + "/" + st.ID
		if _, done, err := a.sink.Captured(ctx, incidentOf(req), key); err != nil {
			return out, err
		} else if done {
			continue
		}
		data, err := a.c.FetchCapture(ctx, req.Gateway, st)
		if err != nil {
			return out, err
		}
		manifest, _ := json.Marshal(st)
		stored, err := a.sink.StoreCollected(ctx, incidentOf(req), req.Gateway, key, NameCapture, "volatile", wire.CaptureResult{
			Artefacts: []wire.Artefact{{Name: st.ID + ".pcapng", MediaType: "application/vnd.tcpdump.pcap", SHA256: st.SHA256, Size: st.Size,
				Collected: st.Stopped, Content: data, Source: fmt.Sprintf("packet capture on %s (%s; filter %s; %d packets kept, %d dropped by the ring)",
					strings.Join(st.Interfaces, ","), st.Spec.Reason, orEverything(st.Spec.Filter), st.Packets, st.Dropped)}},
			Manifest: manifest})
		if err != nil {
			return out, fmt.Errorf("filing capture %s: %w", st.ID, err)
		}
		out = append(out, stored...)
	}
	return out, nil
}

// Verify reads back: a running capture after a start; after a stop, no
// capture running and every finished one filed, its hash checked again.
func (a *packetCaptureAction) Verify(ctx context.Context, req Request) (Result, error) {
	op, err := a.op(req)
	if err != nil {
		return Result{}, err
	}
	list, err := a.c.PacketCapture(ctx, req.Gateway, wire.PacketCaptureParams{Op: wire.CaptureOpStatus})
	if err != nil {
		return Result{}, err
	}
	running := ""
	for _, st := range list.Captures {
		if st.Running {
			running = st.ID
		}
	}
	if op == wire.CaptureOpStart {
		if running == "" {
			return Result{}, fmt.Errorf("%w: no packet capture runs on %s", ErrNotVerified, req.Gateway.ID)
		}
		return Result{Summary: "packet capture " + running + " is running"}, nil
	}
	if running != "" {
		return Result{}, fmt.Errorf("%w: packet capture %s still runs on %s", ErrNotVerified, running, req.Gateway.ID)
	}
	n := 0
	for _, st := range list.Captures {
		if st.SHA256 == "" {
			continue
		}
		if err := a.sink.VerifyStored(ctx, incidentOf(req), "pcap/"+req.Gateway.ID+"/"+st.ID); err != nil {
			return Result{}, fmt.Errorf("%w: %v", ErrNotVerified, err)
		}
		n++
	}
	return Result{Summary: fmt.Sprintf("%d packet capture(s) filed and verified", n)}, nil
}

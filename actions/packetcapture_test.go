package actions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// fakeCapturer is an agent with one capture slot and finished files.
type fakeCapturer struct {
	running *wire.CaptureStatus
	done    []wire.CaptureStatus
	files   map[string][]byte
	fetched int
}

func (f *fakeCapturer) CheckAgent(inventory.Gateway) error { return nil }

func (f *fakeCapturer) PacketCapture(_ context.Context, _ inventory.Gateway, p wire.PacketCaptureParams) (wire.PacketCaptureResult, error) {
	switch p.Op {
	case wire.CaptureOpStart:
		if f.running != nil {
			return wire.PacketCaptureResult{Capture: f.running}, nil
		}
		f.running = &wire.CaptureStatus{ID: "cap-1", Spec: *p.Spec, Running: true}
		return wire.PacketCaptureResult{Capture: f.running, Changed: true}, nil
	case wire.CaptureOpStop:
		if f.running == nil {
			return wire.PacketCaptureResult{}, nil
		}
		st := *f.running
		data := []byte("pcapng bytes of " + st.ID)
		sum := sha256.Sum256(data)
		st.Running, st.File, st.Size, st.SHA256 = false, st.ID+".pcapng", int64(len(data)), hex.EncodeToString(sum[:])
		f.files[st.ID] = data
		f.done, f.running = append(f.done, st), nil
		return wire.PacketCaptureResult{Capture: &st, Changed: true}, nil
	case wire.CaptureOpStatus:
		out := append([]wire.CaptureStatus{}, f.done...)
		if f.running != nil {
			out = append(out, *f.running)
		}
		return wire.PacketCaptureResult{Captures: out}, nil
	}
	return wire.PacketCaptureResult{}, errors.New("unexpected op")
}

func (f *fakeCapturer) FetchCapture(_ context.Context, _ inventory.Gateway, st wire.CaptureStatus) ([]byte, error) {
	f.fetched++
	return f.files[st.ID], nil
}

func TestPacketCaptureStartsStopsAndFilesOnce(t *testing.T) {
	agent := &fakeCapturer{files: map[string][]byte{}}
	sink := &memorySink{files: map[string]map[string][]byte{}, done: map[string]bool{}}
	a := NewPacketCapture(agent, sink, CaptureSettings{Duration: 10 * time.Minute, MaxBytes: 64 << 20})
	gw := inventory.Gateway{ID: "gw-hq", Agent: "https://192.0.2.1:8443"}
	start := Request{IdempotencyKey: "run-1/0/capture", Gateway: gw, Params: map[string]string{"op": "start", "filter": "host 203.0.113.9"}}
	for i, wantChanged := range []bool{true, false} {
		res, err := a.Apply(t.Context(), start)
		if err != nil || res.Changed != wantChanged {
			t.Fatalf("start %d: %+v %v", i, res, err)
		}
	}
	if agent.running.Spec.Filter != "host 203.0.113.9" || time.Duration(agent.running.Spec.Duration) != 10*time.Minute {
		t.Errorf("spec %+v", agent.running.Spec)
	}
	if _, err := a.Verify(t.Context(), start); err != nil {
		t.Errorf("verify start: %v", err)
	}
	stop := Request{IdempotencyKey: "run-2/0/capture", Incident: "inc-1", Gateway: gw, Params: map[string]string{"op": "stop"}}
	res, err := a.Apply(t.Context(), stop)
	if err != nil || !res.Changed || len(res.Details["filed"].([]StoredArtefact)) != 1 {
		t.Fatalf("stop: %+v %v", res, err)
	}
	if got := sink.files["pcap/gw-hq/cap-1"]["cap-1.pcapng"]; string(got) != "pcapng bytes of cap-1" {
		t.Errorf("filed %q", got)
	}
	if _, err := a.Verify(t.Context(), stop); err != nil {
		t.Errorf("verify stop: %v", err)
	}
	again, err := a.Apply(t.Context(), stop)
	if err != nil || again.Changed || agent.fetched != 1 {
		t.Errorf("stop again: %+v %v (fetched %d times)", again, err, agent.fetched)
	}
	for name, p := range map[string]map[string]string{
		"no op":      {},
		"bad filter": {"op": "start", "filter": "host nowhere"},
		"tiny":       {"op": "start", "max_bytes": "10"},
	} {
		if _, err := a.Apply(t.Context(), Request{Gateway: gw, Params: p}); !IsTerminal(err) {
			t.Errorf("%s: %v, want terminal", name, err)
		}
	}
}

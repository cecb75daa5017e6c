package agent

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// An isolate that asks for a packet capture starts one once the
// quarantine is in force, naming the generation; repeating the isolate
// starts none; an agent without the seam keeps the quarantine and warns.
func TestIsolateStartsThePacketCapture(t *testing.T) {
	h := newHarness(t)
	var started []wire.CaptureSpec
	h.pcap = func(_ context.Context, p wire.PacketCaptureParams) (wire.PacketCaptureResult, error) {
		if p.Op == wire.CaptureOpStart {
			started = append(started, *p.Spec)
		}
		return wire.PacketCaptureResult{Capture: &wire.CaptureStatus{ID: "cap-1", Running: true}, Changed: true}, nil
	}
	h.start()
	p := labIsolate
	p.Capture = &wire.CaptureSpec{Duration: wire.Duration(10 * time.Minute), MaxBytes: 1 << 20, Filter: "not port 8443"}
	first := h.isolate(p)
	if !first.Changed || len(started) != 1 || started[0].Reason != "quarantine generation 1" || started[0].Filter != "not port 8443" {
		t.Fatalf("isolate %+v started %+v", first, started)
	}
	if h.fw.applies()[0].Management == nil {
		t.Fatal("the capture started before the quarantine")
	}
	if again := h.isolate(p); again.Changed || len(started) != 1 {
		t.Errorf("a repeated isolate started another capture: %+v", started)
	}

	bad := labIsolate
	bad.Capture = &wire.CaptureSpec{Duration: wire.Duration(time.Minute), MaxBytes: 1 << 20, Filter: "host nowhere"}
	if code, body := h.send(h.command(wire.KindIsolate, bad)); code != http.StatusBadRequest || !strings.Contains(string(body), "capture: filter") {
		t.Errorf("a bad capture spec: %d %s", code, body)
	}
}

func TestIsolateWithoutPacketCaptureWarns(t *testing.T) {
	h := newHarness(t)
	h.start()
	p := labIsolate
	p.Capture = &wire.CaptureSpec{Duration: wire.Duration(time.Minute), MaxBytes: 1 << 20}
	res := h.isolate(p)
	if !res.Changed || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "packet capture") {
		t.Errorf("isolate %+v, want the quarantine with a warning", res)
	}
	if code, _ := h.send(h.command(wire.KindPacketCapture, wire.PacketCaptureParams{Op: wire.CaptureOpStatus})); code != http.StatusNotImplemented {
		t.Errorf("packet_capture without the seam: %d, want 501", code)
	}
	if code, _ := h.send(h.command(wire.KindInvestigate, wire.InvestigateParams{Since: time.Now().Add(-time.Hour), Until: time.Now()})); code != http.StatusNotImplemented {
		t.Errorf("investigate without the seam: %d, want 501", code)
	}
}

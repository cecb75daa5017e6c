package agent

import (
	"log/slog"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
)

// BenchmarkCommand measures one command's round trip through the agent
// over mutual TLS on loopback (kept-alive connection) with fake seams: the
// agent's own overhead, nonce journal fsync included. "isolate+release"
// is two commands per iteration, each writing the record (fsync, rename,
// directory fsync).
func BenchmarkCommand(b *testing.B) {
	tests := map[string]func(h *harness){
		"observe": func(h *harness) { h.do(wire.KindObserve, nil, nil) },
		"isolate+release": func(h *harness) {
			h.do(wire.KindIsolate, labIsolate, nil)
			h.do(wire.KindRelease, nil, nil)
		},
		// The path to a confirmed quarantine, then back.
		"isolate+confirm+release": func(h *harness) {
			var res wire.IsolateResult
			h.do(wire.KindIsolate, labIsolate, &res)
			h.do(wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation, Check: true}, nil)
			h.do(wire.KindRelease, nil, nil)
		},
	}
	for name, step := range tests {
		b.Run(name, func(b *testing.B) {
			h := newHarness(b)
			h.log = slog.New(slog.DiscardHandler)
			h.realTime = true
			h.start()
			for b.Loop() {
				step(h)
			}
		})
	}
}

package api_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/warden-ir/warden/journal"
)

// BenchmarkIntakeJournaled is BenchmarkIntakeHTTP (sync=full, a
// detector's token) with the intake journal, in process: the 202 follows
// the journal's fsync. decider=on runs the decider beside the load, as
// `warden serve` does; decider=off measures the 202 path alone (the
// journal and the HTTP handling), the backlog left for later.
func BenchmarkIntakeJournaled(b *testing.B) {
	for _, decide := range []bool{true, false} {
		name := "decider=on"
		if !decide {
			name = "decider=off"
		}
		b.Run(name, func(b *testing.B) {
			s := newStack(b, nil, nil)
			j, err := journal.Open(filepath.Join(b.TempDir(), "intake"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = j.Close() })
			if err := s.d.Controller.UseJournal(j); err != nil {
				b.Fatal(err)
			}
			if decide {
				ctx, cancel := context.WithCancel(b.Context())
				done := make(chan error, 1)
				go func() { done <- s.d.Controller.RunDecider(ctx) }()
				b.Cleanup(func() { cancel(); <-done })
			}
			token := s.addUser(b, "bench-detector", "intake").Token
			benchIntakeRate(b, []*stack{s}, 1, token)
		})
	}
}

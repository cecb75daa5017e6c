package api_test

import "testing"

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
			s := newJournaledStack(b, decide)
			token := s.addUser(b, "bench-detector", "intake").Token
			benchIntakeRate(b, []*stack{s}, 1, token)
		})
	}
}

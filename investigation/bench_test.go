package investigation

import (
	"fmt"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// BenchmarkBuild measures building a timeline from 20,000 events and
// 5,000 connection records per gateway, three gateways: the size one
// busy day of records reaches.
func BenchmarkBuild(b *testing.B) {
	in := intrusion()
	for i := range in.Collections[:2] {
		r := &in.Collections[i].Result
		for n := range 20000 {
			r.Events = append(r.Events, wire.TimelineEvent{Time: t0.Add(time.Duration(n) * time.Second), Source: wire.SourceJournal,
				Action: wire.ActionLoginFailed, Actor: "root", Object: "sshd", Address: fmt.Sprintf("198.51.100.%d", n%250), Message: "Failed password", Artefact: "journal.jsonl", Line: n})
		}
		for n := range 5000 {
			r.Flows = append(r.Flows, wire.Flow{Proto: "tcp", Src: hqAddr, Dst: fmt.Sprintf("198.51.%d.%d", n/250, n%250), SrcPort: uint16(n), DstPort: 443,
				OrigBytes: 1000, Accounted: true, OrigPackets: 3, Start: t0.Add(time.Duration(n) * time.Second), SeenAt: t0.Add(time.Hour)})
		}
	}
	b.ResetTimer()
	for b.Loop() {
		tl := Build(in)
		if len(tl.Events) < 40000 {
			b.Fatal("events lost")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/timeline")
}

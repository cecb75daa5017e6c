package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/demo"
)

// BenchmarkAgentIdleMemory measures the memory of a real agent process idle
// on a gateway (its namespace in the lab), connected to a real `warden
// serve`: the gateway's own binary (`warden-agent`, what
// deploy/warden-agent.service runs) and the controller binary's `warden
// agent` alias, each without sensors and with every watcher on at its
// default settings (authentication on a log file, connections, volume,
// health, configuration; the learning period the default, so learning).
// After the agent answers and a settling time, each iteration waits a
// second and reads VmRSS from /proc; it reports the largest (rss-max-MiB),
// the median, and VmHWM at the end (the peak since the start).
// Target: ≤ 30 MB idle.
//
//	go test -run '^$' -bench BenchmarkAgentIdleMemory -benchtime 10x ./e2e/
func BenchmarkAgentIdleMemory(b *testing.B) {
	agentBin := buildWardenAgent(b)
	for _, v := range []struct {
		name, prefix string
		bin          string
		sensors      func(*sensorsBenchLab) string
	}{
		{"warden-agent/sensors-off", "e2am0", agentBin, nil},
		{"warden-agent/sensors-on", "e2am1", agentBin, idleSensorsFile},
		{"warden-agent-alias/sensors-off", "e2am2", "", nil},
		{"warden-agent-alias/sensors-on", "e2am3", "", idleSensorsFile},
	} {
		b.Run(v.name, func(b *testing.B) {
			l := newSensorsBenchLab(b, sensorsBenchOptions{Prefix: v.prefix, Site: "osaka",
				Policies: demo.LinuxPolicySet(actions.NameIsolate), Sensors: v.sensors, AgentBinary: v.bin})
			if v.sensors != nil {
				// The sensors answer (through the agent) once they run.
				l.api.call(b, http.MethodGet, "/v1/gateways/"+l.gw+"/sensors", nil, http.StatusOK, nil)
			}
			pid := l.agents[l.site.Name].cmd.Process.Pid
			time.Sleep(5 * time.Second) // settle: start-up allocations, the first ticks
			var rss []time.Duration     // bytes, kept in a Duration for pct
			for b.Loop() {
				time.Sleep(time.Second)
				r, _ := procMemory(b, pid)
				rss = append(rss, time.Duration(r))
			}
			_, hwm := procMemory(b, pid)
			mib := func(d time.Duration) float64 { return float64(d) / (1 << 20) }
			b.ReportMetric(mib(pct(rss, 100)), "rss-max-MiB")
			b.ReportMetric(mib(pct(rss, 50)), "rss-p50-MiB")
			b.ReportMetric(float64(hwm)/(1<<20), "hwm-MiB")
		})
	}
}

// idleSensorsFile is loadSensorsFile at the default learning period.
func idleSensorsFile(l *sensorsBenchLab) string {
	return strings.Replace(loadSensorsFile(l), "learning:\n  period: 1ms\n", "", 1)
}

package e2e

import (
	"fmt"
	"os"
	"runtime"
	"testing"
)

// TestServeSchedulesOnTwiceTheCPUs: warden serve on a machine of fewer
// than 8 CPUs runs twice as many Ps as CPUs (cmd/warden serveProcs), as
// its /metrics shows; GOMAXPROCS in its environment still decides.
func TestServeSchedulesOnTwiceTheCPUs(t *testing.T) {
	e := newCrashEnv(t, buildWarden(t))
	cpus := runtime.NumCPU()
	type procsCase struct {
		env  string
		want int
	}
	cases := []procsCase{{env: "GOMAXPROCS=3", want: 3}}
	// The default is checked where this process runs on the runtime's
	// own: no GOMAXPROCS set, no CPU quota below the CPUs.
	if _, set := os.LookupEnv("GOMAXPROCS"); !set && runtime.GOMAXPROCS(0) == cpus && cpus < 8 {
		cases = append(cases, procsCase{want: 2 * cpus})
	} else {
		t.Logf("GOMAXPROCS set, a CPU quota or %d CPUs: only the override is checked", cpus)
	}
	base := e.env
	for _, tc := range cases {
		e.env = base
		if tc.env != "" {
			e.env = append(append([]string(nil), base...), tc.env)
		}
		p := e.serve()
		got, err := metricOf(e.api.base, "go_sched_gomaxprocs_threads")
		if err != nil {
			t.Fatal(err)
		}
		p.stop(t)
		if got != fmt.Sprint(tc.want) {
			t.Errorf("serve with %q in its environment runs %s Ps on %d CPUs, want %d", tc.env, got, cpus, tc.want)
		}
	}
}

package main

import (
	"log/slog"
	"os"
	"runtime"
)

// procsMachine is the number of CPUs from which warden serve keeps the
// Go runtime's default number of Ps (GOMAXPROCS).
const procsMachine = 8

// serveProcs is how many Ps (goroutines running at once) warden serve
// runs with: twice the CPUs on a machine of fewer than procsMachine, else
// the runtime's default (current). GOMAXPROCS in the environment (envSet)
// decides alone, and so does a CPU quota: the runtime's default is below
// the CPUs only when a cgroup limits the process, and more Ps than a
// quota allows get the process throttled for the rest of each period.
//
// Why more Ps than CPUs: a P runs one goroutine at a time, and the
// runtime preempts a goroutine only after 10 ms of CPU. On 2 CPUs, one P
// busy deciding a batch of journaled indicators (SQLite is CPU-bound Go
// code) leaves a single P for every 202 waiting on the journal's fsync;
// with twice as many, the kernel shares the CPUs among them at its finer
// grain. On 2 CPUs BenchmarkIntakeServe accepted about a third more
// indicators per second with a third lower 202 p99 (every indicator still
// decided within a second of the load's end); the time to contain and a
// C2 alert's latency during a storm did not change.
func serveProcs(envSet bool, current, cpus int) int {
	if envSet || current < cpus || cpus >= procsMachine {
		return current
	}
	return 2 * cpus
}

// setServeProcs applies serveProcs to this process and logs what it chose.
func setServeProcs(log *slog.Logger) {
	_, envSet := os.LookupEnv("GOMAXPROCS")
	current, cpus := runtime.GOMAXPROCS(0), runtime.NumCPU()
	n := serveProcs(envSet, current, cpus)
	if n != current {
		runtime.GOMAXPROCS(n)
	}
	log.Debug("go scheduler", "gomaxprocs", n, "cpus", cpus, "from_environment", envSet)
}

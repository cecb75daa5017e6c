package main

import "testing"

func TestServeProcs(t *testing.T) {
	for name, tc := range map[string]struct {
		envSet        bool
		current, cpus int
		want          int
	}{
		"2 CPUs":                       {current: 2, cpus: 2, want: 4},
		"1 CPU":                        {current: 1, cpus: 1, want: 2},
		"7 CPUs":                       {current: 7, cpus: 7, want: 14},
		"8 CPUs keep the default":      {current: 8, cpus: 8, want: 8},
		"64 CPUs keep the default":     {current: 64, cpus: 64, want: 64},
		"GOMAXPROCS set decides":       {envSet: true, current: 3, cpus: 2, want: 3},
		"GOMAXPROCS set to the CPUs":   {envSet: true, current: 2, cpus: 2, want: 2},
		"a CPU quota below the CPUs":   {current: 1, cpus: 4, want: 1},
		"a quota of 2 of 4 CPUs stays": {current: 2, cpus: 4, want: 2},
	} {
		t.Run(name, func(t *testing.T) {
			if got := serveProcs(tc.envSet, tc.current, tc.cpus); got != tc.want {
				t.Fatalf("serveProcs(%v, %d, %d) = %d, want %d", tc.envSet, tc.current, tc.cpus, got, tc.want)
			}
		})
	}
}

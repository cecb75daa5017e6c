package demo

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestLinuxPreflight(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/x", nil }
	missing := func(tool string) func(string) (string, error) {
		return func(name string) (string, error) {
			if name == tool {
				return "", errors.New("not found")
			}
			return "/usr/bin/" + name, nil
		}
	}
	netnsOK := func() error { return nil }
	tests := map[string]struct {
		euid     int
		lookPath func(string) (string, error)
		netns    func() error
		want     string // substring of the reason; "" means it can run
	}{
		"root with everything": {0, found, netnsOK, ""},
		"not root":             {1000, found, netnsOK, "needs root"},
		"no ip":                {0, missing("ip"), netnsOK, "the ip command"},
		"no ping":              {0, missing("ping"), netnsOK, "the ping command"},
		"no namespaces":        {0, found, func() error { return errors.New("operation not permitted") }, "network namespaces are not available"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := linuxPreflight(tc.euid, tc.lookPath, tc.netns)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("linuxPreflight = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRunLinux runs the Linux demo for real (as root) and checks what it
// reports: the C2 session cut, every probe as containment requires, the
// management path kept, and traffic back after release. Without root it
// checks that the demo skips with a reason instead of failing.
func TestRunLinux(t *testing.T) {
	res, err := RunLinux(t.Context(), LinuxOptions{Prefix: "dlx", Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("RunLinux: %v", err)
	}
	if os.Geteuid() != 0 {
		if !res.Skipped || !strings.Contains(res.SkipReason, "root") {
			t.Fatalf("not root: skipped %t, reason %q", res.Skipped, res.SkipReason)
		}
		return
	}
	if res.Skipped {
		t.Skip(res.SkipReason)
	}
	var out strings.Builder
	if err := res.Summary(&out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())

	if res.RunState != "succeeded" || len(res.Steps) != 3 {
		t.Fatalf("run %s, steps %+v", res.RunState, res.Steps)
	}
	for _, s := range res.Steps {
		if s.Status != "succeeded" {
			t.Errorf("step %s: %s %s", s.Name, s.Status, s.Error)
		}
	}
	if !res.C2SessionAliveBefore || res.C2SessionAliveAfter {
		t.Errorf("C2 session alive before %t, after %t", res.C2SessionAliveBefore, res.C2SessionAliveAfter)
	}
	if res.KilledFlows < 2 {
		t.Errorf("killed %d flows, want the two C2 sessions at least", res.KilledFlows)
	}
	if !res.RulesEnforced || !res.ManagementReachable {
		t.Errorf("rules enforced %t, management reachable %t", res.RulesEnforced, res.ManagementReachable)
	}
	families := map[string]bool{}
	for _, p := range res.Probes {
		if p.Reachable != p.Want {
			t.Errorf("probe %s %s %s/%s: reachable %t, want %t", p.Phase, p.Path, p.Proto, p.Family, p.Reachable, p.Want)
		}
		if p.Phase == "isolated" && !p.Want {
			families[p.Family+"/"+p.Proto] = true
		}
	}
	if len(families) != 6 {
		t.Errorf("isolated-phase cuts covered %v, want tcp, udp and icmp over ipv4 and ipv6", families)
	}
	if !res.ProbesAsWanted || !res.Verified || res.TimeToContainMS <= 0 {
		t.Errorf("probes as wanted %t, verified %t, time to contain %.1f ms", res.ProbesAsWanted, res.Verified, res.TimeToContainMS)
	}
	if res.ReleaseRunState != "succeeded" || !res.TrafficRestored {
		t.Errorf("release %s, traffic restored %t", res.ReleaseRunState, res.TrafficRestored)
	}
}

package demo

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestLinuxPreflight(t *testing.T) {
	ok := func() error { return nil }
	fails := func(err error) func() error { return func() error { return err } }
	noNFT := &missingFeature{what: "nftables with connection tracking is not available", fix: "modprobe nf_tables nft_ct", err: errors.New("no such file or directory")}
	tests := map[string]struct {
		euid  int
		probe func() error
		want  []string // substrings of the reason; none means it can run
	}{
		"root, lab possible":  {0, ok, nil},
		"not root":            {1000, ok, []string{"needs root", "sudo"}},
		"nftables missing":    {0, fails(noNFT), []string{"nftables", "no such file", "modprobe"}},
		"probe fails plainly": {0, fails(errors.New("operation not permitted")), []string{"operation not permitted"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			probed := false
			got := linuxPreflight(tc.euid, func() error { probed = true; return tc.probe() })
			if tc.euid != 0 && probed {
				t.Error("probed the kernel without root")
			}
			if (len(tc.want) == 0) != (got == "") {
				t.Fatalf("linuxPreflight = %q, want reasons %q", got, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("linuxPreflight = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

// TestProbeLab checks the real probe: as root on a machine that can build
// the lab it finds nothing missing, whatever binaries PATH holds.
func TestProbeLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("probing namespaces, nftables and raw sockets needs root")
	}
	t.Setenv("PATH", t.TempDir())
	if err := probeLab(); err != nil {
		var m *missingFeature
		if !errors.As(err, &m) || m.fix == "" {
			t.Fatalf("probeLab = %v: want a *missingFeature saying how to fix it", err)
		}
		t.Skip(err)
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

	if res.RunState != "succeeded" || len(res.Steps) != 4 {
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
	// Each person acted with their own token, and the controller says so.
	if res.ReleaseRequestedBy != "user:"+linuxResponder || res.ReleaseOverriddenBy != "user:"+linuxResponder || res.ReleaseApprovedBy != "user:"+linuxApprover {
		t.Errorf("release requested by %q, overridden by %q, approved by %q", res.ReleaseRequestedBy, res.ReleaseOverriddenBy, res.ReleaseApprovedBy)
	}
	if !strings.Contains(res.SelfApprovalRefused, linuxResponder) {
		t.Errorf("the responder's own approval: %q, want a refusal naming them", res.SelfApprovalRefused)
	}
	if len(res.People) != 4 || !strings.Contains(out.String(), "user:"+linuxApprover) {
		t.Errorf("people %+v: want the admin, the detector, the responder and the approver in the summary", res.People)
	}
}

package linux

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/inventory"
)

// patchAgent is an agent whose patch and baseline seams are scripted: the
// first install reports installed (a second finds nothing pending, as
// apt would), a read-back reports passed, and every call is remembered.
type patchAgent struct {
	mu        sync.Mutex
	installed []wire.PatchInstalled
	passed    bool
	patches   []wire.PatchParams
	baselines []wire.BaselineParams
}

func (a *patchAgent) patch(_ context.Context, p wire.PatchParams) (wire.PatchResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.patches = append(a.patches, p)
	if p.VerifyOnly {
		return wire.PatchResult{Passed: a.passed, Checks: []wire.PatchCheck{{Name: "services", Passed: a.passed, Observed: "down"}}}, nil
	}
	res := wire.PatchResult{Changed: len(a.installed) > 0, Installed: a.installed, Passed: a.passed}
	a.installed = nil
	return res, nil
}

func (a *patchAgent) baseline(_ context.Context, p wire.BaselineParams) (wire.BaselineResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.baselines = append(a.baselines, p)
	return wire.BaselineResult{Passed: true, Report: []byte(`{}`), Sanction: &wire.ManifestSanction{
		Rerecorded: []wire.ManifestChange{{Path: "/usr/sbin/sshd", Package: "openssh-server:amd64", OldSHA256: "aa", NewSHA256: "bb"}}}}, nil
}

// poolFor serves a over mutual TLS and returns a pool and gateway for it.
func (a *patchAgent) serve(t *testing.T) (*AgentPool, inventory.Gateway) {
	t.Helper()
	pki, url := agenttest.Serve(t, agent.Deps{Firewall: &agentFakeFirewall{}, Patch: a.patch, Baseline: a.baseline}, nil)
	pool := NewAgentPool(AgentTLS{CertFile: filepath.Join(pki, agent.ControllerCertFile), KeyFile: filepath.Join(pki, agent.ControllerKeyFile),
		CAFile: filepath.Join(pki, agent.CAFile)}, nil)
	t.Cleanup(pool.Close)
	return pool, inventory.Gateway{ID: "gw-osaka", Agent: url, ManagementNetworks: []string{agenttest.Management}}
}

// TestPatchVerifySanctionsOnlyAfterVerification runs Apply then Verify
// and checks what Verify asks the agent: the read-back first, the manifest
// re-record only when it passed, for the packages the patch upgraded.
func TestPatchVerifySanctionsOnlyAfterVerification(t *testing.T) {
	libssl := []wire.PatchInstalled{{Name: "libssl3:amd64", Before: "3.0.11-1", After: "3.0.15-1"}}
	tests := map[string]struct {
		params     map[string]string
		installed  []wire.PatchInstalled
		passed     bool
		skipApply  bool // a resumed step: Verify without this process's Apply
		applies    int  // Apply attempts before Verify (default 1)
		wantErr    error
		wantVerify []wire.PatchTarget // what the read-back checks; nil = no read-back
		wantSanct  []string           // nil = no re-record asked
	}{
		"named package and a dependency it pulled in": {
			params: map[string]string{"packages": "openssh-server=1:9.2p1-2+deb12u5"}, passed: true,
			installed:  []wire.PatchInstalled{{Name: "openssh-client:amd64", Before: "1", After: "2"}, {Name: "openssh-server:amd64", Before: "1", After: "2"}},
			wantVerify: []wire.PatchTarget{{Name: "openssh-server", Version: "1:9.2p1-2+deb12u5"}},
			wantSanct:  []string{"openssh-client:amd64", "openssh-server", "openssh-server:amd64"},
		},
		"resumed step knows the named targets": {
			params: map[string]string{"packages": "sudo=1.9.13p3-1+deb12u1"}, passed: true, skipApply: true,
			wantVerify: []wire.PatchTarget{{Name: "sudo", Version: "1.9.13p3-1+deb12u1"}},
			wantSanct:  []string{"sudo"},
		},
		"security updates are read back at what was installed": {
			params: map[string]string{"security": "true"}, passed: true, installed: libssl,
			wantVerify: []wire.PatchTarget{{Name: "libssl3:amd64", Version: "3.0.15-1"}},
			wantSanct:  []string{"libssl3:amd64"},
		},
		"security step whose Apply was retried": {
			params: map[string]string{"security": "true"}, passed: true, installed: libssl, applies: 2,
			wantVerify: []wire.PatchTarget{{Name: "libssl3:amd64", Version: "3.0.15-1"}},
			wantSanct:  []string{"libssl3:amd64"},
		},
		"resumed security step re-records nothing": {
			params: map[string]string{"security": "true"}, passed: true, skipApply: true,
		},
		"failed read-back re-records nothing": {
			params: map[string]string{"packages": "openssh-server"}, passed: false, installed: libssl,
			wantErr:    actions.ErrNotVerified,
			wantVerify: []wire.PatchTarget{{Name: "openssh-server"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ag := &patchAgent{installed: tc.installed, passed: tc.passed}
			pool, gw := ag.serve(t)
			act := actions.NewPatch(pool)
			req := actions.Request{IdempotencyKey: "run-1/0/patch", Gateway: gw, Params: tc.params}
			applies := max(tc.applies, 1)
			if tc.skipApply {
				applies = 0
			}
			for range applies {
				if _, err := act.Apply(t.Context(), req); err != nil {
					t.Fatal(err)
				}
			}
			res, err := act.Verify(t.Context(), req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error %v, want %v", err, tc.wantErr)
			}
			var verify []wire.PatchParams
			for _, p := range ag.patches {
				if p.VerifyOnly {
					verify = append(verify, p)
				}
			}
			switch {
			case tc.wantVerify == nil && len(verify) != 0:
				t.Errorf("read back %+v, want none", verify)
			case tc.wantVerify != nil && (len(verify) != 1 || !slices.Equal(verify[0].Packages, tc.wantVerify)):
				t.Errorf("read back %+v, want %+v", verify, tc.wantVerify)
			}
			var sanct [][]string
			for _, b := range ag.baselines {
				sanct = append(sanct, b.SanctionPackages)
			}
			if tc.wantSanct == nil && len(sanct) != 0 {
				t.Errorf("re-record asked for %v after a failed or unknown verification", sanct)
			}
			if tc.wantSanct != nil {
				if len(sanct) != 1 || !slices.Equal(sanct[0], tc.wantSanct) {
					t.Errorf("re-record asked for %v, want %v", sanct, tc.wantSanct)
				}
				if s, _ := res.Details["manifest"].(*wire.ManifestSanction); s == nil || len(s.Rerecorded) != 1 || s.Rerecorded[0].NewSHA256 != "bb" {
					t.Errorf("step result manifest %+v", res.Details["manifest"])
				}
			}
		})
	}
}

func TestAgentLacksField(t *testing.T) {
	tests := map[string]struct {
		err  error
		want bool
	}{
		"older agent": {fmt.Errorf("running baseline on agent: %w", &AgentError{Status: http.StatusBadRequest,
			Message: `decoding parameters: json: unknown field "sanction_packages"`}), true},
		"other field":      {&AgentError{Status: http.StatusBadRequest, Message: `json: unknown field "remediate"`}, false},
		"server error":     {&AgentError{Status: http.StatusInternalServerError, Message: `unknown field "sanction_packages"`}, false},
		"not an agent one": {errors.New(`unknown field "sanction_packages"`), false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := agentLacksField(tc.err, "sanction_packages"); got != tc.want {
				t.Errorf("agentLacksField(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	// The real agent's answer to a field it does not know, as an older
	// agent answers sanction_packages.
	pool, gw := (&patchAgent{}).serve(t)
	c, err := pool.For(gw)
	if err != nil {
		t.Fatal(err)
	}
	err = c.send(t.Context(), wire.KindBaseline, map[string]any{"field_from_the_future": true}, &wire.BaselineResult{})
	if !agentLacksField(err, "field_from_the_future") {
		t.Errorf("the agent's answer %v is not recognised as an unknown field", err)
	}
}

package patching

import (
	"context"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/internal/fault"
)

// Check is one verification with its evidence.
type Check struct {
	// Name says what was checked ("version openssl", "services").
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	// Expected and Observed are the evidence ("≥ 1.0-2", "1.0-1").
	Expected string `json:"expected,omitempty"`
	Observed string `json:"observed,omitempty"`
	// Message explains a failure.
	Message string `json:"message,omitempty"`
}

// VerifyHooks are the checks beyond package versions that the caller
// wires: each returns nil when the gateway is healthy in that respect. A
// nil hook is not run and adds no check.
type VerifyHooks struct {
	// Services checks that the gateway's services are up again.
	Services func(ctx context.Context) error
	// Tunnels checks that the gateway's tunnels are re-established.
	Tunnels func(ctx context.Context) error
	// Baseline checks that the hardened baseline still passes.
	Baseline func(ctx context.Context) error
}

// Verify reads the dpkg database under root and checks that every target
// is installed at or above its version (installed at all for a target
// without one), then runs the hooks in the order services, tunnels,
// baseline. It returns every check; the error wraps fault.ErrNotVerified
// when any failed, and is another error when the database could not be
// read. Verify changes nothing.
func Verify(ctx context.Context, root string, targets []Target, hooks VerifyHooks) ([]Check, error) {
	_, db, err := readDpkgUnder(root)
	if err != nil {
		return nil, err
	}
	var checks []Check
	for _, t := range targets {
		checks = append(checks, versionCheck(db, t))
	}
	for _, h := range []struct {
		name string
		fn   func(context.Context) error
	}{{"services", hooks.Services}, {"tunnels", hooks.Tunnels}, {"baseline", hooks.Baseline}} {
		if h.fn == nil {
			continue
		}
		c := Check{Name: h.name, Passed: true}
		if err := h.fn(ctx); err != nil {
			c.Passed, c.Message = false, redact(err.Error())
		}
		checks = append(checks, c)
	}
	var failed []string
	for _, c := range checks {
		if !c.Passed {
			failed = append(failed, c.Name+": "+c.Message)
		}
	}
	if len(failed) > 0 {
		return checks, fmt.Errorf("verifying patch: %s: %w", strings.Join(failed, "; "), fault.ErrNotVerified)
	}
	return checks, nil
}

func versionCheck(db dpkgDB, t Target) Check {
	c := Check{Name: "version " + t.Name, Expected: "installed"}
	if t.Version != "" {
		c.Expected = "≥ " + t.Version
	}
	inst := db.instances(t.Name)
	if len(inst) == 0 {
		c.Observed, c.Message = "not installed", "not installed"
		return c
	}
	var seen, low []string
	for _, p := range inst {
		seen = append(seen, p.id()+" "+p.Version)
		if t.Version != "" && baseline.CompareDebianVersions(p.Version, t.Version) < 0 {
			low = append(low, fmt.Sprintf("%s %s < %s", p.id(), p.Version, t.Version))
		}
	}
	c.Observed = strings.Join(seen, ", ")
	if len(low) > 0 {
		c.Message = "below target: " + strings.Join(low, ", ")
		return c
	}
	c.Passed = true
	return c
}

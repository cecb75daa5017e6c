package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoController: the client and the v1 types depend on no other
// package of the module, so a program that speaks the API links no
// controller, store or provider.
func TestLinksNoController(t *testing.T) {
	const module = "github.com/warden-ir/warden"
	allowed := map[string]bool{module + "/api/client": true, module + "/api/v1": true}
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/api/client").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if (dep == module || strings.HasPrefix(dep, module+"/")) && !allowed[dep] {
			t.Errorf("api/client depends on %s", dep)
		}
	}
}

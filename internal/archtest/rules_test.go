package archtest

import (
	"bytes"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/warden-ir/warden"

// edge is one direct import, by full import path.
type edge struct{ from, to string }

func (e edge) String() string { return short(e.from) + " → " + short(e.to) }

// rule forbids some direct imports between packages of the module. Rules
// look at the code that is built into binaries: imports of _test.go files
// are not checked.
type rule struct {
	name    string
	forbids func(from, to string) bool
}

// rules are checked in order; an edge is reported under the first rule it
// breaks.
var rules = []rule{
	{"the gateway agent must not import a provider (gateway code lives under agent/)", func(from, to string) bool {
		return under(from, "agent") && provider(to) != ""
	}},
	{"a provider must not import another provider", func(from, to string) bool {
		return provider(from) != "" && provider(to) != "" && provider(from) != provider(to)
	}},
	{"a provider must not import the controller", func(from, to string) bool {
		return provider(from) != "" && under(to, "controller")
	}},
	{"the controller must not import a concrete provider (composition roots wire them)", func(from, to string) bool {
		return under(from, "controller") && provider(to) != ""
	}},
	{"the catalogue must not import a provider, rotation or notify (actions work over interfaces declared in actions/)", func(from, to string) bool {
		return under(from, "actions") && (provider(to) != "" || under(to, "rotation") || under(to, "notify"))
	}},
	{"the controller must not import the evidence ledger, rotation or notify (it sees them only through the catalogue)", func(from, to string) bool {
		return under(from, "controller") && (under(to, "rotation") || under(to, "notify") || under(to, "evidence"))
	}},
	{"nothing imports a command (cmd/ holds flags and output only)", func(_, to string) bool {
		return under(to, "cmd")
	}},
	{"cacao translates runbooks only (it works over the runbook model and the catalogue's names, never a controller, store, API or provider)", func(from, to string) bool {
		return under(from, "cacao") && (under(to, "controller") || under(to, "store") || under(to, "api") || provider(to) != "")
	}},
	{"auth imports no other Warden package (it knows identities, not runs, stores or the API)", func(from, to string) bool {
		return under(from, "auth") && strings.HasPrefix(to, module+"/") && !under(to, "auth")
	}},
	{"the console acts through the API: it imports no provider, rotation or notify", func(from, to string) bool {
		return under(from, "console") && (provider(to) != "" || under(to, "rotation") || under(to, "notify"))
	}},
}

// violationsBeingMoved lists violations allowed while code moves to where
// the rules want it, as exact package pairs (use edge{module + "/agent/host",
// module + "/providers/linux"}). The test fails on any violation not listed
// here and on any entry that no longer happens, so the list only shrinks.
// It is empty now that the gateway code lives under agent/ and the
// providers no longer import each other; keep it empty.
var violationsBeingMoved = []edge{}

// agentBinary is the gateway agent's command; agentForbids names what its
// dependency graph must not contain (a module path prefix or a package and
// everything under it), and why.
const agentBinary = module + "/cmd/warden-agent"

var agentForbids = []struct{ prefix, why string }{
	{"github.com/vmware/govmomi", "the vSphere client and simulator are the controller's"},
	{module + "/netlab", "the network lab is for tests and the demo"},
	{module + "/demo", "the demo runs from the warden binary"},
	{"testing", "test code does not ship to gateways"},
	{module + "/actions", "the catalogue is the controller's (the agent shares only internal/fault)"},
	{module + "/controller", "the controller does not ship to gateways"},
	{module + "/store", "the controller's store does not ship to gateways"},
	{module + "/api", "the controller's API does not ship to gateways"},
}

// TestImportRules fails on a forbidden direct import anywhere in the module
// that is not one of violationsBeingMoved, and on an entry of that list
// that no longer happens.
func TestImportRules(t *testing.T) {
	graph := goList(t, "-e", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...")
	imports := parseGraph(graph)
	var found []edge
	for _, from := range slices.Sorted(maps.Keys(imports)) {
		for _, to := range imports[from] {
			e := edge{from, to}
			name, bad := broken(e)
			if !bad {
				continue
			}
			found = append(found, e)
			if !slices.Contains(violationsBeingMoved, e) {
				t.Errorf("forbidden import %s: %s", e, name)
			}
		}
	}
	for _, e := range violationsBeingMoved {
		if !slices.Contains(found, e) {
			t.Errorf("violationsBeingMoved lists %s, which no longer happens: remove it from internal/archtest", e)
		}
	}
	if n := len(violationsBeingMoved); n > 0 {
		t.Logf("%d violation(s) still allowed while code moves (violationsBeingMoved):", n)
		for _, e := range violationsBeingMoved {
			t.Logf("  %s", e)
		}
	}
}

// TestAgentBinaryDependencies fails when the warden-agent binary links the
// vSphere client or simulator, the lab, the demo or `testing`.
func TestAgentBinaryDependencies(t *testing.T) {
	imports := parseGraph(goList(t, "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, agentBinary))
	if len(imports) == 0 {
		t.Fatalf("go list -deps %s listed nothing", agentBinary)
	}
	for _, dep := range slices.Sorted(maps.Keys(imports)) {
		for _, f := range agentForbids {
			if dep == f.prefix || strings.HasPrefix(dep, f.prefix+"/") {
				t.Errorf("%s depends on %s: %s; through %s", short(agentBinary), dep, f.why, strings.Join(importChain(imports, agentBinary, dep), " → "))
			}
		}
	}
}

// parseGraph reads lines of "package import import ..." into a map from
// each package to its direct imports.
func parseGraph(out string) map[string][]string {
	g := make(map[string][]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if fields := strings.Fields(line); len(fields) > 0 {
			g[fields[0]] = fields[1:]
		}
	}
	return g
}

// importChain is a shortest chain of imports from one package to another
// (breadth first), shortened for reading.
func importChain(g map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append([]string{short(p)}, chain...)
			}
			return chain
		}
		for _, next := range g[p] {
			if _, seen := prev[next]; !seen {
				prev[next] = p
				queue = append(queue, next)
			}
		}
	}
	return []string{short(from), "?", short(to)}
}

// TestRulesClassify pins what each rule means on a few edges, so a change
// to a rule's predicate shows up here first.
func TestRulesClassify(t *testing.T) {
	tests := map[string]struct {
		from, to string
		want     bool
	}{
		"agent to a provider":               {"agent/host", "providers/linux", true},
		"agent root to a provider":          {"agent", "providers/strongswan", true},
		"agent to agent":                    {"agent/agentd", "agent/host", false},
		"provider to another provider":      {"providers/linux", "providers/wireguard", true},
		"provider to its own sub-package":   {"providers/vsphere/vsim", "providers/vsphere", false},
		"provider sub-package to another":   {"providers/wireguard/wgtest", "providers/linux", true},
		"provider to the controller":        {"providers/vsphere", "controller", true},
		"provider to actions":               {"providers/vsphere", "actions", false},
		"controller to a provider":          {"controller", "providers/vsphere", true},
		"composition root to a provider":    {"daemon", "providers/vsphere", false},
		"anything to a command":             {"demo", "cmd/warden", true},
		"console to a provider":             {"console", "providers/vsphere", true},
		"console to notify":                 {"console", "notify", true},
		"console to the API client":         {"console", "api/client", false},
		"a look-alike of agent":             {"agentx", "providers/linux", false},
		"a look-alike of providers":         {"controller", "providersx/linux", false},
		"a provider to the agent wire type": {"providers/linux", "agent/wire", false},
		"auth to the store":                 {"auth", "store", true},
		"auth to its test issuer":           {"auth", "auth/authtest", false},
		"the API to auth":                   {"api", "auth", false},
		"cacao to the controller":           {"cacao", "controller", true},
		"cacao to policies":                 {"cacao", "policies", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, got := broken(edge{module + "/" + tc.from, module + "/" + tc.to})
			if got != tc.want {
				t.Errorf("%s → %s forbidden = %v, want %v", tc.from, tc.to, got, tc.want)
			}
		})
	}
}

// broken returns the first rule e breaks.
func broken(e edge) (string, bool) {
	for _, r := range rules {
		if r.forbids(e.from, e.to) {
			return r.name, true
		}
	}
	return "", false
}

// under reports whether pkg is the module's package dir or below it.
func under(pkg, dir string) bool {
	p := module + "/" + dir
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

// provider names the provider pkg belongs to (providers/vsphere/vsim
// belongs to vsphere), or "" outside providers/.
func provider(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, module+"/providers/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func short(pkg string) string { return strings.TrimPrefix(pkg, module+"/") }

// goList runs `go list` with args (no shell) and returns its output.
func goList(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", append([]string{"list"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

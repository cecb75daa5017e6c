package yamlnode_test

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/internal/yamlnode"
)

func TestSequence(t *testing.T) {
	src := "base: &b\n  - x\n  - y\nchecks:\n  - id: a\n  - id: b\nrunbooks: *b\nscalar: 1\n"
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	lines := func(ns []*yaml.Node) []int {
		var out []int
		for _, n := range ns {
			out = append(out, n.Line)
		}
		return out
	}
	for key, want := range map[string][]int{"checks": {5, 6}, "runbooks": {2, 3}, "scalar": nil, "missing": nil} {
		got := lines(yamlnode.Sequence(&doc, key))
		if len(got) != len(want) || (len(want) > 0 && (got[0] != want[0] || got[1] != want[1])) {
			t.Errorf("%s: lines %v, want %v", key, got, want)
		}
	}
	var list yaml.Node
	if err := yaml.Unmarshal([]byte("- a\n"), &list); err != nil {
		t.Fatal(err)
	}
	if got := yamlnode.Sequence(&list, "checks"); got != nil {
		t.Errorf("a top-level sequence has no keys: %v", got)
	}
}

package policies

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/internal/yamlnode"
)

// defaultFiles holds the default policies, runbooks and their fixtures.
//
//go:embed default/*.yaml default/tests/*.yaml
var defaultFiles embed.FS

// DefaultFS returns the embedded default policy directory: policy and
// runbook files at its root, fixtures under tests/. `warden policy lint` and
// the demo copy it; LoadFS(DefaultFS(), ".") is what Default loads.
func DefaultFS() fs.FS {
	sub, err := fs.Sub(defaultFiles, "default")
	if err != nil {
		// fs.Sub only fails on an invalid path, and "default" is a constant.
		panic(fmt.Sprintf("opening embedded default policies: %v", err))
	}
	return sub
}

// Default loads and compiles the embedded default policies and runbooks.
func Default() (*Set, error) {
	return load(DefaultFS(), ".", func(name string) string { return path.Join("default", name) })
}

// LoadDir loads every *.yaml and *.yml file directly inside dir (not in
// subdirectories: tests/ holds fixtures). Each file may hold policies,
// runbooks or both. Every problem found is reported, joined, each naming
// its file and line. Callers should also run Lint with their action
// catalogue: loading checks that each file is well formed and each match
// expression compiles, Lint checks that the set is safe and coherent.
func LoadDir(dir string) (*Set, error) {
	return load(os.DirFS(dir), ".", func(name string) string { return filepath.Join(dir, name) })
}

// LoadFS is LoadDir on a file system; dir is a slash-separated path in fsys.
func LoadFS(fsys fs.FS, dir string) (*Set, error) {
	return load(fsys, dir, func(name string) string { return path.Join(dir, name) })
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// yamlFile is one YAML file of a directory: its name for messages, and its
// content or why it could not be read.
type yamlFile struct {
	name string
	data []byte
	err  error
}

// readYAMLFiles reads every *.yaml and *.yml file directly inside dir of
// fsys, in name order, naming each with display. The error is for a
// directory that cannot be listed, named as what; a file that cannot be
// read carries its own error.
func readYAMLFiles(fsys fs.FS, dir, what string, display func(name string) string) ([]yamlFile, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", what, display(""), err)
	}
	var files []yamlFile
	for _, e := range entries {
		if e.IsDir() || !isYAML(e.Name()) {
			continue
		}
		f := yamlFile{name: display(e.Name())}
		if f.data, err = fs.ReadFile(fsys, path.Join(dir, e.Name())); err != nil {
			f.err = fmt.Errorf("reading %s: %w", f.name, err)
		}
		files = append(files, f)
	}
	return files, nil
}

func load(fsys fs.FS, dir string, display func(name string) string) (*Set, error) {
	files, err := readYAMLFiles(fsys, dir, "policy directory", display)
	if err != nil {
		return nil, err
	}
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	s := &Set{Runbooks: map[string]*Runbook{}, rt: newRuntime(env.CELTypeAdapter())}
	var errs []error
	policyAt := map[string]*Policy{}
	for _, f := range files {
		if f.err != nil {
			errs = append(errs, f.err)
			continue
		}
		pols, rbs, err := parseFile(f.name, f.data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range pols {
			if err := validatePolicy(p); err != nil {
				errs = append(errs, err)
				continue
			}
			if prev, dup := policyAt[p.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: duplicate policy name, first defined at %s:%d", p.where(), prev.File, prev.Line))
				continue
			}
			policyAt[p.Name] = p
			if err := compilePolicy(env, p); err != nil {
				errs = append(errs, err)
				continue
			}
			s.Policies = append(s.Policies, p)
		}
		for _, r := range rbs {
			if err := validateRunbook(r); err != nil {
				errs = append(errs, err)
				continue
			}
			if prev, dup := s.Runbooks[r.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: duplicate runbook name, first defined at %s:%d", r.where(), prev.File, prev.Line))
				continue
			}
			s.Runbooks[r.Name] = r
		}
	}
	if len(files) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("reading policy directory %s: no *.yaml or *.yml files", display("")))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Files were read in name order and policies appended in file order, so
	// a stable sort by priority keeps ties in file, then document, order.
	sort.SliceStable(s.Policies, func(i, j int) bool { return s.Policies[i].Priority > s.Policies[j].Priority })
	s.noteReads()
	return s, nil
}

// parseFile decodes one file's policies and runbooks, each told its line.
func parseFile(file string, data []byte) ([]*Policy, []*Runbook, error) {
	var pols []*Policy
	var rbs []*Runbook
	err := decodeDocs(file, data, func(doc *fileDoc, n *yaml.Node) error {
		if err := locate(file, n, "policies", doc.Policies, func(p *Policy, line int) { p.File, p.Line = file, line }); err != nil {
			return err
		}
		if err := locate(file, n, "runbooks", doc.Runbooks, func(r *Runbook, line int) { r.File, r.Line = file, line }); err != nil {
			return err
		}
		pols = append(pols, doc.Policies...)
		rbs = append(rbs, doc.Runbooks...)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return pols, rbs, nil
}

// decodeDocs decodes every document of file strictly into a T, then walks
// each a second time as a node tree, to learn the lines of its entries
// (yaml.v3 drops strictness inside custom unmarshalers, so the two cannot
// be one pass), and calls each with both, in order, stopping at its first
// error.
func decodeDocs[T any](file string, data []byte, each func(doc *T, n *yaml.Node) error) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var docs []T
	for {
		var doc T
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return yamlError(file, err)
		}
		docs = append(docs, doc)
	}
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	for i := range docs {
		var n yaml.Node
		if err := nodes.Decode(&n); err != nil {
			return yamlError(file, err)
		}
		if err := each(&docs[i], &n); err != nil {
			return err
		}
	}
	return nil
}

// locate tells each entry of the top-level sequence key its line in file,
// refusing an empty entry.
func locate[T any](file string, doc *yaml.Node, key string, entries []*T, at func(e *T, line int)) error {
	lines := itemLines(doc, key)
	for i, e := range entries {
		if e == nil {
			return fmt.Errorf("%s:%d: %s[%d]: empty entry", file, lineAt(lines, i), key, i)
		}
		at(e, lineAt(lines, i))
	}
	return nil
}

// itemLines returns the line of each item of the top-level sequence key.
func itemLines(doc *yaml.Node, key string) []int {
	items := yamlnode.Sequence(doc, key)
	lines := make([]int, len(items))
	for j, item := range items {
		lines[j] = item.Line
	}
	return lines
}

func lineAt(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return 0
}

// yamlError rewrites yaml.v3's messages as "file:line: what", naming the
// unknown key and where it was found.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			errs = append(errs, errors.New(rewriteYAMLMessage(file, msg)))
		}
		return errors.Join(errs...)
	}
	return errors.New(rewriteYAMLMessage(file, err.Error()))
}

// rewriteYAMLMessage turns "line 7: field foo not found in type
// policies.Policy" into "file:7: unknown key "foo" in a policy (want …)".
func rewriteYAMLMessage(file, msg string) string {
	rest := strings.TrimPrefix(msg, "yaml: ")
	rest, ok := strings.CutPrefix(rest, "line ")
	if !ok {
		return fmt.Sprintf("%s: %s", file, msg)
	}
	line, what, ok := strings.Cut(rest, ": ")
	if !ok || strings.Trim(line, "0123456789") != "" {
		return fmt.Sprintf("%s: %s", file, msg)
	}
	if f, ok := strings.CutPrefix(what, "field "); ok {
		if key, typ, ok := strings.Cut(f, " not found in type "); ok {
			return fmt.Sprintf("%s:%s: unknown key %q in %s", file, line, key, friendlyType(typ))
		}
	}
	return fmt.Sprintf("%s:%s: %s", file, line, what)
}

func friendlyType(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "policies.fileDoc":
		return "the top level (want policies, runbooks)"
	case "policies.Policy":
		return "a policy (want name, description, priority, match, runbook, approval, guards)"
	case "policies.Guards":
		return "guards (want min_confidence, budget)"
	case "policies.Runbook":
		return "a runbook (want name, description, steps)"
	case "policies.Step":
		return "a runbook step (want name, action, params, optional)"
	case "policies.fixtureFile":
		return "the top level (want tests)"
	case "policies.fixtureDoc":
		return "a test (want name, indicator, gateway, site, context, expect)"
	case "policies.fixtureIndicator":
		return "indicator"
	case "policies.fixtureContext":
		return "context (want now, posture, open_incidents, recent_indicators)"
	case "policies.fixtureExpect":
		return "expect (want policy, runbook, approval, no_match)"
	}
	return goType
}

// validName accepts names that are safe in CLI arguments, URLs and audit
// lines: letters, digits, '.', '_' and '-', not starting with punctuation.
func validName(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// nameProblems returns what is wrong with the name of a policy or runbook:
// nothing, or one problem.
func nameProblems(name string) []string {
	switch {
	case name == "":
		return []string{"name: is required"}
	case !validName(name):
		return []string{"name: use letters, digits, '.', '_' and '-' only"}
	}
	return nil
}

func validatePolicy(p *Policy) error {
	errs := nameProblems(p.Name)
	if strings.TrimSpace(p.Match) == "" {
		errs = append(errs, "match: is required (write 'true' to match everything)")
	}
	if p.Runbook == "" {
		errs = append(errs, "runbook: is required")
	}
	switch {
	case p.Approval == "":
		errs = append(errs, "approval: is required (auto or required)")
	case !p.Approval.Valid():
		errs = append(errs, fmt.Sprintf("approval: unknown value %q (auto or required)", p.Approval))
	}
	if p.Guards.MinConfidence < 0 || p.Guards.MinConfidence > 1 {
		errs = append(errs, fmt.Sprintf("guards.min_confidence: %v is outside 0..1", p.Guards.MinConfidence))
	}
	if p.Guards.RepeatAfter < 0 {
		errs = append(errs, fmt.Sprintf("guards.repeat_after: %s is negative", time.Duration(p.Guards.RepeatAfter)))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", p.where(), strings.Join(errs, "; "))
}

func validateRunbook(r *Runbook) error {
	errs := nameProblems(r.Name)
	for i := range r.Steps {
		st := &r.Steps[i]
		if st.Action == "" {
			errs = append(errs, fmt.Sprintf("steps[%d].action: is required", i))
			continue
		}
		if st.Name == "" {
			st.Name = st.Action
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", r.where(), strings.Join(errs, "; "))
}

// compilePolicy parses and type-checks the match expression and plans its
// program. Errors give the position inside the expression as line:column.
func compilePolicy(env *cel.Env, p *Policy) error {
	ast, iss := env.Compile(p.Match)
	if iss != nil && iss.Err() != nil {
		errs := make([]error, 0, len(iss.Errors()))
		for _, e := range iss.Errors() {
			errs = append(errs, fmt.Errorf("%s: match %d:%d: %s", p.where(), e.Location.Line(), e.Location.Column()+1, e.Message))
		}
		return errors.Join(errs...)
	}
	if out := ast.OutputType(); !out.IsExactType(cel.BoolType) {
		// The whole expression has the wrong type, so point at its start.
		return fmt.Errorf("%s: match 1:1: expression has type %s, a match must be bool",
			p.where(), cel.FormatCELType(out))
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return fmt.Errorf("%s: match: planning the program: %w", p.where(), err)
	}
	canonical, err := cel.AstToString(ast)
	if err != nil {
		canonical = strings.TrimSpace(p.Match)
	}
	p.prog = prog
	p.canonical = canonical
	p.alwaysTrue = canonical == "true"
	return nil
}

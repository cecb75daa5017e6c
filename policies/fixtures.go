package policies

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// Fixture is one test case for a policy set: an input and the decision it
// must produce.
type Fixture struct {
	Name      string
	Indicator indicator.Indicator
	Gateway   inventory.Gateway
	Site      inventory.Site
	Context   Context
	Expect    struct {
		Policy, Runbook string
		Approval        Approval
		NoMatch         bool
	}
	// File and Line locate the fixture for messages.
	File string
	Line int
}

// FixtureResult is the outcome of running one fixture.
type FixtureResult struct {
	File, Name string
	Line       int
	Passed     bool
	Got        Decision
	// Message says what differed, with every policy's explanation; empty
	// when the fixture passed.
	Message string
}

// fixtureFile is the strict YAML shape of a fixture file.
type fixtureFile struct {
	Tests []fixtureDoc `yaml:"tests"`
}

type fixtureDoc struct {
	Name      string            `yaml:"name"`
	Indicator fixtureIndicator  `yaml:"indicator"`
	Gateway   inventory.Gateway `yaml:"gateway"`
	Site      inventory.Site    `yaml:"site"`
	Context   fixtureContext    `yaml:"context"`
	Expect    fixtureExpect     `yaml:"expect"`
}

// fixtureIndicator mirrors indicator.Indicator with YAML names; the core type
// only carries JSON tags.
type fixtureIndicator struct {
	ID          string                `yaml:"id"`
	Kind        indicator.Kind        `yaml:"kind"`
	Gateway     string                `yaml:"gateway"`
	Severity    indicator.Severity    `yaml:"severity"`
	Confidence  float64               `yaml:"confidence"`
	Observables indicator.Observables `yaml:"observables"`
	ObservedAt  string                `yaml:"observed_at"`
	Source      string                `yaml:"source"`
	Summary     string                `yaml:"summary"`
	Status      string                `yaml:"status"`
	Fingerprint string                `yaml:"fingerprint"`
	Labels      map[string]string     `yaml:"labels"`
}

type fixtureContext struct {
	Now              string `yaml:"now"`
	Posture          string `yaml:"posture"`
	OpenIncidents    int    `yaml:"open_incidents"`
	RecentIndicators int    `yaml:"recent_indicators"`
}

type fixtureExpect struct {
	Policy   string   `yaml:"policy"`
	Runbook  string   `yaml:"runbook"`
	Approval Approval `yaml:"approval"`
	NoMatch  bool     `yaml:"no_match"`
}

// RunFixtures runs the fixtures in dir/tests/*.yaml (and *.yml) against s.
// The error reports fixtures that cannot be read or are malformed; a
// fixture whose decision differs is a result with Passed false.
func RunFixtures(s *Set, dir string) ([]FixtureResult, error) {
	return runFixtures(s, os.DirFS(dir), "tests", func(name string) string { return filepath.Join(dir, "tests", name) })
}

// RunFixturesFS is RunFixtures on a file system; dir is slash-separated.
func RunFixturesFS(s *Set, fsys fs.FS, dir string) ([]FixtureResult, error) {
	return runFixtures(s, fsys, path.Join(dir, "tests"), func(name string) string { return path.Join(dir, "tests", name) })
}

// RunDefaultFixtures runs the embedded default fixtures against s.
func RunDefaultFixtures(s *Set) ([]FixtureResult, error) {
	return runFixtures(s, DefaultFS(), "tests", func(name string) string { return path.Join("default", "tests", name) })
}

func runFixtures(s *Set, fsys fs.FS, dir string, display func(string) string) ([]FixtureResult, error) {
	fixtures, err := loadFixtures(fsys, dir, display)
	if err != nil {
		return nil, err
	}
	results := make([]FixtureResult, 0, len(fixtures))
	for i := range fixtures {
		f := &fixtures[i]
		got := s.Decide(Input{Indicator: f.Indicator, Gateway: f.Gateway, Site: f.Site, Context: f.Context})
		msg := f.check(got)
		results = append(results, FixtureResult{File: f.File, Line: f.Line, Name: f.Name, Passed: msg == "", Got: got, Message: msg})
	}
	return results, nil
}

// check compares a decision with the expectation; "" means it passed.
func (f *Fixture) check(d Decision) string {
	var diffs []string
	switch {
	case f.Expect.NoMatch && d.Matched:
		diffs = append(diffs, fmt.Sprintf("want no match, got policy %q (runbook %q)", d.Policy, d.Runbook))
	case !f.Expect.NoMatch && !d.Matched:
		diffs = append(diffs, "want "+f.describeExpect()+", nothing matched")
	case !f.Expect.NoMatch:
		if f.Expect.Policy != "" && f.Expect.Policy != d.Policy {
			diffs = append(diffs, fmt.Sprintf("policy: want %q, got %q", f.Expect.Policy, d.Policy))
		}
		if f.Expect.Runbook != "" && f.Expect.Runbook != d.Runbook {
			diffs = append(diffs, fmt.Sprintf("runbook: want %q, got %q", f.Expect.Runbook, d.Runbook))
		}
		if f.Expect.Approval != "" && f.Expect.Approval != d.Approval {
			diffs = append(diffs, fmt.Sprintf("approval: want %q, got %q", f.Expect.Approval, d.Approval))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(strings.Join(diffs, "; "))
	b.WriteString("; explanations:")
	for _, e := range d.Explanations {
		fmt.Fprintf(&b, " [%s: %s]", e.Policy, e.Reason)
	}
	return b.String()
}

// describeExpect names the fields the fixture expects.
func (f *Fixture) describeExpect() string {
	var parts []string
	if f.Expect.Policy != "" {
		parts = append(parts, fmt.Sprintf("policy %q", f.Expect.Policy))
	}
	if f.Expect.Runbook != "" {
		parts = append(parts, fmt.Sprintf("runbook %q", f.Expect.Runbook))
	}
	if f.Expect.Approval != "" {
		parts = append(parts, fmt.Sprintf("approval %q", f.Expect.Approval))
	}
	return strings.Join(parts, ", ")
}

func loadFixtures(fsys fs.FS, dir string, display func(string) string) ([]Fixture, error) {
	files, err := readYAMLFiles(fsys, dir, "fixtures directory", display)
	if err != nil {
		return nil, err
	}
	var out []Fixture
	var errs []error
	for _, f := range files {
		if f.err != nil {
			errs = append(errs, f.err)
			continue
		}
		fixtures, err := parseFixtureFile(f.name, f.data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, fixtures...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading fixtures directory %s: no fixtures found", display(""))
	}
	return out, nil
}

func parseFixtureFile(file string, data []byte) ([]Fixture, error) {
	var out []Fixture
	var errs []error
	names := map[string]int{}
	err := decodeDocs(file, data, func(doc *fixtureFile, n *yaml.Node) error {
		lines := itemLines(n, "tests")
		for i, d := range doc.Tests {
			line := lineAt(lines, i)
			f, err := d.fixture()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: test %q: %w", file, line, d.Name, err))
				continue
			}
			if prev, dup := names[f.Name]; dup {
				errs = append(errs, fmt.Errorf("%s:%d: test %q: duplicate name, first used at line %d", file, line, f.Name, prev))
				continue
			}
			names[f.Name] = line
			f.File, f.Line = file, line
			out = append(out, f)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, errors.Join(errs...)
}

// fixture checks a decoded test case and fills the defaults that keep
// fixtures short: the indicator's gateway from gateway.id, the gateway's
// site from site.name, now from observed_at and the reverse.
func (d *fixtureDoc) fixture() (Fixture, error) {
	var f Fixture
	if d.Name == "" {
		return f, errors.New("name: is required")
	}
	f.Name = d.Name

	var now, observed time.Time
	var err error
	if d.Context.Now != "" {
		if now, err = time.Parse(time.RFC3339, d.Context.Now); err != nil {
			return f, fmt.Errorf("context.now: %q is not an RFC 3339 time", d.Context.Now)
		}
	}
	if d.Indicator.ObservedAt != "" {
		if observed, err = time.Parse(time.RFC3339, d.Indicator.ObservedAt); err != nil {
			return f, fmt.Errorf("indicator.observed_at: %q is not an RFC 3339 time", d.Indicator.ObservedAt)
		}
	}
	switch {
	case now.IsZero() && observed.IsZero():
		return f, errors.New("context.now or indicator.observed_at is required: a fixture must not depend on the clock")
	case now.IsZero():
		now = observed
	}

	f.Gateway = d.Gateway
	f.Site = d.Site
	if f.Site.Name == "" {
		f.Site.Name = f.Gateway.Site
	}
	if f.Site.Name == "" {
		f.Site.Name = "site"
	}
	if f.Gateway.Site == "" {
		f.Gateway.Site = f.Site.Name
	}
	// Validation loads the time zone and fills the default business hours,
	// exactly as the controller's inventory does.
	inv := inventory.Inventory{Sites: []inventory.Site{f.Site}}
	if err := inv.Validate(); err != nil {
		return f, fmt.Errorf("site: %w", err)
	}
	f.Site = inv.Sites[0]

	in := d.Indicator
	f.Indicator = indicator.Indicator{
		ID: in.ID, Kind: in.Kind, Gateway: in.Gateway, Severity: in.Severity, Confidence: in.Confidence,
		Observables: in.Observables, ObservedAt: observed, Source: in.Source, Summary: in.Summary,
		Status: in.Status, Fingerprint: in.Fingerprint, Labels: in.Labels,
	}
	if f.Indicator.Gateway == "" {
		f.Indicator.Gateway = f.Gateway.ID
	}
	f.Indicator.Normalize(now)
	if err := f.Indicator.Validate(); err != nil {
		return f, fmt.Errorf("indicator.%w", err)
	}

	f.Context = Context{Now: now, Posture: d.Context.Posture, OpenIncidents: d.Context.OpenIncidents, RecentIndicators: d.Context.RecentIndicators}
	switch d.Context.Posture {
	case "", "normal", "quarantined", "released":
	default:
		return f, fmt.Errorf("context.posture: unknown posture %q (normal, quarantined or released)", d.Context.Posture)
	}

	e := d.Expect
	switch {
	case e.NoMatch && (e.Policy != "" || e.Runbook != "" || e.Approval != ""):
		return f, errors.New("expect: no_match cannot be combined with policy, runbook or approval")
	case !e.NoMatch && e.Policy == "" && e.Runbook == "" && e.Approval == "":
		return f, errors.New("expect: set policy, runbook or approval, or no_match: true")
	case e.Approval != "" && !e.Approval.Valid():
		return f, fmt.Errorf("expect.approval: unknown value %q (auto or required)", e.Approval)
	}
	f.Expect.Policy, f.Expect.Runbook, f.Expect.Approval, f.Expect.NoMatch = e.Policy, e.Runbook, e.Approval, e.NoMatch
	return f, nil
}

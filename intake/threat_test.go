package intake

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// wantThreat is what a test wants of one ThreatItem; labels are checked
// only for the keys given ("" wants the key absent).
type wantThreat struct {
	ref, name            string
	kind                 indicator.Kind
	prefixes, domains    []string
	tlp                  string
	confidence           float64
	validFrom, validTill string
	labels               map[string]string
}

// wantSkip is what a test wants of one Skipped: the field exactly, the
// reason by its start.
type wantSkip struct {
	ref, field, reason string
}

// checkThreatDecoded compares a decoder's result with what the test wants,
// in order.
func checkThreatDecoded(t *testing.T, source string, d ThreatDecoded, items []wantThreat, skipped []wantSkip, ignored map[string]int) {
	t.Helper()
	if len(d.Items) != len(items) {
		for _, it := range d.Items {
			t.Logf("got item %s %v %v", it.Ref, it.Prefixes, it.Domains)
		}
		t.Fatalf("%d items, want %d", len(d.Items), len(items))
	}
	for i, w := range items {
		checkThreatItem(t, i, source, d.Items[i], w)
	}
	if len(d.Skipped) != len(skipped) {
		for _, s := range d.Skipped {
			t.Logf("got skipped %+v", s)
		}
		t.Fatalf("%d skipped, want %d", len(d.Skipped), len(skipped))
	}
	for i, w := range skipped {
		s := d.Skipped[i]
		if s.Ref != w.ref || s.Field != w.field || !strings.HasPrefix(s.Reason, w.reason) {
			t.Errorf("skipped[%d] = %+v, want %+v…", i, s, w)
		}
	}
	if !maps.Equal(d.Ignored, ignored) {
		t.Errorf("ignored %v, want %v", d.Ignored, ignored)
	}
}

func checkThreatItem(t *testing.T, i int, source string, it ThreatItem, w wantThreat) {
	t.Helper()
	var prefixes []string
	for _, p := range it.Prefixes {
		prefixes = append(prefixes, p.String())
	}
	kind := w.kind
	if kind == "" {
		kind = indicator.C2Beacon
	}
	if it.Source != source || it.Ref != w.ref || it.Name != w.name || it.Kind != kind || it.TLP != w.tlp || it.Confidence != w.confidence {
		t.Errorf("[%d] got %s %s %q %s %q %v, want %s %s %q %s %q %v", i,
			it.Source, it.Ref, it.Name, it.Kind, it.TLP, it.Confidence, source, w.ref, w.name, kind, w.tlp, w.confidence)
	}
	if !slices.Equal(prefixes, w.prefixes) || !slices.Equal(it.Domains, w.domains) {
		t.Errorf("[%d] %s targets %v %v, want %v %v", i, it.Ref, prefixes, it.Domains, w.prefixes, w.domains)
	}
	if got := formatTime(it.ValidFrom); got != w.validFrom {
		t.Errorf("[%d] %s valid from %q, want %q", i, it.Ref, got, w.validFrom)
	}
	if got := formatTime(it.ValidUntil); got != w.validTill {
		t.Errorf("[%d] %s valid until %q, want %q", i, it.Ref, got, w.validTill)
	}
	for k, v := range w.labels {
		if it.Labels[k] != v {
			t.Errorf("[%d] %s label %s = %q, want %q", i, it.Ref, k, it.Labels[k], v)
		}
	}
}

func formatTime(tm time.Time) string {
	if tm.IsZero() {
		return ""
	}
	return tm.UTC().Format(time.RFC3339)
}

// checkFuzzedThreat is the property every threat decoder keeps, whatever
// the body: no panic; an error names a field and comes alone; an item has
// a source, a ref, a kind, something to block or record, masked prefixes,
// normalised domains and a confidence in 0..1; a skipped object names a
// field and a reason; the result marshals; Ignored counts are positive
// under short keys.
func checkFuzzedThreat(t *testing.T, source string, d ThreatDecoded, err error) {
	t.Helper()
	if err != nil {
		checkFuzzedError(t, err)
		if len(d.Items)+len(d.Skipped)+len(d.Ignored) != 0 {
			t.Fatalf("error %v with a result %+v", err, d)
		}
		return
	}
	for i, it := range d.Items {
		if it.Source != source || it.Ref == "" || !it.Kind.Valid() || len(it.Prefixes)+len(it.Domains) == 0 {
			t.Fatalf("[%d] incomplete item %+v", i, it)
		}
		if it.Confidence < 0 || it.Confidence > 1 || len([]rune(it.Name)) > maxSummaryLen+1 {
			t.Fatalf("[%d] confidence %v, name %q", i, it.Confidence, it.Name)
		}
		for _, p := range it.Prefixes {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("[%d] prefix %v", i, p)
			}
		}
		for _, dn := range it.Domains {
			if n, ok := observableDomain(dn); !ok || n != dn {
				t.Fatalf("[%d] domain %q", i, dn)
			}
		}
		if it.TLP != "" && tlpRank(it.TLP) == 0 {
			t.Fatalf("[%d] TLP %q", i, it.TLP)
		}
	}
	for i, s := range d.Skipped {
		if s.Field == "" || s.Reason == "" {
			t.Fatalf("skipped[%d] %+v", i, s)
		}
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatalf("result does not marshal: %v", err)
	}
	for k, n := range d.Ignored {
		if n <= 0 || len([]rune(k)) > 65 {
			t.Fatalf("ignored %q: %d", k, n)
		}
	}
}

func TestThreatKind(t *testing.T) {
	for words, want := range map[string]indicator.Kind{
		"":                                    indicator.C2Beacon,
		"malicious-activity":                  indicator.C2Beacon,
		"malicious-activity,exfiltration":     indicator.Exfiltration,
		"Exfiltration Over C2 Channel":        indicator.Exfiltration,
		"kill-chain:Brute Force":              indicator.BruteForce,
		"brute_force,exfiltration":            indicator.BruteForce,
		"Password Spraying":                   indicator.BruteForce,
		"misp-galaxy:threat-actor=\"Sofacy\"": indicator.C2Beacon,
	} {
		if got := threatKind(strings.Split(words, ",")); got != want {
			t.Errorf("threatKind(%q) = %s, want %s", words, got, want)
		}
	}
}

func TestTLPLevels(t *testing.T) {
	checkEachInput(t, "tlpLevel", tlpLevel, map[string]string{
		"amber": "TLP:AMBER", "TLP:Amber": "TLP:AMBER", "amber+strict": "TLP:AMBER+STRICT", " clear ": "TLP:CLEAR",
		"white": "TLP:WHITE", "red": "TLP:RED", "TLP:EX:CHR": "", "": "", "purple": "",
	})
	for _, c := range []struct{ a, b, want string }{
		{"", "TLP:GREEN", "TLP:GREEN"},
		{"TLP:AMBER", "TLP:GREEN", "TLP:AMBER"},
		{"TLP:AMBER", "TLP:AMBER+STRICT", "TLP:AMBER+STRICT"},
		{"TLP:RED", "TLP:AMBER+STRICT", "TLP:RED"},
		{"TLP:WHITE", "TLP:CLEAR", "TLP:WHITE"}, // the same level in TLP 1.0 and 2.0
		{"TLP:GREEN", "", "TLP:GREEN"},
	} {
		if got := moreRestrictiveTLP(c.a, c.b); got != c.want {
			t.Errorf("moreRestrictiveTLP(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestThreatDecodedSkipSplitsFieldErrors(t *testing.T) {
	var d ThreatDecoded
	d.skip("indicator--1", "objects[0]", &indicator.FieldError{Field: "objects[0].pattern", Reason: "is required"})
	d.skip("", "objects[1]", errors.New("expected object, got number"))
	want := []Skipped{
		{Ref: "indicator--1", Field: "objects[0].pattern", Reason: "is required"},
		{Field: "objects[1]", Reason: "expected object, got number"},
	}
	if !slices.Equal(d.Skipped, want) {
		t.Errorf("skipped %+v, want %+v", d.Skipped, want)
	}
}

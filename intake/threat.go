package intake

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// Threat intelligence (STIX 2.1 bundles, TAXII 2.1 collections, MISP
// events) names remote addresses to block at every gateway. It is not about
// one gateway, so it is not decoded into indicator.Indicator values (which
// need one) but into ThreatItems, which the controller turns into block
// requests. This file holds what the STIX and MISP decoders share.

// Sources of ThreatItems.
const (
	SourceSTIX = "stix"
	SourceMISP = "misp"
)

// DefaultThreatConfidence is an item's confidence when the source gives
// none (no STIX confidence, MISP threat level "undefined"): "Med" on
// STIX 2.1's None/Low/Med/High confidence scale, which maps Med to 50.
const DefaultThreatConfidence = 0.5

// ThreatItem is one thing a threat-intelligence source says to block: the
// addresses and networks of a STIX indicator's pattern or of a MISP
// attribute, and the names it gives (recorded, never blocked: a packet
// filter cannot block a name).
type ThreatItem struct {
	// Source is SourceSTIX or SourceMISP; Ref the STIX indicator id or
	// the MISP attribute uuid. Source and Ref identify the item: a feed
	// that sends it again names the same block.
	Source, Ref string
	// Name is a human line: the indicator's name, the event's info.
	Name string
	// Kind is what the addresses are: c2_beacon unless the source's
	// types, labels or tags say exfiltration or brute force.
	Kind indicator.Kind
	// Prefixes to block, masked, sorted (IPv4 first) and each once;
	// addresses are /32 or /128.
	Prefixes []netip.Prefix
	// Domains named, in lower case, sorted, each once.
	Domains []string
	// TLP is the most restrictive traffic light marking ("TLP:AMBER"),
	// empty when there is none.
	TLP string
	// Confidence in 0..1.
	Confidence float64
	// ValidFrom and ValidUntil bound the item when the source says so;
	// zero when it does not.
	ValidFrom, ValidUntil time.Time
	// Labels are the source's context (the pattern, sightings, the MISP
	// event, tags), values clipped.
	Labels map[string]string
}

// Skipped is an object of a feed that cannot be understood (a field of the
// wrong type, a pattern that is malformed or uses what Warden does not
// support) or that must not be blocked (revoked, expired, deleted, benign).
type Skipped struct {
	// Ref is the object's id (STIX id, MISP uuid) when it has one.
	Ref string
	// Field is the path of the field at fault ("objects[3].pattern").
	Field string
	// Reason says why.
	Reason string
}

// ThreatDecoded is what a threat-intelligence decoder made of one body: an
// item per usable indicator, the objects skipped with the reason, and the
// count, by type, of the objects not used (STIX identity, malware, report,
// …; MISP attributes of other types or not for IDS), which are dropped.
//
// A body that is not the format at all is an *indicator.FieldError naming
// the field; a body with some bad objects keeps the good ones.
type ThreatDecoded struct {
	Items   []ThreatItem
	Skipped []Skipped
	Ignored map[string]int
}

// ignore counts an object of type t that is not used.
func (d *ThreatDecoded) ignore(t string) {
	if d.Ignored == nil {
		d.Ignored = map[string]int{}
	}
	d.Ignored[clip(t, 64)]++
}

// skip records an object that is skipped: a FieldError gives the field and
// the reason; any other error is the reason for field.
func (d *ThreatDecoded) skip(ref, field string, err error) {
	s := Skipped{Ref: clip(ref, 128), Field: field, Reason: err.Error()}
	var fe *indicator.FieldError
	if errors.As(err, &fe) {
		s.Field, s.Reason = fe.Field, fe.Reason
	}
	d.Skipped = append(d.Skipped, s)
}

// threatKindWords maps words of a feed's types, labels, kill-chain phases,
// categories and tags (lower case, spaces and underscores as hyphens) to
// the kinds other than the default c2_beacon. The first word, in the
// source's order, that contains one of these decides.
var threatKindWords = []struct {
	word string
	kind indicator.Kind
}{
	{"exfil", indicator.Exfiltration},
	{"brute-force", indicator.BruteForce},
	{"bruteforce", indicator.BruteForce},
	{"password-spray", indicator.BruteForce},
}

// threatKind decides the kind from a feed's words: c2_beacon unless one of
// them says exfiltration or brute force.
func threatKind(words []string) indicator.Kind {
	for _, w := range words {
		w = normalWord(w)
		for _, k := range threatKindWords {
			if strings.Contains(w, k.word) {
				return k.kind
			}
		}
	}
	return indicator.C2Beacon
}

// normalWord writes a feed's word in lower case with spaces and
// underscores as hyphens, so that "Brute Force", "brute_force" and
// "brute-force" compare alike.
func normalWord(w string) string {
	return wordSeparators.Replace(strings.ToLower(strings.TrimSpace(w)))
}

var wordSeparators = strings.NewReplacer(" ", "-", "_", "-")

// tlpLevels are the TLP 1.0 and 2.0 levels, least restrictive first.
var tlpLevels = []string{"TLP:CLEAR", "TLP:WHITE", "TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED"}

// tlpRank orders TLP levels: WHITE (1.0) and CLEAR (2.0) alike, then
// GREEN, AMBER, AMBER+STRICT, RED; 0 for "" or a level that is not TLP.
func tlpRank(tlp string) int {
	switch i := slices.Index(tlpLevels, tlp); {
	case i < 0:
		return 0
	case i == 0:
		return 1 // CLEAR is WHITE
	default:
		return i
	}
}

// tlpLevel writes a level named by a feed ("amber", "TLP:Amber",
// "amber+strict") as "TLP:AMBER"; "" when it is not a TLP level.
func tlpLevel(name string) string {
	s := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(s, "TLP:") {
		s = "TLP:" + s
	}
	if tlpRank(s) == 0 {
		return ""
	}
	return s
}

// moreRestrictiveTLP returns the more restrictive of two levels ("" is the
// least).
func moreRestrictiveTLP(a, b string) string {
	if tlpRank(b) > tlpRank(a) {
		return b
	}
	return a
}

// sortedPrefixes masks prefixes and returns them sorted, IPv4 first, each
// once.
func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// sortedUnique returns strings sorted, each once.
func sortedUnique(ds []string) []string {
	if len(ds) == 0 {
		return nil
	}
	out := slices.Clone(ds)
	slices.Sort(out)
	return slices.Compact(out)
}

package intake

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// stixBodyWants says what DecodeSTIX reads, for the error on anything else.
const stixBodyWants = `a STIX bundle (an object with "type": "bundle" and "objects")`

// tlpMarkings are the marking definitions every STIX producer refers to by
// id without sending them: TLP 1.0 (STIX 2.1 section 7.2.1.4), TLP 2.0
// (oasis-open/cti-stix-common-objects, extension-definition-
// specifications/tlp-2.0), and OpenCTI's TLP:AMBER+STRICT, which predates
// TLP 2.0's.
var tlpMarkings = map[string]string{
	"marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "TLP:WHITE",
	"marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "TLP:GREEN",
	"marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "TLP:AMBER",
	"marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "TLP:RED",
	"marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "TLP:CLEAR",
	"marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "TLP:GREEN",
	"marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "TLP:AMBER",
	"marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "TLP:AMBER+STRICT",
	"marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "TLP:RED",
	"marking-definition--826578e1-40ad-459f-bc73-ede076f81f37": "TLP:AMBER+STRICT",
}

// tlp2Extension is the extension definition of TLP 2.0 markings.
const tlp2Extension = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"

// DecodeSTIX reads a STIX 2.1 bundle (STIX 2.0 bundles too: their
// indicators differ only in having no pattern_type) and returns an item
// per usable indicator object.
//
// The body is an object with "type": "bundle" and an "objects" array; a
// TAXII 2.1 envelope ({"objects": [...], "more": …}) and a bundle written
// without "type" are read alike. Anything else is an *indicator.FieldError
// on "body" ("type" for another STIX type, "objects" when it is not an
// array).
//
// Each indicator's pattern is read by ParseSTIXPattern; its addresses and
// networks are the item's Prefixes, its domain names its Domains. When a
// bundle holds several versions of an object (same id), the one modified
// last counts. An indicator is Skipped, with the field and the reason, when
// a field Warden reads has the wrong type, when its pattern is malformed or
// unsupported or its pattern_type is not "stix", when it is revoked, when
// its valid_until is not after now (or not after its valid_from), or when
// its indicator_types say "benign". Objects that are not indicators are
// counted by type in Ignored, but for sightings of an indicator of the
// bundle (their count and first and last seen go into the item's Labels
// "sightings", "first_seen", "last_seen") and marking definitions (TLP).
//
// Kind is c2_beacon unless indicator_types, labels or kill-chain phase
// names say exfiltration or brute force; TLP the most restrictive TLP
// marking of object_marking_refs; Confidence the STIX confidence / 100, or
// DefaultThreatConfidence; ValidFrom and ValidUntil the indicator's own.
func DecodeSTIX(body []byte, now time.Time) (ThreatDecoded, error) {
	if err := checkJSON(body, "body"); err != nil {
		return ThreatDecoded{}, err
	}
	objects, err := stixBundleObjects(body)
	if err != nil {
		return ThreatDecoded{}, err
	}
	return decodeSTIXObjects(objects, now), nil
}

// stixBundleObjects returns the elements of a bundle's (or envelope's)
// objects array.
func stixBundleObjects(body []byte) ([]json.RawMessage, error) {
	if jsonKind(body) != "object" {
		return nil, &indicator.FieldError{Field: "body", Reason: "expected " + stixBodyWants + ", got " + jsonKind(body)}
	}
	var objects json.RawMessage
	bundle := false
	err := decodeObject(body, "", false, func(key string, val json.RawMessage, field string) error {
		switch key {
		case "type":
			t, err := decodeString(val, field)
			if err == nil && t != "bundle" {
				err = &indicator.FieldError{Field: field, Reason: fmt.Sprintf("expected %q, got %q: send %s", "bundle", clip(t, 64), stixBodyWants)}
			}
			bundle = true
			return err
		case "objects":
			objects = val
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if objects == nil {
		if bundle {
			return nil, nil // a bundle may be empty
		}
		return nil, &indicator.FieldError{Field: "body", Reason: "expected " + stixBodyWants + ", got an object without objects"}
	}
	return readArray(objects, "objects", 0)
}

// stixObject is one object of a bundle, as far as the first pass reads it.
type stixObject struct {
	index    int
	id, typ  string
	modified time.Time
	members  []member
	at       string // "objects[index]"
}

func (o *stixObject) path() string { return o.at }

// decodeSTIXObjects decodes the objects of one bundle, or of every page of
// a TAXII poll: markings and sightings first, then each indicator.
func decodeSTIXObjects(objects []json.RawMessage, now time.Time) ThreatDecoded {
	var d ThreatDecoded
	var indicators, sightings []*stixObject
	markings := map[string]string{}
	latest := map[string]*stixObject{} // by id: the version modified last
	for i, raw := range objects {
		o, err := readSTIXObject(i, raw)
		if err != nil {
			d.skip(o.id, o.path(), err)
			continue
		}
		switch o.typ {
		case "indicator", "sighting":
			if prev, ok := latest[o.id]; ok {
				if o.modified.Before(prev.modified) {
					continue
				}
				*prev = *o // keeps its place among the first versions
				continue
			}
			latest[o.id] = o
			if o.typ == "indicator" {
				indicators = append(indicators, o)
			} else {
				sightings = append(sightings, o)
			}
		case "marking-definition":
			if tlp := stixMarkingTLP(o); tlp != "" {
				markings[o.id] = tlp
			}
		default:
			d.ignore(o.typ)
		}
	}
	seen := linkSightings(&d, sightings, latest)
	for _, o := range indicators {
		it, err := decodeSTIXIndicator(o, markings, seen[o.id], now)
		if err != nil {
			d.skip(o.id, o.path(), err)
			continue
		}
		d.Items = append(d.Items, it)
	}
	// Objects are read in two passes; report them in the body's order.
	slices.SortStableFunc(d.Skipped, func(a, b Skipped) int { return objectIndex(a.Field) - objectIndex(b.Field) })
	return d
}

// objectIndex reads i from a field path "objects[i]…".
func objectIndex(field string) int {
	rest, ok := strings.CutPrefix(field, "objects[")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(rest[:max(strings.IndexByte(rest, ']'), 0)])
	return n
}

// readSTIXObject reads the members every object has: type (required), id
// and modified.
func readSTIXObject(i int, raw json.RawMessage) (*stixObject, error) {
	o := &stixObject{index: i, at: fmt.Sprintf("objects[%d]", i)}
	ms, err := readMembers(raw, o.path())
	if err != nil {
		return o, err
	}
	o.members = ms
	for _, m := range ms {
		switch {
		case isNull(m.val):
		case m.key == "type":
			o.typ, err = decodeString(m.val, join(o.path(), m.key))
		case m.key == "id":
			o.id, err = decodeString(m.val, join(o.path(), m.key))
		case m.key == "modified":
			o.modified, err = decodeTime(m.val, join(o.path(), m.key))
		}
		if err != nil {
			return o, err
		}
	}
	if o.typ == "" {
		return o, &indicator.FieldError{Field: join(o.path(), "type"), Reason: "is required"}
	}
	if (o.typ == "indicator" || o.typ == "sighting") && !strings.HasPrefix(o.id, o.typ+"--") {
		return o, &indicator.FieldError{Field: join(o.path(), "id"), Reason: fmt.Sprintf("expected %s--<uuid>, got %q", o.typ, clip(o.id, 64))}
	}
	return o, nil
}

// stixMarkingTLP reads the TLP level a marking definition stands for: a
// known id, TLP 1.0's definition {"tlp": "amber"}, TLP 2.0's extension
// {"tlp_2_0": "amber"}, or a name "TLP:AMBER". Other markings (statements,
// malformed ones) are not TLP and give "".
func stixMarkingTLP(o *stixObject) string {
	if tlp := tlpMarkings[o.id]; tlp != "" {
		return tlp
	}
	tlp := ""
	for _, m := range o.members {
		switch m.key {
		case "definition":
			if v, err := optionalMember(m.val, "definition", "tlp"); err == nil && v != "" {
				tlp = moreRestrictiveTLP(tlp, tlpLevel(v))
			}
		case "extensions":
			if ext, err := optionalObject(m.val, tlp2Extension); err == nil && ext != nil {
				if v, err := optionalMember(ext, tlp2Extension, "tlp_2_0"); err == nil && v != "" {
					tlp = moreRestrictiveTLP(tlp, tlpLevel(v))
				}
			}
		case "name":
			if v, err := decodeString(m.val, "name"); err == nil && strings.HasPrefix(strings.ToUpper(v), "TLP:") {
				tlp = moreRestrictiveTLP(tlp, tlpLevel(v))
			}
		}
	}
	return tlp
}

// optionalObject returns the member key of raw when raw is an object that
// has one, nil otherwise.
func optionalObject(raw json.RawMessage, key string) (json.RawMessage, error) {
	if jsonKind(raw) != "object" {
		return nil, nil
	}
	ms, err := readMembers(raw, key)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.key == key {
			return m.val, nil
		}
	}
	return nil, nil
}

// sightingSum is what the sightings of one indicator add up to.
type sightingSum struct {
	count               int64
	firstSeen, lastSeen time.Time
}

// linkSightings adds up the sightings of each indicator in latest; a
// sighting of something else is counted in Ignored, one that cannot be read
// is Skipped.
func linkSightings(d *ThreatDecoded, sightings []*stixObject, latest map[string]*stixObject) map[string]*sightingSum {
	out := map[string]*sightingSum{}
	for _, o := range sightings {
		ref, s, err := readSighting(o)
		if err != nil {
			d.skip(o.id, o.path(), err)
			continue
		}
		if target, ok := latest[ref]; !ok || target.typ != "indicator" {
			d.ignore("sighting")
			continue
		}
		sum := out[ref]
		if sum == nil {
			sum = &sightingSum{}
			out[ref] = sum
		}
		sum.count += s.count
		if !s.firstSeen.IsZero() && (sum.firstSeen.IsZero() || s.firstSeen.Before(sum.firstSeen)) {
			sum.firstSeen = s.firstSeen
		}
		if s.lastSeen.After(sum.lastSeen) {
			sum.lastSeen = s.lastSeen
		}
	}
	return out
}

// readSighting reads sighting_of_ref (required), count (1 when absent: the
// sighting says it was seen) and first_seen and last_seen.
func readSighting(o *stixObject) (string, sightingSum, error) {
	s := sightingSum{count: 1}
	ref := ""
	for _, m := range o.members {
		field := join(o.path(), m.key)
		var err error
		switch {
		case isNull(m.val):
		case m.key == "sighting_of_ref":
			ref, err = decodeString(m.val, field)
		case m.key == "count":
			s.count, err = decodeCount(m.val, field)
		case m.key == "first_seen":
			s.firstSeen, err = decodeTime(m.val, field)
		case m.key == "last_seen":
			s.lastSeen, err = decodeTime(m.val, field)
		}
		if err != nil {
			return "", s, err
		}
	}
	if ref == "" {
		return "", s, &indicator.FieldError{Field: join(o.path(), "sighting_of_ref"), Reason: "is required"}
	}
	return ref, s, nil
}

// decodeCount reads a sighting's count: an integer 0..999999999.
func decodeCount(raw json.RawMessage, path string) (int64, error) {
	s, err := decodeUintText(raw, path, 32)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	if n > 999999999 {
		return 0, &indicator.FieldError{Field: path, Reason: "must be at most 999999999"}
	}
	return n, nil
}

// stixIndicator is what Warden reads of an indicator object.
type stixIndicator struct {
	name, description     string
	pattern, patternType  string
	validFrom, validUntil time.Time
	revoked               bool
	confidence            float64
	hasConfidence         bool
	types, labels, phases []string
	markingRefs           []string
	createdBy             string
}

// decodeSTIXIndicator reads one indicator and decides whether it is an
// item.
func decodeSTIXIndicator(o *stixObject, markings map[string]string, seen *sightingSum, now time.Time) (ThreatItem, error) {
	in, err := parseSTIXIndicator(o)
	if err != nil {
		return ThreatItem{}, err
	}
	field := func(name string) string { return join(o.path(), name) }
	if err := in.usable(field, now); err != nil {
		return ThreatItem{}, err
	}
	targets, err := ParseSTIXPattern(in.pattern)
	if err != nil {
		return ThreatItem{}, &indicator.FieldError{Field: field("pattern"), Reason: err.Error()}
	}
	it := ThreatItem{
		Source:     SourceSTIX,
		Ref:        o.id,
		Name:       stixName(&in),
		Kind:       threatKind(slices.Concat(in.types, in.labels, in.phases)),
		Prefixes:   targets.Prefixes,
		Domains:    targets.Domains,
		Confidence: DefaultThreatConfidence,
		ValidFrom:  in.validFrom,
		ValidUntil: in.validUntil,
	}
	if in.hasConfidence {
		it.Confidence = in.confidence / 100
	}
	for _, ref := range in.markingRefs {
		tlp := tlpMarkings[ref]
		if tlp == "" {
			tlp = markings[ref]
		}
		it.TLP = moreRestrictiveTLP(it.TLP, tlp)
	}
	it.Labels = stixLabels(&in, seen)
	return it, nil
}

// usable refuses an indicator Warden must not block: revoked, expired,
// benign, or with a pattern language other than STIX's.
func (in *stixIndicator) usable(field func(string) string, now time.Time) error {
	switch {
	case in.revoked:
		return &indicator.FieldError{Field: field("revoked"), Reason: "the indicator is revoked"}
	case !in.validUntil.IsZero() && !in.validUntil.After(now):
		return &indicator.FieldError{Field: field("valid_until"), Reason: fmt.Sprintf("expired: %s is past", in.validUntil.UTC().Format(time.RFC3339))}
	case !in.validUntil.IsZero() && !in.validFrom.IsZero() && !in.validUntil.After(in.validFrom):
		return &indicator.FieldError{Field: field("valid_until"), Reason: "is not after valid_from"}
	case in.patternType != "stix":
		return &indicator.FieldError{Field: field("pattern_type"), Reason: fmt.Sprintf("unsupported: pattern_type %q (Warden reads STIX patterns)", clip(in.patternType, 40))}
	case in.pattern == "":
		return &indicator.FieldError{Field: field("pattern"), Reason: "is required"}
	}
	for _, t := range in.types {
		if normalWord(t) == "benign" {
			return &indicator.FieldError{Field: field("indicator_types"), Reason: "says benign: nothing to block"}
		}
	}
	return nil
}

func parseSTIXIndicator(o *stixObject) (stixIndicator, error) {
	in := stixIndicator{patternType: "stix"}
	for _, m := range o.members {
		if isNull(m.val) || !stixIndicatorFields[m.key] {
			continue
		}
		if err := in.read(m, join(o.path(), m.key)); err != nil {
			return in, err
		}
	}
	return in, nil
}

// stixIndicatorFields are the members of an indicator that read reads.
var stixIndicatorFields = map[string]bool{
	"name": true, "description": true, "pattern": true, "pattern_type": true, "valid_from": true, "valid_until": true,
	"revoked": true, "confidence": true, "indicator_types": true, "labels": true, "kill_chain_phases": true,
	"object_marking_refs": true, "created_by_ref": true,
}

// read reads one member of an indicator.
func (in *stixIndicator) read(m member, field string) (err error) {
	switch m.key {
	case "name":
		in.name, err = decodeString(m.val, field)
	case "description":
		in.description, err = decodeString(m.val, field)
	case "pattern":
		in.pattern, err = decodeString(m.val, field)
	case "pattern_type":
		in.patternType, err = decodeString(m.val, field)
	case "valid_from":
		in.validFrom, err = decodeTime(m.val, field)
	case "valid_until":
		in.validUntil, err = decodeTime(m.val, field)
	case "revoked":
		in.revoked, err = decodeBool(m.val, field)
	case "confidence":
		in.confidence, err = decodeConfidence(m.val, field)
		in.hasConfidence = err == nil
	case "indicator_types":
		in.types, err = decodeStringList(m.val, field)
	case "labels":
		in.labels, err = decodeStringList(m.val, field)
	case "kill_chain_phases":
		in.phases, err = decodePhaseNames(m.val, field)
	case "object_marking_refs":
		in.markingRefs, err = decodeStringList(m.val, field)
	case "created_by_ref":
		in.createdBy, err = decodeString(m.val, field)
	}
	return err
}

func decodeBool(raw json.RawMessage, path string) (bool, error) {
	if jsonKind(raw) != "boolean" {
		return false, typeError(path, "boolean", raw)
	}
	return strings.HasPrefix(strings.TrimSpace(string(raw)), "t"), nil
}

// decodeConfidence reads STIX confidence: an integer 0..100.
func decodeConfidence(raw json.RawMessage, path string) (float64, error) {
	f, err := decodeNumber(raw, path)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > 100 || f != float64(int(f)) {
		return 0, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("must be an integer from 0 to 100, got %v", f)}
	}
	return f, nil
}

// decodePhaseNames reads kill_chain_phases and returns the phase names.
func decodePhaseNames(raw json.RawMessage, path string) ([]string, error) {
	elems, err := readArray(raw, path, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		err := decodeObject(e, p, false, func(key string, val json.RawMessage, field string) error {
			if key != "phase_name" {
				return nil
			}
			name, err := decodeString(val, field)
			out = append(out, name)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stixName is the indicator's name, else its description, else its
// pattern, on one line.
func stixName(in *stixIndicator) string {
	for _, s := range []string{in.name, in.description, in.pattern} {
		if strings.TrimSpace(s) != "" {
			return oneLine(s)
		}
	}
	return ""
}

func stixLabels(in *stixIndicator, seen *sightingSum) map[string]string {
	l := labelSet{}
	l.set("pattern", in.pattern)
	l.set("indicator_types", strings.Join(in.types, ","))
	l.set("labels", strings.Join(in.labels, ","))
	l.set("kill_chain_phases", strings.Join(in.phases, ","))
	l.set("created_by_ref", in.createdBy)
	if seen != nil {
		l.set("sightings", strconv.FormatInt(seen.count, 10))
		if !seen.firstSeen.IsZero() {
			l.set("first_seen", seen.firstSeen.UTC().Format(time.RFC3339Nano))
		}
		if !seen.lastSeen.IsZero() {
			l.set("last_seen", seen.lastSeen.UTC().Format(time.RFC3339Nano))
		}
	}
	return l
}

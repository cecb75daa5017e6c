package intake

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
)

// mispBodyWants says what DecodeMISP reads, for the error on anything else.
const mispBodyWants = `a MISP event ({"Event": {…}}), a list of them, or a REST search response ({"response": …})`

// ignoredNotForIDS counts the MISP attributes of a blockable type whose
// to_ids is false: the producer says they are context, not detection.
const ignoredNotForIDS = "to_ids=false"

// mispThreatLevels maps an event's threat_level_id onto a confidence, on
// STIX 2.1's None/Low/Med/High scale (Low 15, Med 50, High 85): 1 High, 2
// Medium, 3 Low; 4 (Undefined) and anything else are
// DefaultThreatConfidence.
var mispThreatLevels = map[string]float64{"1": 0.85, "2": 0.5, "3": 0.15}

// mispAttributeTypes are the attribute types DecodeMISP blocks, and how
// their value reads.
var mispAttributeTypes = map[string]func(v string) (mispValue, error){
	"ip-src":      mispAddress,
	"ip-dst":      mispAddress,
	"ip-src|port": mispAddressPort,
	"ip-dst|port": mispAddressPort,
	"domain":      mispDomain,
	"hostname":    mispDomain,
	"domain|ip":   mispDomainAddress,
}

// DecodeMISP reads MISP events and returns an item per attribute to
// block: attributes of type ip-src, ip-dst, ip-src|port, ip-dst|port
// (the address is blocked whole; the port goes into Labels), domain,
// hostname and domain|ip whose to_ids is true, in the event's Attribute
// list or in one of its Objects.
//
// The body is one event ({"Event": {…}}, or the event object alone as
// PyMISP writes it), a JSON array of {"Event": …}, or a REST search
// response: {"response": [{"Event": …}, …]} for events,
// {"response": {"Attribute": […]}} for attributes. Anything else is an
// *indicator.FieldError on "body"; so is a list in which no element is an
// event.
//
// An event or attribute that cannot be understood (a field of the wrong
// type, a value that is not an address or domain name, no uuid) is
// Skipped with its path ("response[1].Event.Attribute[3].value"); so are
// deleted attributes and the attributes of deleted objects. Attributes of
// other types are counted by type in Ignored, those not for IDS as
// "to_ids=false".
//
// Kind is c2_beacon unless the attribute's or the event's tags or the
// category say exfiltration or brute force; TLP the most restrictive tlp:*
// tag of the attribute and the event; Confidence from the event's
// threat_level_id (see mispThreatLevels); ValidFrom the attribute's
// first_seen, ValidUntil its last_seen when that is still ahead of now (a
// last_seen in the past says when it was last seen, not that the
// indicator expired: it is kept in Labels only). Labels keep the event
// uuid ("event"), the category, the attribute type, the tags, the port,
// the creating organisation, the object name, first_seen and last_seen.
func DecodeMISP(body []byte, now time.Time) (ThreatDecoded, error) {
	if err := checkJSON(body, "body"); err != nil {
		return ThreatDecoded{}, err
	}
	var d ThreatDecoded
	var err error
	switch jsonKind(body) {
	case "array":
		err = decodeMISPEventList(&d, body, "", now)
	case "object":
		var ms []member
		if ms, err = readMembers(body, "body"); err == nil {
			err = decodeMISPObject(&d, ms, now)
		}
	default:
		err = &indicator.FieldError{Field: "body", Reason: "expected " + mispBodyWants + ", got " + jsonKind(body)}
	}
	if err != nil {
		return ThreatDecoded{}, err
	}
	return d, nil
}

// decodeMISPObject reads a top-level object: an event in its wrapper, a
// REST search response, or a bare event.
func decodeMISPObject(d *ThreatDecoded, ms []member, now time.Time) error {
	if m, ok := memberOf(ms, "Event"); ok {
		if jsonKind(m.val) != "object" {
			return typeError("Event", "object", m.val)
		}
		decodeMISPEvent(d, m.val, "Event", now)
		return nil
	}
	if m, ok := memberOf(ms, "response"); ok {
		switch jsonKind(m.val) {
		case "array":
			return decodeMISPEventList(d, m.val, "response", now)
		case "object":
			return decodeMISPAttributeSearch(d, m.val, now)
		}
		return typeError("response", "array of events or an object with Attribute", m.val)
	}
	_, attrs := memberOf(ms, "Attribute")
	_, objects := memberOf(ms, "Object")
	if attrs || objects {
		decodeMISPEvent(d, nil, "", now, ms...)
		return nil
	}
	return &indicator.FieldError{Field: "body", Reason: "expected " + mispBodyWants + ", got an object without Event, response or Attribute"}
}

func memberOf(ms []member, key string) (member, bool) {
	for _, m := range ms {
		if m.key == key && !isNull(m.val) {
			return m, true
		}
	}
	return member{}, false
}

// decodeMISPEventList reads [{"Event": …}, …] at path. An element that is
// not an event is Skipped; a list with elements but no event is refused.
func decodeMISPEventList(d *ThreatDecoded, raw json.RawMessage, path string, now time.Time) error {
	elems, err := readArray(raw, orBody(path), 0)
	if err != nil {
		return err
	}
	events := 0
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		ev, err := eventOf(e, p)
		if err != nil {
			d.skip("", p, err)
			continue
		}
		events++
		decodeMISPEvent(d, ev, p+".Event", now)
	}
	if events == 0 && len(elems) > 0 {
		return &indicator.FieldError{Field: orBody(path), Reason: "expected " + mispBodyWants + ", got a list without events"}
	}
	return nil
}

func orBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

// eventOf returns the event of a list element {"Event": {…}}.
func eventOf(raw json.RawMessage, path string) (json.RawMessage, error) {
	ms, err := readMembers(raw, path)
	if err != nil {
		return nil, err
	}
	m, ok := memberOf(ms, "Event")
	if !ok {
		return nil, &indicator.FieldError{Field: path, Reason: `expected {"Event": {…}}`}
	}
	if jsonKind(m.val) != "object" {
		return nil, typeError(path+".Event", "object", m.val)
	}
	return m.val, nil
}

// mispEvent is what Warden reads of an event: what every attribute's item
// takes from it.
type mispEvent struct {
	uuid, info, org string
	confidence      float64
	tags            []string
}

// decodeMISPEvent reads the event raw (or, when raw is nil, the members
// ms of a bare event) at path and decodes its attributes and objects.
func decodeMISPEvent(d *ThreatDecoded, raw json.RawMessage, path string, now time.Time, ms ...member) {
	if raw != nil {
		var err error
		if ms, err = readMembers(raw, path); err != nil {
			d.skip("", path, err)
			return
		}
	}
	ev := mispEvent{confidence: DefaultThreatConfidence}
	var attrs, objects json.RawMessage
	for _, m := range ms {
		if isNull(m.val) {
			continue
		}
		field := join(path, m.key)
		var err error
		switch m.key {
		case "Attribute":
			attrs = m.val
		case "Object":
			objects = m.val
		default:
			err = ev.read(m, field)
		}
		if err != nil {
			d.skip(ev.uuid, field, err)
			return
		}
	}
	if attrs != nil {
		decodeMISPAttributes(d, &ev, attrs, join(path, "Attribute"), "", now)
	}
	if objects != nil {
		decodeMISPObjects(d, &ev, objects, join(path, "Object"), now)
	}
}

// read reads one member of an event.
func (ev *mispEvent) read(m member, field string) (err error) {
	switch m.key {
	case "uuid":
		ev.uuid, err = decodeString(m.val, field)
	case "info":
		ev.info, err = decodeString(m.val, field)
	case "threat_level_id":
		var level string
		if level, err = decodeMISPNumberText(m.val, field); err == nil {
			if c, ok := mispThreatLevels[level]; ok {
				ev.confidence = c
			}
		}
	case "Tag":
		ev.tags, err = decodeMISPTags(m.val, field)
	case "Orgc":
		ev.org, err = optionalMember(m.val, field, "name")
	}
	return err
}

// decodeMISPObjects reads an event's Object list: each object's
// attributes, unless the object is deleted.
func decodeMISPObjects(d *ThreatDecoded, ev *mispEvent, raw json.RawMessage, path string, now time.Time) {
	elems, err := readArray(raw, path, 0)
	if err != nil {
		d.skip(ev.uuid, path, err)
		return
	}
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		var uuid, name string
		var deleted bool
		var attrs json.RawMessage
		err := decodeObject(e, p, false, func(key string, val json.RawMessage, field string) (err error) {
			switch key {
			case "uuid":
				uuid, err = decodeString(val, field)
			case "name":
				name, err = decodeString(val, field)
			case "deleted":
				deleted, err = decodeMISPBool(val, field)
			case "Attribute":
				attrs = val
			}
			return err
		})
		switch {
		case err != nil:
			d.skip(uuid, p, err)
		case deleted:
			d.skip(uuid, join(p, "deleted"), fmt.Errorf("the object is deleted"))
		case attrs != nil:
			decodeMISPAttributes(d, ev, attrs, join(p, "Attribute"), name, now)
		}
	}
}

// decodeMISPAttributeSearch reads {"Attribute": […]}, the response of an
// attribute REST search; each attribute may carry its event's uuid, info
// and threat level in an "Event" member.
func decodeMISPAttributeSearch(d *ThreatDecoded, raw json.RawMessage, now time.Time) error {
	ms, err := readMembers(raw, "response")
	if err != nil {
		return err
	}
	m, ok := memberOf(ms, "Attribute")
	if !ok {
		return &indicator.FieldError{Field: "response.Attribute", Reason: "is required"}
	}
	if jsonKind(m.val) != "array" {
		return typeError("response.Attribute", "array", m.val)
	}
	decodeMISPAttributes(d, nil, m.val, "response.Attribute", "", now)
	return nil
}

// decodeMISPAttributes reads an Attribute list of ev (nil: each
// attribute's own "Event" member, if any, is its event).
func decodeMISPAttributes(d *ThreatDecoded, ev *mispEvent, raw json.RawMessage, path, object string, now time.Time) {
	elems, err := readArray(raw, path, 0)
	if err != nil {
		d.skip(evUUID(ev), path, err)
		return
	}
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		a, err := parseMISPAttribute(e, p, ev)
		if err != nil {
			d.skip(a.uuid, p, err)
			continue
		}
		a.object = object
		decodeMISPAttribute(d, &a, p, now)
	}
}

func evUUID(ev *mispEvent) string {
	if ev == nil {
		return ""
	}
	return ev.uuid
}

// mispAttribute is what Warden reads of an attribute.
type mispAttribute struct {
	uuid, typ, category, value, comment string
	object, relation                    string
	toIDS, deleted                      bool
	firstSeen, lastSeen                 time.Time
	tags                                []string
	event                               mispEvent
}

func parseMISPAttribute(raw json.RawMessage, path string, ev *mispEvent) (mispAttribute, error) {
	a := mispAttribute{event: mispEvent{confidence: DefaultThreatConfidence}}
	if ev != nil {
		a.event = *ev
	}
	err := decodeObject(raw, path, false, func(key string, val json.RawMessage, field string) error {
		return a.read(key, val, field, ev == nil)
	})
	return a, err
}

// read reads one member of an attribute; with ownEvent, its "Event"
// member is its event.
func (a *mispAttribute) read(key string, val json.RawMessage, field string, ownEvent bool) (err error) {
	switch key {
	case "uuid":
		a.uuid, err = decodeString(val, field)
	case "type":
		a.typ, err = decodeString(val, field)
	case "category":
		a.category, err = decodeString(val, field)
	case "value":
		a.value, err = decodeString(val, field)
	case "comment":
		a.comment, err = decodeString(val, field)
	case "object_relation":
		a.relation, err = decodeString(val, field)
	case "to_ids":
		a.toIDS, err = decodeMISPBool(val, field)
	case "deleted":
		a.deleted, err = decodeMISPBool(val, field)
	case "first_seen":
		a.firstSeen, err = decodeTime(val, field)
	case "last_seen":
		a.lastSeen, err = decodeTime(val, field)
	case "Tag":
		a.tags, err = decodeMISPTags(val, field)
	case "Event":
		if ownEvent {
			err = decodeObject(val, field, false, func(key string, val json.RawMessage, field string) error {
				return a.event.read(member{key, val}, field)
			})
		}
	}
	return err
}

// decodeMISPAttribute decides what becomes of one attribute.
func decodeMISPAttribute(d *ThreatDecoded, a *mispAttribute, path string, now time.Time) {
	parse, ok := mispAttributeTypes[a.typ]
	switch {
	case !ok:
		d.ignore(orDash(a.typ))
		return
	case a.deleted:
		d.skip(a.uuid, join(path, "deleted"), fmt.Errorf("the attribute is deleted"))
		return
	case !a.toIDS:
		d.ignore(ignoredNotForIDS)
		return
	case a.uuid == "":
		d.skip("", join(path, "uuid"), fmt.Errorf("is required (it names the block)"))
		return
	}
	v, err := parse(a.value)
	if err != nil {
		d.skip(a.uuid, join(path, "value"), err)
		return
	}
	d.Items = append(d.Items, mispItem(a, v, now))
}

// mispValue is what an attribute's value names.
type mispValue struct {
	prefixes []netip.Prefix
	domains  []string
	port     string
}

func mispAddress(v string) (mispValue, error) {
	p, ok := parseAddressValue(strings.TrimSpace(v))
	if !ok {
		return mispValue{}, fmt.Errorf("%q is not an IP address or CIDR", clip(v, 64))
	}
	return mispValue{prefixes: []netip.Prefix{p}}, nil
}

// mispAddressPort reads "address|port" ("2001:db8::1|443" too).
func mispAddressPort(v string) (mispValue, error) {
	i := strings.LastIndexByte(v, '|')
	if i < 0 {
		return mispValue{}, fmt.Errorf("%q is not address|port", clip(v, 64))
	}
	out, err := mispAddress(strings.Trim(strings.TrimSpace(v[:i]), "[]"))
	if err != nil {
		return mispValue{}, err
	}
	port := strings.TrimSpace(v[i+1:])
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return mispValue{}, fmt.Errorf("%q is not a port", clip(port, 16))
	}
	out.port = strconv.FormatUint(n, 10)
	return out, nil
}

func mispDomain(v string) (mispValue, error) {
	d, ok := observableDomain(strings.TrimSpace(v))
	if !ok {
		return mispValue{}, fmt.Errorf("%q is not a domain name", clip(v, 64))
	}
	return mispValue{domains: []string{d}}, nil
}

// mispDomainAddress reads "domain|address".
func mispDomainAddress(v string) (mispValue, error) {
	name, addr, ok := strings.Cut(v, "|")
	if !ok {
		return mispValue{}, fmt.Errorf("%q is not domain|ip", clip(v, 64))
	}
	out, err := mispDomain(name)
	if err != nil {
		return mispValue{}, err
	}
	ip, err := mispAddress(addr)
	if err != nil {
		return mispValue{}, err
	}
	out.prefixes = ip.prefixes
	return out, nil
}

// mispItem builds the item of a usable attribute.
func mispItem(a *mispAttribute, v mispValue, now time.Time) ThreatItem {
	tags := append(slices.Clone(a.tags), a.event.tags...)
	it := ThreatItem{
		Source:     SourceMISP,
		Ref:        a.uuid,
		Name:       mispName(a),
		Kind:       threatKind(append(slices.Clone(tags), a.category)),
		Prefixes:   sortedPrefixes(v.prefixes),
		Domains:    sortedUnique(v.domains),
		Confidence: a.event.confidence,
		ValidFrom:  a.firstSeen,
	}
	if a.lastSeen.After(now) {
		it.ValidUntil = a.lastSeen
	}
	for _, t := range tags {
		if level, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(t)), "tlp:"); ok {
			it.TLP = moreRestrictiveTLP(it.TLP, tlpLevel(level))
		}
	}
	l := labelSet{}
	l.set("event", a.event.uuid)
	l.set("org", a.event.org)
	l.set("category", a.category)
	l.set("type", a.typ)
	l.set("port", v.port)
	l.set("object", a.object)
	l.set("object_relation", a.relation)
	l.set("tags", strings.Join(sortedUnique(tags), ","))
	if !a.firstSeen.IsZero() {
		l.set("first_seen", a.firstSeen.UTC().Format(time.RFC3339Nano))
	}
	if !a.lastSeen.IsZero() {
		l.set("last_seen", a.lastSeen.UTC().Format(time.RFC3339Nano))
	}
	it.Labels = l
	return it
}

// mispName is the event's info with the attribute's comment, or whichever
// there is, or the attribute itself.
func mispName(a *mispAttribute) string {
	info, comment := strings.TrimSpace(a.event.info), strings.TrimSpace(a.comment)
	switch {
	case info != "" && comment != "":
		return oneLine(info + ": " + comment)
	case info != "" || comment != "":
		return oneLine(info + comment)
	}
	return oneLine(a.typ + " " + a.value)
}

// decodeMISPTags reads a Tag list and returns the tag names.
func decodeMISPTags(raw json.RawMessage, path string) ([]string, error) {
	elems, err := readArray(raw, path, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, e := range elems {
		name, err := optionalMember(e, fmt.Sprintf("%s[%d]", path, i), "name")
		if err != nil {
			return nil, err
		}
		if name != "" {
			out = append(out, name)
		}
	}
	return out, nil
}

// decodeMISPBool reads a MISP flag: a JSON boolean, or 0/1 as a number or
// a string (older exports and some REST clients write it so).
func decodeMISPBool(raw json.RawMessage, path string) (bool, error) {
	switch jsonKind(raw) {
	case "boolean":
		return decodeBool(raw, path)
	case "number", "string":
		s, err := decodeMISPNumberText(raw, path)
		if err == nil && (s == "0" || s == "1") {
			return s == "1", nil
		}
	}
	return false, &indicator.FieldError{Field: path, Reason: "expected true or false (or 0 or 1), got " + clip(strings.TrimSpace(string(raw)), 32)}
}

// decodeMISPNumberText reads a number MISP writes as a JSON string ("2")
// or a JSON number, as text.
func decodeMISPNumberText(raw json.RawMessage, path string) (string, error) {
	if jsonKind(raw) == "number" {
		return decodeUintText(raw, path, 32)
	}
	s, err := decodeString(raw, path)
	return strings.TrimSpace(s), err
}

package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// SourceZeek is the Source of indicators decoded from Zeek's notice.log.
const SourceZeek = "zeek"

// DefaultZeekConfidence is a notice's confidence when the mapping sets
// none: Zeek's notices are heuristics over many connections.
const DefaultZeekConfidence = 0.8

// ZeekMapping says how Zeek notices map onto indicators. The zero value
// plus WithDefaults is a sensible setup.
//
// A notice's kind is the first of: NoteKinds by its note
// ("SSH::Password_Guessing"), NoteKinds by its module ("ProtocolDetector::*"),
// and, for a note of KindModule, the kind its name spells
// ("Warden::C2_Beacon" is c2_beacon). Notes are compared without regard to
// case, as configuration loaders change the case of map keys.
type ZeekMapping struct {
	// NoteKinds maps a note, or "Module::*" for every note of a module, to
	// a kind. WithDefaults merges these over DefaultZeekNoteKinds; map a
	// note to "" to switch a default off.
	NoteKinds map[string]string `mapstructure:"note_kinds" json:"note_kinds,omitempty" yaml:"note_kinds,omitempty"`
	// KindModule names the module of custom notes whose name is a kind
	// ("Warden::Config_Tamper"). Default "Warden".
	KindModule string `mapstructure:"kind_module" json:"kind_module,omitempty" yaml:"kind_module,omitempty"`
	// NoteSeverities maps a note, or "Module::*", to a severity.
	// WithDefaults merges these over DefaultZeekNoteSeverities.
	NoteSeverities map[string]string `mapstructure:"note_severities" json:"note_severities,omitempty" yaml:"note_severities,omitempty"`
	// Severity of the notices NoteSeverities does not name. Default
	// "medium".
	Severity string `mapstructure:"severity" json:"severity,omitempty" yaml:"severity,omitempty"`
	// Confidence of every notice, in 0..1; 0 means DefaultZeekConfidence.
	Confidence float64 `mapstructure:"confidence" json:"confidence,omitempty" yaml:"confidence,omitempty"`
}

// DefaultZeekNoteKinds returns the notes Warden maps out of the box, from
// Zeek's own scripts: SSH password guessing (policy/protocols/ssh/
// detect-bruteforcing) is brute_force; scans (policy/misc/scan) are
// brute_force too, probing for a way in, so that the brute-force policies
// tell scans from outside (notify) from scans inside the site
// (investigate); a protocol on a port it does not belong to
// (policy/frameworks/dpd/detect-protocols) is unknown_destination,
// unexpected traffic to investigate. A fresh map each call.
func DefaultZeekNoteKinds() map[string]string {
	return map[string]string{
		"SSH::Password_Guessing":         string(indicator.BruteForce),
		"SSH::Login_By_Password_Guesser": string(indicator.BruteForce),
		"Scan::Port_Scan":                string(indicator.BruteForce),
		"Scan::Address_Scan":             string(indicator.BruteForce),
		"ProtocolDetector::*":            string(indicator.UnknownDestination),
	}
}

// DefaultZeekNoteSeverities returns the notes whose severity is not the
// mapping's default: a password guesser that then logged in is high. A
// fresh map each call.
func DefaultZeekNoteSeverities() map[string]string {
	return map[string]string{"SSH::Login_By_Password_Guesser": string(indicator.High)}
}

// WithDefaults fills KindModule, Severity and Confidence and merges the
// maps over their defaults, keys in lower case. Entries mapped to "" are
// kept (they switch a default off), so applying WithDefaults twice gives
// the same mapping. It does not change m.
func (m ZeekMapping) WithDefaults() ZeekMapping {
	if m.KindModule == "" {
		m.KindModule = "Warden"
	}
	if m.Severity == "" {
		m.Severity = string(indicator.Medium)
	}
	if m.Confidence == 0 {
		m.Confidence = DefaultZeekConfidence
	}
	m.NoteKinds = mergeKeyed(DefaultZeekNoteKinds(), m.NoteKinds, strings.ToLower)
	m.NoteSeverities = mergeKeyed(DefaultZeekNoteSeverities(), m.NoteSeverities, strings.ToLower)
	return m
}

// Validate reports the first entry that names an unknown kind or severity
// or is not a note ("Module::Name" or "Module::*"), and a severity,
// confidence or kind module out of range, as a FieldError naming the key.
func (m ZeekMapping) Validate() error {
	isNote := func(k string) string {
		if mod, rest, ok := strings.Cut(k, "::"); !ok || mod == "" || rest == "" {
			return `is not a note: expected "Module::Name" or "Module::*"`
		}
		return ""
	}
	if err := validateMap("note_kinds", m.NoteKinds, dotted, isNote, unknownKind); err != nil {
		return err
	}
	if err := validateMap("note_severities", m.NoteSeverities, dotted, isNote, unknownSeverity); err != nil {
		return err
	}
	if m.Severity != "" {
		if why := unknownSeverity(m.Severity); why != "" {
			return &indicator.FieldError{Field: "severity", Reason: why}
		}
	}
	if m.Confidence < 0 || m.Confidence > 1 {
		return &indicator.FieldError{Field: "confidence", Reason: "must be between 0 and 1"}
	}
	if strings.Contains(m.KindModule, ":") {
		return &indicator.FieldError{Field: "kind_module", Reason: `is a module name, without "::"`}
	}
	return nil
}

// DecodeZeek reads Zeek's notice.log and returns an Item per notice, in
// order. It takes the log as JSON lines (LogAscii::use_json=T; times as
// epoch seconds, ISO 8601 strings or epoch milliseconds, the
// JSON::TimestampFormat choices; an "id" object as well as flat
// "id.orig_h" keys) and as TSV with its header: #separator (written
// escaped, "\x09"), #set_separator, #empty_field, #unset_field, #path,
// #fields and #types, repeated when logs are concatenated. TSV values are
// unescaped (\xHH); the unset field ("-") is absent, the empty field
// ("(empty)") is an empty value.
//
// An error, meant as HTTP 400, is an *indicator.FieldError: on "body" when
// it is empty, neither form, or holds more than MaxIndicatorsPerRequest
// notices; on "#path" (or a record's "_path") when the log is another
// Zeek log than notice (or notice_alarm); on a header (#separator,
// #fields, #types) that cannot be used. A notice that cannot be understood
// (a line with the wrong number of columns, a field of the wrong type, no
// note) is an Item Skipped with a Reason naming the field
// (`notices[2]."id.resp_h": "x" is not an IP address (line 11)`); the
// others are decoded as usual. notices[i] is the Item's Index.
//
// The gateway is the inventory's owner of the first of dst, id.resp_h,
// src and id.orig_h that belongs to one; failing that, of a server that
// SSH::Password_Guessing lists in sub ("Sampled servers: …"), as that
// notice names only the guesser. The other addresses are observables. The
// kind comes from the note (see ZeekMapping), the summary from msg, else
// sub, else the note. Labels keep uid, fuid, the connection, src, dst, p,
// n, proto, sub and peer_descr. m is completed with WithDefaults, so the
// zero mapping works.
func DecodeZeek(body []byte, inv *inventory.Inventory, m ZeekMapping, now time.Time) (Decoded, error) {
	m = m.WithDefaults()
	start := skipSpace(body, 0)
	if start == len(body) {
		return Decoded{}, &indicator.FieldError{Field: "body", Reason: "is empty"}
	}
	var records []zeekRecord
	var err error
	switch body[start] {
	case '#':
		records, err = readZeekTSV(body)
	case '{', '[':
		records, err = readZeekJSON(body)
	default:
		err = &indicator.FieldError{Field: "body", Reason: "expected Zeek's notice.log: JSON lines (LogAscii::use_json) or TSV starting with its #separator header"}
	}
	if err != nil {
		return Decoded{}, err
	}
	if len(records) > MaxIndicatorsPerRequest {
		return Decoded{}, &indicator.FieldError{Field: "body", Reason: fmt.Sprintf("more than %d notices; send them in several requests", MaxIndicatorsPerRequest)}
	}
	d := Decoded{Items: make([]Item, len(records))}
	for i, rec := range records {
		d.Items[i] = mapZeekNotice(i, &rec, inv, &m, now)
	}
	return d, nil
}

// zeekRecord is one notice as read, or the reason it cannot be understood.
type zeekRecord struct {
	raw json.RawMessage
	n   zeekNotice
	err error
}

// zeekNotice is what Warden reads from a notice.
type zeekNotice struct {
	ts                     time.Time
	note, msg, sub         string
	uid, fuid, proto       string
	peerDescr              string
	origH, respH, src, dst netip.Addr
	origP, respP, p, count string
	hasNote                bool
	rawOrigH, rawRespH     string
	rawSrc, rawDst         string
}

// zeekNoticePath reports whether a #path or _path names the notice log.
func zeekNoticePath(p string) bool {
	return p == "notice" || p == "notice_alarm"
}

// readZeekJSON reads notice.log written as JSON lines.
func readZeekJSON(body []byte) ([]zeekRecord, error) {
	recs, err := splitJSONRecords(body, "body", "Zeek notice.log JSON objects")
	if err != nil {
		return nil, err
	}
	out := make([]zeekRecord, 0, len(recs))
	for i, rec := range recs {
		path := fmt.Sprintf("notices[%d]", i)
		r := zeekRecord{raw: rec.raw}
		if rec.raw == nil {
			r.raw, _ = json.Marshal(string(rec.bad))
			r.err = syntaxError(path, rec.err)
			out = append(out, r)
			continue
		}
		var logPath string
		r.err = decodeObject(rec.raw, path, false, func(key string, val json.RawMessage, field string) error {
			if key == "_path" {
				var err error
				logPath, err = decodeString(val, field)
				return err
			}
			return r.n.setJSON(key, val, field)
		})
		if logPath != "" && !zeekNoticePath(logPath) {
			return nil, &indicator.FieldError{Field: path + "._path", Reason: fmt.Sprintf("this is Zeek's %s log; only notice.log is taken", clip(logPath, 64))}
		}
		out = append(out, r)
	}
	return out, nil
}

// setJSON reads one member of a JSON notice.
func (z *zeekNotice) setJSON(key string, val json.RawMessage, field string) (err error) {
	switch key {
	case "id":
		if jsonKind(val) != "object" {
			return nil // not the conn_id record: someone else's field
		}
		return decodeObject(val, field, false, func(k string, v json.RawMessage, f string) error {
			return z.setJSON("id."+k, v, f)
		})
	case "ts":
		z.ts, err = decodeZeekJSONTime(val, field)
	case "id.orig_p", "id.resp_p", "p", "n":
		if jsonKind(val) == "string" { // a port written "22/tcp" by some shippers
			var s string
			if s, err = decodeString(val, field); err == nil {
				err = z.setText(key, s, field)
			}
			return err
		}
		var s string
		if s, err = decodeUintText(val, field, 64); err == nil {
			err = z.setText(key, s, field)
		}
	case "uid", "fuid", "proto", "note", "msg", "sub", "peer_descr",
		"id.orig_h", "id.resp_h", "src", "dst":
		var s string
		if s, err = decodeString(val, field); err == nil {
			err = z.setText(key, s, field)
		}
	}
	return err
}

// setText reads one field of a notice given as text (a TSV column, or a
// JSON string already decoded).
func (z *zeekNotice) setText(key, s, field string) error {
	addr := func(dst *netip.Addr, raw *string) error {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return &indicator.FieldError{Field: field, Reason: fmt.Sprintf("%q is not an IP address", clip(s, 64))}
		}
		*dst, *raw = a.Unmap(), s
		return nil
	}
	port := func(dst *string) error {
		num, _, _ := strings.Cut(strings.TrimSpace(s), "/")
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil {
			return &indicator.FieldError{Field: field, Reason: fmt.Sprintf("%q is not a port", clip(s, 32))}
		}
		*dst = strconv.FormatUint(n, 10)
		return nil
	}
	switch key {
	case "ts":
		t, err := parseZeekEpoch(s)
		if err != nil {
			return &indicator.FieldError{Field: field, Reason: fmt.Sprintf("expected epoch seconds like 1427726759.303199, got %q", clip(s, 64))}
		}
		z.ts = t
	case "uid":
		z.uid = s
	case "fuid":
		z.fuid = s
	case "proto":
		z.proto = s
	case "note":
		z.note, z.hasNote = s, true
	case "msg":
		z.msg = s
	case "sub":
		z.sub = s
	case "peer_descr":
		z.peerDescr = s
	case "id.orig_h":
		return addr(&z.origH, &z.rawOrigH)
	case "id.resp_h":
		return addr(&z.respH, &z.rawRespH)
	case "src":
		return addr(&z.src, &z.rawSrc)
	case "dst":
		return addr(&z.dst, &z.rawDst)
	case "id.orig_p":
		return port(&z.origP)
	case "id.resp_p":
		return port(&z.respP)
	case "p":
		return port(&z.p)
	case "n":
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return &indicator.FieldError{Field: field, Reason: fmt.Sprintf("%q is not a count", clip(s, 32))}
		}
		z.count = strconv.FormatUint(n, 10)
	}
	return nil
}

// decodeZeekJSONTime reads ts as Zeek's JSON writer puts it: epoch seconds
// (JSON::TS_EPOCH, the default), an ISO 8601 string (JSON::TS_ISO8601) or
// epoch milliseconds (JSON::TS_MILLIS, told apart by size: seconds stay
// below 10^11 until the year 5138).
func decodeZeekJSONTime(raw json.RawMessage, path string) (time.Time, error) {
	switch jsonKind(raw) {
	case "string":
		s, err := decodeString(raw, path)
		if err != nil {
			return time.Time{}, err
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
		if t, err := parseZeekEpoch(s); err == nil {
			return t, nil
		}
		return time.Time{}, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("expected an ISO 8601 time or epoch seconds, got %q", clip(s, 64))}
	case "number":
		s := string(bytes.TrimSpace(raw))
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 1e11 && ms/1000 <= maxZeekEpoch {
			return time.UnixMilli(ms).UTC(), nil
		}
		t, err := parseZeekEpoch(s)
		if err != nil {
			return time.Time{}, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("expected epoch seconds, got %s", clip(s, 64))}
		}
		return t, nil
	}
	return time.Time{}, typeError(path, "number or string", raw)
}

// maxZeekEpoch is the last second of year 9999: later times do not
// survive JSON encoding (RFC 3339 has four-digit years).
const maxZeekEpoch = 253402300799

var errNotEpoch = errors.New("not epoch seconds from 1970 to 9999")

// parseZeekEpoch reads epoch seconds with a fraction ("1427726759.303199")
// without the rounding a float64 would bring.
func parseZeekEpoch(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-") {
		return time.Time{}, errNotEpoch
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	var nsec int64
	switch {
	case err == nil && !hasFrac:
	case err == nil && len(frac) > 0 && len(frac) <= 9 && strings.Trim(frac, "0123456789") == "":
		nsec, _ = strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	default:
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || f < 0 || f > maxZeekEpoch {
			return time.Time{}, errNotEpoch
		}
		fs, fr := math.Modf(f)
		sec, nsec = int64(fs), int64(fr*1e9)
	}
	if sec < 0 || sec > maxZeekEpoch {
		return time.Time{}, errNotEpoch
	}
	return time.Unix(sec, nsec).UTC(), nil
}

// zeekTSV is the state of a TSV header.
type zeekTSV struct {
	sep, empty, unset string
	path              string
	fields            []string
}

// readZeekTSV reads notice.log written by Zeek's ASCII writer.
func readZeekTSV(body []byte) ([]zeekRecord, error) {
	h := zeekTSV{sep: "\t", empty: "(empty)", unset: "-"}
	var out []zeekRecord
	for n, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if err := h.header(line, n+1); err != nil {
				return nil, err
			}
			continue
		}
		if h.fields == nil {
			return nil, &indicator.FieldError{Field: "#fields", Reason: fmt.Sprintf("is required before the first record (line %d)", n+1)}
		}
		if len(out) == MaxIndicatorsPerRequest {
			return nil, &indicator.FieldError{Field: "body", Reason: fmt.Sprintf("more than %d notices; send them in several requests", MaxIndicatorsPerRequest)}
		}
		out = append(out, h.record(len(out), line, n+1))
	}
	return out, nil
}

// header reads one "#" line.
func (h *zeekTSV) header(line string, lineNo int) error {
	if rest, ok := strings.CutPrefix(line, "#separator"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		sep := zeekUnescape(strings.TrimSpace(rest))
		if sep == "" {
			return &indicator.FieldError{Field: "#separator", Reason: fmt.Sprintf("is empty (line %d)", lineNo)}
		}
		h.sep = sep
		return nil
	}
	name, value, _ := strings.Cut(line[1:], h.sep)
	switch name {
	case "empty_field":
		h.empty = value
	case "unset_field":
		h.unset = value
	case "path":
		if !zeekNoticePath(value) {
			return &indicator.FieldError{Field: "#path", Reason: fmt.Sprintf("this is Zeek's %s log; only notice.log is taken (line %d)", clip(value, 64), lineNo)}
		}
		h.path = value
	case "fields":
		fields := strings.Split(value, h.sep)
		seen := map[string]bool{}
		for _, f := range fields {
			if f == "" || seen[f] {
				return &indicator.FieldError{Field: "#fields", Reason: fmt.Sprintf("has an empty or repeated name %q (line %d)", clip(f, 64), lineNo)}
			}
			seen[f] = true
		}
		if !seen["note"] {
			return &indicator.FieldError{Field: "#fields", Reason: fmt.Sprintf("has no note column: not a notice.log (line %d)", lineNo)}
		}
		h.fields = fields
	case "types":
		if types := strings.Split(value, h.sep); h.fields != nil && len(types) != len(h.fields) {
			return &indicator.FieldError{Field: "#types", Reason: fmt.Sprintf("names %d types for %d fields (line %d)", len(types), len(h.fields), lineNo)}
		}
	}
	return nil
}

// record reads data line lineNo, the i-th notice.
func (h *zeekTSV) record(i int, line string, lineNo int) zeekRecord {
	path := fmt.Sprintf("notices[%d]", i)
	values := strings.Split(line, h.sep)
	var raw bytes.Buffer
	raw.WriteByte('{')
	if h.path != "" {
		raw.WriteString(`"_path":`)
		writeJSONString(&raw, h.path)
	}
	var r zeekRecord
	for j, v := range values {
		if j >= len(h.fields) {
			break
		}
		if v == h.unset {
			continue
		}
		if v == h.empty {
			v = ""
		} else {
			v = zeekUnescape(v)
		}
		if raw.Len() > 1 {
			raw.WriteByte(',')
		}
		writeJSONString(&raw, h.fields[j])
		raw.WriteByte(':')
		writeJSONString(&raw, v)
		if r.err == nil {
			r.err = r.n.setText(h.fields[j], v, join(path, h.fields[j]))
		}
	}
	raw.WriteByte('}')
	r.raw = raw.Bytes()
	if len(values) != len(h.fields) {
		r.err = &indicator.FieldError{Field: path, Reason: fmt.Sprintf("has %d columns, #fields names %d", len(values), len(h.fields))}
	}
	var fe *indicator.FieldError
	if errors.As(r.err, &fe) {
		r.err = &indicator.FieldError{Field: fe.Field, Reason: fmt.Sprintf("%s (line %d)", fe.Reason, lineNo)}
	}
	return r
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}

// zeekUnescape undoes the ASCII writer's \xHH escapes.
func zeekUnescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mapZeekNotice turns notice i into an Item.
func mapZeekNotice(i int, rec *zeekRecord, inv *inventory.Inventory, m *ZeekMapping, now time.Time) Item {
	it := newItem(i, rec.raw, SourceZeek, now)
	in := &it.Indicator
	z := &rec.n
	if rec.err == nil && !z.hasNote {
		rec.err = &indicator.FieldError{Field: fmt.Sprintf("notices[%d].note", i), Reason: "is required"}
	}
	if rec.err != nil {
		it.skip(rec.err)
		return it
	}
	if !z.ts.IsZero() {
		in.ObservedAt = z.ts
	}
	in.Confidence = m.Confidence
	in.Severity = zeekSeverity(z.note, m)
	in.Labels = zeekLabels(z)
	s := z.msg
	if strings.TrimSpace(s) == "" {
		s = z.sub
	}
	if strings.TrimSpace(s) == "" {
		s = z.note
	}
	in.Summary = oneLine(s)

	gw, remote, noGateway := zeekGateway(z, inv)
	in.Gateway = gw
	in.Observables.IPs = addressObservables(remote)
	kind, noKind := zeekKind(z.note, m)
	in.Kind = kind
	finishItem(&it, now, noGateway, noKind)
	return it
}

// zeekLookup finds note, else its module's "Module::*", in a table whose
// keys are in lower case.
func zeekLookup(table map[string]string, note string) (string, bool) {
	note = strings.ToLower(note)
	if v, ok := table[note]; ok {
		return v, true
	}
	if mod, _, ok := strings.Cut(note, "::"); ok {
		v, ok := table[mod+"::*"]
		return v, ok
	}
	return "", false
}

func zeekKind(note string, m *ZeekMapping) (indicator.Kind, string) {
	if k, ok := zeekLookup(m.NoteKinds, note); ok {
		if k == "" {
			return "", fmt.Sprintf("no usable kind: note %s is switched off", clip(note, 64))
		}
		return indicator.Kind(k), ""
	}
	if mod, name, ok := strings.Cut(note, "::"); ok && strings.EqualFold(mod, m.KindModule) {
		if k := indicator.Kind(strings.ToLower(name)); k.Valid() {
			return k, ""
		}
		return "", fmt.Sprintf("no usable kind: note %s names no known kind", clip(note, 64))
	}
	return "", fmt.Sprintf("no usable kind: note %s is not mapped and is not a %s:: note", clip(note, 64), m.KindModule)
}

func zeekSeverity(note string, m *ZeekMapping) indicator.Severity {
	if s, ok := zeekLookup(m.NoteSeverities, note); ok && indicator.Severity(s).Rank() > 0 {
		return indicator.Severity(s)
	}
	if s := indicator.Severity(m.Severity); s.Rank() > 0 {
		return s
	}
	return indicator.Medium
}

// zeekGateway finds the gateway among the notice's addresses and returns
// the addresses that are not its own.
func zeekGateway(z *zeekNotice, inv *inventory.Inventory) (string, []netip.Addr, string) {
	return gatewayOfAddresses(inv, []addressCandidate{{"dst", z.dst}, {"id.resp_h", z.respH}, {"src", z.src}, {"id.orig_h", z.origH}}, sampledServers(z.sub))
}

// sampledServers reads the servers SSH::Password_Guessing lists in sub:
// "Sampled servers:  192.168.56.103, 192.168.56.103".
func sampledServers(sub string) []netip.Addr {
	rest, ok := strings.CutPrefix(sub, "Sampled servers:")
	if !ok {
		return nil
	}
	var out []netip.Addr
	for f := range strings.FieldsFuncSeq(rest, func(r rune) bool { return r == ',' || r == ' ' }) {
		if a, err := netip.ParseAddr(f); err == nil && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func zeekLabels(z *zeekNotice) map[string]string {
	l := labelSet{}
	set := l.set
	set("note", z.note)
	set("uid", z.uid)
	set("fuid", z.fuid)
	set("proto", z.proto)
	set("id.orig_h", z.rawOrigH)
	set("id.orig_p", z.origP)
	set("id.resp_h", z.rawRespH)
	set("id.resp_p", z.respP)
	set("src", z.rawSrc)
	set("dst", z.rawDst)
	set("p", z.p)
	set("n", z.count)
	set("sub", z.sub)
	set("peer_descr", z.peerDescr)
	return l
}

package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// This file holds what the detector decoders (Suricata, Zeek, Wazuh,
// Falco) share, and what Alertmanager's mapping shares with them: cutting a
// body into records, starting and deciding an Item, finding the gateway,
// collecting observables, merging and validating the mappings' maps.

// DefaultDetectorConfidence is the confidence of a Wazuh or Falco alert when
// the mapping does not set one: their rules are deterministic, but a rule
// firing is not proof of compromise.
const DefaultDetectorConfidence = 0.8

// maxLabelLen bounds a label value taken from a record.
const maxLabelLen = 256

// jsonRecord is one top-level value of a JSON stream; bad holds the text
// of a value that is not JSON, err its syntax error.
type jsonRecord struct {
	raw json.RawMessage
	bad []byte
	err error
}

// maxBadRecord bounds how much of a record that is not JSON is kept as
// evidence.
const maxBadRecord = 4096

// maxResyncs bounds how often reading resumes after a record that is not
// JSON: each resumption may read to the end of the body again (an
// unclosed array swallows the lines after it), so a body of many broken
// lines must not cost the square of its size.
const maxResyncs = 16

// splitJSONRecords cuts a body of JSON values written one after another
// (newline-delimited, concatenated, pretty-printed) into records; a
// top-level array stands for its elements. A value that is not JSON
// becomes a bad record, and reading resumes at the next line that starts
// with "{" (every record of newline-delimited JSON does, and so does every
// object that jq pretty-prints); after maxResyncs such records the rest of
// the body is one last bad record. The body is refused, with a FieldError on
// path, when it is empty, or when it has records but none is a JSON object
// (what says which objects the format wants).
func splitJSONRecords(body []byte, path, what string) ([]jsonRecord, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &indicator.FieldError{Field: path, Reason: "is empty"}
	}
	var out []jsonRecord
	objects := 0
	var firstErr error
	add := func(raw json.RawMessage) {
		if jsonKind(raw) == "object" {
			objects++
		}
		out = append(out, jsonRecord{raw: raw})
	}
	base, resyncs := 0, 0
	for base < len(body) {
		dec := json.NewDecoder(bytes.NewReader(body[base:]))
		for {
			start := base + skipSpace(body[base:], int(dec.InputOffset()))
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if err == io.EOF {
				return finishRecords(out, objects, firstErr, path, what)
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = errors.New("unexpected end of input")
				}
				if firstErr == nil {
					firstErr = err
				}
				next := nextObjectLine(body, start)
				if resyncs++; resyncs == maxResyncs {
					next = len(body)
					err = fmt.Errorf("%w (the rest of the body, after %d records that are not JSON, is not read)", err, maxResyncs)
				}
				out = append(out, jsonRecord{bad: body[start:min(next, start+maxBadRecord)], err: err})
				base = next
				break
			}
			if jsonKind(raw) == "array" {
				elems, _ := readArray(raw, path, 0) // valid: the decoder read it
				for _, e := range elems {
					add(e)
				}
				continue
			}
			add(raw)
		}
	}
	return finishRecords(out, objects, firstErr, path, what)
}

func finishRecords(out []jsonRecord, objects int, firstErr error, path, what string) ([]jsonRecord, error) {
	if objects > 0 || len(out) == 0 {
		return out, nil
	}
	if firstErr != nil && len(out) == 1 {
		return nil, syntaxError(path, firstErr)
	}
	for _, r := range out {
		if r.raw != nil {
			return nil, &indicator.FieldError{Field: path, Reason: "expected " + what + ", got " + jsonKind(r.raw)}
		}
	}
	return nil, syntaxError(path, firstErr)
}

// detectorRecords says what a Wazuh or Falco body holds, for the error
// on a body without a single object.
const detectorRecords = "an object, an array of objects or a stream of objects"

// nextObjectLine returns the index of the first line after the one holding
// from that starts with "{", or len(b).
func nextObjectLine(b []byte, from int) int {
	for i := from; i < len(b)-1; i++ {
		if b[i] == '\n' && b[i+1] == '{' {
			return i + 1
		}
	}
	return len(b)
}

// decodeRecords decodes every record in order. decode returns false for a
// record that is not an alert, with the type it is counted under in
// Ignored. With limit > 0, a body of more than limit alerts is refused
// whole, the error naming them by noun.
func decodeRecords(records []jsonRecord, limit int, noun string, decode func(i int, rec jsonRecord) (Item, string, bool)) (Decoded, error) {
	var d Decoded
	for i, rec := range records {
		it, ignored, isAlert := decode(i, rec)
		if !isAlert {
			d.ignore(ignored)
			continue
		}
		if limit > 0 && len(d.Items) == limit {
			return Decoded{}, &indicator.FieldError{Field: "body", Reason: fmt.Sprintf("more than %d %s; send them in several requests", limit, noun)}
		}
		d.Items = append(d.Items, it)
	}
	return d, nil
}

// decodeDetectorBody decodes a Wazuh or Falco body: its records (see
// splitJSONRecords), each by decode, as decodeRecords does, without a
// limit.
func decodeDetectorBody(body []byte, noun string, decode func(i int, rec jsonRecord) (Item, string, bool)) (Decoded, error) {
	records, err := splitJSONRecords(body, "body", detectorRecords)
	if err != nil {
		return Decoded{}, err
	}
	return decodeRecords(records, 0, noun, decode)
}

// labelSet is an indicator's labels as a decoder collects them: values
// clipped, empty ones left out.
type labelSet map[string]string

func (l labelSet) set(k, v string) {
	if v != "" {
		l[k] = clip(v, maxLabelLen)
	}
}

// newItem starts the Item for record i, whose JSON is raw: firing, observed
// now, until the record says otherwise.
func newItem(i int, raw json.RawMessage, source string, now time.Time) Item {
	it := Item{Index: i}
	in := &it.Indicator
	in.Raw = bytes.Clone(raw) // never alias the caller's buffer
	in.Source = source
	in.ObservedAt = now
	in.Status = indicator.StatusFiring
	return it
}

// recordItem starts the Item for a record: Raw is the record's JSON (or,
// for text that is not JSON, that text as a JSON string, so that evidence
// keeps what was sent and stays JSON).
func recordItem(i int, rec jsonRecord, source string, now time.Time) Item {
	if rec.raw != nil {
		return newItem(i, rec.raw, source, now)
	}
	raw, _ := json.Marshal(string(rec.bad))
	return newItem(i, raw, source, now)
}

// skip marks an Item whose record cannot be understood; err names the field.
func (it *Item) skip(err error) {
	it.Skipped = true
	it.Reason = err.Error()
}

// finishItem decides an Item whose indicator is filled in: unmatched, with
// the reasons that are not "" joined, when there are any; else matched
// once the indicator is normalised and valid.
func finishItem(it *Item, now time.Time, reasons ...string) {
	if reasons = slices.DeleteFunc(reasons, func(r string) bool { return r == "" }); len(reasons) > 0 {
		it.Reason = strings.Join(reasons, "; ")
		return
	}
	in := &it.Indicator
	in.Normalize(now)
	if err := in.Validate(); err != nil {
		it.Reason = err.Error()
		return
	}
	it.Matched = true
}

// gatewayCandidate is a field of a detector record that may name a
// gateway, by id, hostname, VM name or address.
type gatewayCandidate struct {
	field, value string
}

// gatewayFromCandidates returns the first candidate that is a gateway of
// inv, or a reason naming what was tried.
func gatewayFromCandidates(inv *inventory.Inventory, cands []gatewayCandidate) (string, string) {
	var tried, fields []string
	for _, c := range cands {
		fields = append(fields, c.field)
		v := strings.TrimSpace(c.value)
		if v == "" {
			continue
		}
		if gw, ok := gatewayOfHostOrAddress(inv, v); ok {
			return gw.ID, ""
		}
		tried = append(tried, fmt.Sprintf("%s=%s", c.field, clip(v, 64)))
	}
	if len(tried) == 0 {
		return "", "no gateway: none of " + strings.Join(fields, ", ") + " is set"
	}
	return "", "no gateway: " + strings.Join(tried, ", ") + " is not a gateway of the inventory"
}

func gatewayOfHostOrAddress(inv *inventory.Inventory, v string) (inventory.Gateway, bool) {
	if gw, ok := inv.Gateway(v); ok {
		return gw, true
	}
	return gatewayByInstance(inv, v)
}

// addressCandidate is an address field of a network monitor's record
// (Suricata, Zeek); an invalid ip means the record has no such field.
type addressCandidate struct {
	field string
	ip    netip.Addr
}

// gatewayOfAddresses finds the gateway among a record's addresses, the
// candidates in order and then the fallback addresses, and returns the
// candidates' addresses that are not its own (the remote ends, to block);
// or, when no address belongs to a gateway, all of them and the reason.
func gatewayOfAddresses(inv *inventory.Inventory, cands []addressCandidate, fallback []netip.Addr) (string, []netip.Addr, string) {
	if inv == nil {
		inv = &inventory.Inventory{}
	}
	var set []addressCandidate
	var all []netip.Addr
	for _, c := range cands {
		if c.ip.IsValid() {
			set = append(set, c)
			all = append(all, c.ip)
		}
	}
	for _, ip := range append(slices.Clone(all), fallback...) {
		if gw, ok := gatewayByInstance(inv, ip.String()); ok {
			return gw.ID, othersThan(gw, all), ""
		}
	}
	if len(set) == 0 {
		fields := make([]string, len(cands))
		for i, c := range cands {
			fields[i] = c.field
		}
		return "", nil, "no " + orList(fields) + " to find a gateway by"
	}
	tried := make([]string, len(set))
	for i, c := range set {
		tried[i] = c.field + " " + c.ip.String()
	}
	return "", all, "no gateway has " + strings.Join(tried, " or ")
}

// orList writes "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// othersThan lists the addresses of ips that are not gw's own.
func othersThan(gw inventory.Gateway, ips []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		own := false
		for _, s := range gw.Addresses {
			if b, err := netip.ParseAddr(s); err == nil && b.Unmap() == ip {
				own = true
				break
			}
		}
		if !own {
			out = append(out, ip)
		}
	}
	return out
}

// addressObservables writes ips as observables: sorted, each once.
func addressObservables(ips []netip.Addr) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// detectorObservables collects the addresses, domains and SHA-256 hashes a
// detector names. A gateway's own address is left out: it is where the
// event happened, not something to block. Values that do not parse are
// dropped.
func detectorObservables(inv *inventory.Inventory, ips, domains, hashes []string) indicator.Observables {
	var o indicator.Observables
	add := func(list *[]string, v string) {
		if !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(s), "[]"))
		if err != nil {
			continue
		}
		if _, own := gatewayByInstance(inv, a.Unmap().String()); own {
			continue
		}
		add(&o.IPs, a.Unmap().String())
	}
	for _, s := range domains {
		if d, ok := observableDomain(strings.TrimSpace(s)); ok {
			add(&o.Domains, d)
		}
	}
	for _, s := range hashes {
		if h, ok := observableHash(s); ok {
			add(&o.Hashes, h)
		}
	}
	slices.Sort(o.IPs)
	slices.Sort(o.Domains)
	slices.Sort(o.Hashes)
	return o
}

// observableDomain keeps a host name that is a domain (not an address),
// in lower case without the final dot.
func observableDomain(s string) (string, bool) {
	if len(s) > 253 || !domainRe.MatchString(s) || !strings.Contains(strings.TrimSuffix(s, "."), ".") {
		return "", false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return "", false
	}
	return strings.ToLower(strings.TrimSuffix(s, ".")), true
}

// observableHash keeps a SHA-256 hash, in lower case.
func observableHash(s string) (string, bool) {
	if !sha256Re.MatchString(s) {
		return "", false
	}
	return strings.ToLower(s), true
}

// oneLine folds whitespace and clips s for a summary.
func oneLine(s string) string {
	return clip(strings.Join(strings.Fields(s), " "), maxSummaryLen)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mergeKeyed merges over into defaults (a fresh map, which it returns),
// every key normalised by key when key is set (configuration loaders
// change the case of map keys, people write "02"). Entries mapped to ""
// are kept: they switch a default off.
func mergeKeyed(defaults, over map[string]string, key func(string) string) map[string]string {
	if key == nil {
		maps.Copy(defaults, over)
		return defaults
	}
	out := make(map[string]string, len(defaults)+len(over))
	for k, v := range defaults {
		out[key(k)] = v
	}
	for k, v := range over {
		out[key(k)] = v
	}
	return out
}

// validateMap reports the first entry of a mapping's map (in key order,
// so that the error is stable) whose key or value is refused, as a
// FieldError on fieldOf(name, key): join quotes keys that are not plain
// names, dotted does not. checkKey, when set, and checkValue say why a
// key or value is refused, "" when it is fine.
func validateMap(name string, table map[string]string, fieldOf func(name, key string) string, checkKey, checkValue func(string) string) error {
	for _, key := range slices.Sorted(maps.Keys(table)) {
		if checkKey != nil {
			if why := checkKey(key); why != "" {
				return &indicator.FieldError{Field: fieldOf(name, key), Reason: why}
			}
		}
		if why := checkValue(table[key]); why != "" {
			return &indicator.FieldError{Field: fieldOf(name, key), Reason: why}
		}
	}
	return nil
}

// dotted is a field path name.key, the key as it is.
func dotted(name, key string) string { return name + "." + key }

// unknownKind refuses a kind map value that is not a kind; "" switches an
// entry off and is fine.
func unknownKind(v string) string {
	if v != "" && !indicator.Kind(v).Valid() {
		return fmt.Sprintf("unknown kind %q", v)
	}
	return ""
}

// unknownSeverity refuses a value that is not a severity.
func unknownSeverity(v string) string {
	if indicator.Severity(v).Rank() == 0 {
		return fmt.Sprintf("unknown severity %q (known: low, medium, high, critical)", v)
	}
	return ""
}

// validateConfidence refuses a completed mapping's confidence outside (0, 1].
func validateConfidence(c float64) error {
	if math.IsNaN(c) || c <= 0 || c > 1 {
		return &indicator.FieldError{Field: "confidence", Reason: fmt.Sprintf("must be in (0, 1], got %v", c)}
	}
	return nil
}

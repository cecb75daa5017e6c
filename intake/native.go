package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// MaxIndicatorsPerRequest bounds a native batch; a larger one is rejected
// whole so that one request cannot monopolise intake.
const MaxIndicatorsPerRequest = 1000

// maxFingerprintLen bounds a caller-supplied fingerprint (it becomes a
// storage key).
const maxFingerprintLen = 200

// DecodeNative reads Warden's own indicator JSON: either one indicator object
// or {"indicators": [...]} with at most MaxIndicatorsPerRequest entries.
//
// Decoding is strict: unknown or duplicate fields, wrong JSON types and a
// client-chosen "id" are errors that name the field with its path
// ("indicators[2].confidence: expected number, got string"). Each indicator
// is then normalised with now, validated, and its gateway looked up in inv
// (a nil inv knows no gateway). Any invalid indicator fails the whole
// request; the error is an *indicator.FieldError whose Field carries the path.
//
// An absent confidence stays 0 ("unknown"), so policies that require a
// confidence will not match it. When "raw" is absent, Raw is set to the
// indicator object as received, so evidence always has the original.
func DecodeNative(body []byte, inv *inventory.Inventory, now time.Time) ([]indicator.Indicator, error) {
	if err := checkJSON(body, "body"); err != nil {
		return nil, err
	}
	top, err := readMembers(body, "body")
	if err != nil {
		return nil, err
	}
	var batch json.RawMessage
	for _, m := range top {
		if m.key == "indicators" {
			batch = m.val
		}
	}
	if batch == nil {
		in, err := decodeIndicator(body, top, "", inv, now)
		if err != nil {
			return nil, err
		}
		return []indicator.Indicator{in}, nil
	}
	if len(top) != 1 {
		for _, m := range top {
			if m.key != "indicators" {
				return nil, &indicator.FieldError{Field: m.key, Reason: `unknown field (a batch body has only "indicators")`}
			}
		}
		return nil, &indicator.FieldError{Field: "indicators", Reason: "duplicate field"}
	}
	elems, err := readArray(batch, "indicators", MaxIndicatorsPerRequest)
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, &indicator.FieldError{Field: "indicators", Reason: "is empty"}
	}
	out := make([]indicator.Indicator, 0, len(elems))
	for i, raw := range elems {
		path := fmt.Sprintf("indicators[%d]", i)
		ms, err := readMembers(raw, path)
		if err != nil {
			return nil, err
		}
		in, err := decodeIndicator(raw, ms, path, inv, now)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// decodeIndicator builds one indicator from the members of its object.
func decodeIndicator(raw json.RawMessage, ms []member, path string, inv *inventory.Inventory, now time.Time) (indicator.Indicator, error) {
	var in indicator.Indicator
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		field := join(path, m.key)
		if seen[m.key] {
			return in, &indicator.FieldError{Field: field, Reason: "duplicate field"}
		}
		seen[m.key] = true
		if isNull(m.val) && m.key != "raw" {
			continue // null means absent
		}
		var err error
		switch m.key {
		case "id":
			err = &indicator.FieldError{Field: field, Reason: "is assigned by Warden; do not send it"}
		case "kind":
			var s string
			s, err = decodeString(m.val, field)
			in.Kind = indicator.Kind(s)
		case "gateway":
			in.Gateway, err = decodeString(m.val, field)
		case "severity":
			var s string
			s, err = decodeString(m.val, field)
			in.Severity = indicator.Severity(s)
		case "confidence":
			in.Confidence, err = decodeNumber(m.val, field)
		case "observables":
			in.Observables, err = decodeObservables(m.val, field)
		case "observed_at":
			in.ObservedAt, err = decodeTime(m.val, field)
		case "source":
			in.Source, err = decodeString(m.val, field)
		case "summary":
			in.Summary, err = decodeString(m.val, field)
		case "status":
			in.Status, err = decodeString(m.val, field)
		case "fingerprint":
			in.Fingerprint, err = decodeString(m.val, field)
			if err == nil && len(in.Fingerprint) > maxFingerprintLen {
				err = &indicator.FieldError{Field: field, Reason: fmt.Sprintf("is longer than %d characters", maxFingerprintLen)}
			}
		case "labels":
			in.Labels, err = decodeStringMap(m.val, field)
		case "raw":
			if !isNull(m.val) {
				in.Raw = bytes.Clone(m.val) // never alias the caller's buffer
			}
		default:
			err = &indicator.FieldError{Field: field, Reason: "unknown field"}
		}
		if err != nil {
			return in, err
		}
	}
	if in.Raw == nil {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return in, syntaxError(path, err)
		}
		in.Raw = buf.Bytes()
	}
	in.Normalize(now)
	if err := in.Validate(); err != nil {
		return in, prefixed(path, err)
	}
	if err := checkGateway(inv, in.Gateway); err != nil {
		return in, prefixed(path, err)
	}
	return in, nil
}

func decodeObservables(raw json.RawMessage, path string) (indicator.Observables, error) {
	var o indicator.Observables
	err := decodeObject(raw, path, true, func(key string, val json.RawMessage, field string) (err error) {
		switch key {
		case "ips":
			o.IPs, err = decodeStringList(val, field)
		case "domains":
			o.Domains, err = decodeStringList(val, field)
		case "hashes":
			o.Hashes, err = decodeStringList(val, field)
		default:
			err = &indicator.FieldError{Field: field, Reason: "unknown field (known: ips, domains, hashes)"}
		}
		return err
	})
	return o, err
}

func checkGateway(inv *inventory.Inventory, id string) error {
	if inv != nil {
		if _, ok := inv.Gateway(id); ok {
			return nil
		}
	}
	return &indicator.FieldError{Field: "gateway", Reason: fmt.Sprintf("unknown gateway %q", clip(id, 64))}
}

package charon

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/strongswan/govici/vici"

	"github.com/warden-ir/warden/agent/wire"
)

// maxDepth bounds the nesting of a decoded message: charon's deepest
// replies (list-sas: SA, children, child) are four levels deep.
const maxDepth = 16

// ToWire converts a govici message to its JSON form, keeping the order of
// keys. A nil message becomes nil.
func ToWire(m *vici.Message) wire.VICIMessage {
	if m == nil {
		return nil
	}
	out := make(wire.VICIMessage, 0, len(m.Keys()))
	for _, k := range m.Keys() {
		el := wire.VICIElement{Key: k}
		switch v := m.Get(k).(type) {
		case string:
			if utf8.ValidString(v) {
				el.Value = &v
			} else {
				el.Bytes = []byte(v)
			}
		case []string:
			el.IsList = true
			if slices.ContainsFunc(v, func(s string) bool { return !utf8.ValidString(s) }) {
				for _, s := range v {
					el.ListBytes = append(el.ListBytes, []byte(s))
				}
			} else {
				el.List = v
			}
		case *vici.Message:
			el.Section, el.IsSection = ToWire(v), true
		default:
			continue // govici holds nothing else
		}
		out = append(out, el)
	}
	return out
}

// FromWire converts the JSON form back to a govici message. nil stays nil.
// It refuses an element with no value or more than one, a repeated key,
// and nesting deeper than charon ever sends.
func FromWire(w wire.VICIMessage) (*vici.Message, error) {
	if w == nil {
		return nil, nil
	}
	return fromWire(w, 0)
}

func fromWire(w wire.VICIMessage, depth int) (*vici.Message, error) {
	if depth > maxDepth {
		return nil, errors.New("decoding a VICI message: nested too deeply")
	}
	m := vici.NewMessage()
	seen := make(map[string]bool, len(w))
	for _, el := range w {
		if el.Key == "" {
			return nil, errors.New("decoding a VICI message: an element has no key")
		}
		if seen[el.Key] {
			return nil, fmt.Errorf("decoding a VICI message: key %q repeated", el.Key)
		}
		seen[el.Key] = true
		kinds := 0
		if el.Value != nil || el.Bytes != nil {
			kinds++
		}
		if el.Value != nil && el.Bytes != nil {
			kinds++
		}
		if el.IsList || el.List != nil || el.ListBytes != nil {
			kinds++
		}
		if el.List != nil && el.ListBytes != nil {
			kinds++
		}
		if el.IsSection || el.Section != nil {
			kinds++
		}
		if kinds != 1 {
			return nil, fmt.Errorf("decoding a VICI message: key %q needs exactly one of a value, a list or a section", el.Key)
		}
		var err error
		switch {
		case el.Value != nil || el.Bytes != nil:
			err = m.Set(el.Key, el.Text())
		case el.IsList || el.List != nil || el.ListBytes != nil:
			l := el.List
			for _, b := range el.ListBytes {
				l = append(l, string(b))
			}
			if l == nil {
				l = []string{}
			}
			err = m.Set(el.Key, l)
		default:
			var sec *vici.Message
			if sec, err = fromWire(el.Section, depth+1); err == nil {
				if sec == nil {
					sec = vici.NewMessage()
				}
				err = m.Set(el.Key, sec)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("decoding a VICI message: key %q: %w", el.Key, err)
		}
	}
	return m, nil
}

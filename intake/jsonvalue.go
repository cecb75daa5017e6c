package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warden-ir/warden/indicator"
)

// member is one key/value pair of a JSON object, in document order.
type member struct {
	key string
	val json.RawMessage
}

// jsonKind names the JSON type of a raw value the way error messages show it.
func jsonKind(raw json.RawMessage) string {
	b := bytes.TrimLeft(raw, " \t\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func isNull(raw json.RawMessage) bool { return jsonKind(raw) == "null" }

// syntaxError turns a JSON syntax error into a FieldError for path.
func syntaxError(path string, err error) *indicator.FieldError {
	return &indicator.FieldError{Field: path, Reason: "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
}

// checkJSON validates a whole body once; the walkers below rely on it.
func checkJSON(body []byte, path string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &indicator.FieldError{Field: path, Reason: "is empty"}
	}
	if !json.Valid(body) {
		return syntaxError(path, json.Unmarshal(body, new(any)))
	}
	return nil
}

// readMembers lists the members of a JSON object in document order,
// duplicates included so that strict callers can reject them. raw must be
// part of a document checkJSON accepted. Values alias raw.
func readMembers(raw []byte, path string) ([]member, error) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, typeError(path, "object", raw)
	}
	var out []member
	i = skipSpace(raw, i+1)
	if raw[i] == '}' {
		return out, nil
	}
	for {
		end := stringEnd(raw, i)
		key, err := unquote(raw[i:end], path)
		if err != nil {
			return nil, err
		}
		i = skipSpace(raw, end) // ':'
		i = skipSpace(raw, i+1)
		vend := valueEnd(raw, i)
		out = append(out, member{key, raw[i:vend]})
		i = skipSpace(raw, vend)
		if raw[i] == '}' {
			return out, nil
		}
		i = skipSpace(raw, i+1) // ','
	}
}

// decodeObject reads the members of the object raw at path and hands each
// whose value is not null (null means absent) to decode, with its field
// path, stopping at the first error. With unique, a repeated key is an
// error.
func decodeObject(raw json.RawMessage, path string, unique bool, decode func(key string, val json.RawMessage, field string) error) error {
	ms, err := readMembers(raw, path)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, m := range ms {
		field := join(path, m.key)
		if unique && seen[m.key] {
			return &indicator.FieldError{Field: field, Reason: "duplicate field"}
		}
		seen[m.key] = true
		if isNull(m.val) {
			continue
		}
		if err := decode(m.key, m.val, field); err != nil {
			return err
		}
	}
	return nil
}

// readArray lists the elements of a JSON array (same preconditions as
// readMembers), failing as soon as more than limit are seen (limit <= 0: no
// limit).
func readArray(raw []byte, path string, limit int) ([]json.RawMessage, error) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return nil, typeError(path, "array", raw)
	}
	var out []json.RawMessage
	i = skipSpace(raw, i+1)
	if raw[i] == ']' {
		return out, nil
	}
	for {
		if limit > 0 && len(out) == limit {
			return nil, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("more than %d elements", limit)}
		}
		vend := valueEnd(raw, i)
		out = append(out, raw[i:vend])
		i = skipSpace(raw, vend)
		if raw[i] == ']' {
			return out, nil
		}
		i = skipSpace(raw, i+1) // ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringEnd returns the index just after the string starting at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just after the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
		j++
	}
	return j
}

// unquote decodes a JSON string literal, without the decoder for the common
// case of no escapes.
func unquote(b []byte, path string) (string, error) {
	if len(b) >= 2 && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) {
		return string(b[1 : len(b)-1]), nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", syntaxError(path, err)
	}
	return s, nil
}

// join appends key to a field path. Keys that are not plain names (empty,
// spaces, dots, quotes) are quoted so that the path stays readable and
// unambiguous.
func join(path, key string) string {
	if !plainKey(key) {
		key = strconv.Quote(clip(key, 64))
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func typeError(path, want string, raw json.RawMessage) *indicator.FieldError {
	return &indicator.FieldError{Field: path, Reason: "expected " + want + ", got " + jsonKind(raw)}
}

func decodeString(raw json.RawMessage, path string) (string, error) {
	if jsonKind(raw) != "string" {
		return "", typeError(path, "string", raw)
	}
	return unquote(bytes.TrimSpace(raw), path)
}

func decodeNumber(raw json.RawMessage, path string) (float64, error) {
	if jsonKind(raw) != "number" {
		return 0, typeError(path, "number", raw)
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
	if err != nil {
		return 0, &indicator.FieldError{Field: path, Reason: "number out of range"}
	}
	return f, nil
}

func decodeStringList(raw json.RawMessage, path string) ([]string, error) {
	elems, err := readArray(raw, path, 0)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(elems))
	for i, e := range elems {
		s, err := decodeString(e, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// decodeStringMap reads an object whose values are all strings. Duplicate
// keys keep the last value, as JSON decoders conventionally do.
func decodeStringMap(raw json.RawMessage, path string) (map[string]string, error) {
	ms, err := readMembers(raw, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		s, err := decodeString(m.val, join(path, m.key))
		if err != nil {
			return nil, err
		}
		out[m.key] = s
	}
	return out, nil
}

func decodeTime(raw json.RawMessage, path string) (time.Time, error) {
	s, err := decodeString(raw, path)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &indicator.FieldError{Field: path, Reason: fmt.Sprintf("expected an RFC 3339 time, got %q", clip(s, 64))}
	}
	return t, nil
}

// clip shortens s for use in a message so that a hostile payload cannot
// blow up error strings.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// prefixed adds path in front of a FieldError's field (other errors are
// wrapped with the path).
func prefixed(path string, err error) error {
	if path == "" || err == nil {
		return err
	}
	var fe *indicator.FieldError
	if errors.As(err, &fe) {
		return &indicator.FieldError{Field: path + "." + fe.Field, Reason: fe.Reason}
	}
	return fmt.Errorf("%s: %w", path, err)
}

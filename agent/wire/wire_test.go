package wire

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

func TestNewCommand(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("JST", 9*3600))
	seen := map[string]bool{}
	for range 100 {
		c, err := NewCommand(KindConfirm, ConfirmParams{Generation: 7}, now, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !ValidNonce(c.ID) || seen[c.ID] {
			t.Fatalf("nonce %q invalid or repeated", c.ID)
		}
		seen[c.ID] = true
		if c.IssuedAt.Location() != time.UTC || c.ExpiresAt.Sub(c.IssuedAt) != 30*time.Second {
			t.Fatalf("times %v %v", c.IssuedAt, c.ExpiresAt)
		}
		var p ConfirmParams
		if err := json.Unmarshal(c.Params, &p); err != nil || p.Generation != 7 {
			t.Fatalf("params %s: %v", c.Params, err)
		}
	}
}

func TestValidNonce(t *testing.T) {
	tests := map[string]struct {
		id   string
		want bool
	}{
		"128 bits of hex": {"0123456789abcdef0123456789abcdef", true},
		"upper case":      {"0123456789ABCDEF0123456789abcdef", false},
		"too short":       {"0123456789abcdef", false},
		"not hex":         {"0123456789abcdef0123456789abcdeg", false},
		"empty":           {"", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ValidNonce(tc.id); got != tc.want {
				t.Fatalf("ValidNonce(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(IsolateParams{ConfirmWindow: Duration(45 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"confirm_window":"45s"}` {
		t.Fatalf("encoded %s", b)
	}
	var p IsolateParams
	if err := json.Unmarshal(b, &p); err != nil || time.Duration(p.ConfirmWindow) != 45*time.Second {
		t.Fatalf("decoded %v: %v", p.ConfirmWindow, err)
	}
	if err := json.Unmarshal([]byte(`{"confirm_window":"soon"}`), &p); err == nil {
		t.Fatal("bad duration accepted")
	}
}

func TestCanonicalPrefix(t *testing.T) {
	if got := CanonicalPrefix(netip.MustParsePrefix("::ffff:192.0.2.9/120")); got.String() != "192.0.2.0/24" {
		t.Errorf("CanonicalPrefix = %s, want 192.0.2.0/24", got)
	}
	if got := CanonicalPrefix(netip.MustParsePrefix("fd00::9/64")); got.String() != "fd00::/64" {
		t.Errorf("CanonicalPrefix = %s, want fd00::/64", got)
	}
}

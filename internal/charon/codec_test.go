package charon_test

import (
	"crypto/rand"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/strongswan/govici/vici"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/charon"
)

// jsonRoundTrip sends m across JSON as the agent's wire type does and
// returns the wire form as received and the message decoded from it.
func jsonRoundTrip(t *testing.T, m *vici.Message) (wire.VICIMessage, *vici.Message) {
	t.Helper()
	raw, err := json.Marshal(charon.ToWire(m))
	if err != nil {
		t.Fatal(err)
	}
	var w wire.VICIMessage
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	back, err := charon.FromWire(w)
	if err != nil {
		t.Fatal(err)
	}
	return w, back
}

func TestWireCodecRoundTrip(t *testing.T) {
	child := vici.NewMessage()
	_ = child.Set("state", "INSTALLED")
	_ = child.Set("local-ts", []string{"10.0.1.0/24", "fd00:1::/64"})
	sa := vici.NewMessage()
	_ = sa.Set("uniqueid", "7")
	_ = sa.Set("child-sas", child)
	_ = sa.Set("empty", []string{})
	m := vici.NewMessage()
	_ = m.Set("hq", sa)
	_ = m.Set("zz", "last")
	_ = m.Set("aa", "order kept")

	_, back := jsonRoundTrip(t, m)
	if got, want := back.Keys(), []string{"hq", "zz", "aa"}; !reflect.DeepEqual(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
	if back.String() != m.String() {
		t.Errorf("round trip changed the message:\n%s\nwant\n%s", back, m)
	}
	got := back.Get("hq").(*vici.Message)
	if l, ok := got.Get("empty").([]string); !ok || len(l) != 0 {
		t.Errorf("empty list came back as %#v", got.Get("empty"))
	}
	if m, _ := charon.FromWire(nil); m != nil {
		t.Errorf("nil message decoded to %v", m)
	}
}

func TestWireCodecRefusesMalformed(t *testing.T) {
	v := "x"
	deep := wire.VICIMessage{{Key: "k", Value: &v}}
	for range 20 {
		deep = wire.VICIMessage{{Key: "k", Section: deep, IsSection: true}}
	}
	for name, w := range map[string]wire.VICIMessage{
		"no key":         {{Value: &v}},
		"no value":       {{Key: "k"}},
		"two kinds":      {{Key: "k", Value: &v, List: []string{"a"}}},
		"text and bytes": {{Key: "k", Value: &v, Bytes: []byte{0xff}}},
		"list both ways": {{Key: "k", List: []string{"a"}, ListBytes: [][]byte{{0xff}}}},
		"repeated key":   {{Key: "k", Value: &v}, {Key: "k", Value: &v}},
		"nested deeply":  deep,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := charon.FromWire(w); err == nil {
				t.Errorf("FromWire accepted %s", name)
			}
		})
	}
}

// VICI values are bytes; keys and DER blobs are not UTF-8 and must cross
// the JSON form unchanged.
func TestWireCodecKeepsBinaryValues(t *testing.T) {
	psk := make([]byte, 32)
	if _, err := rand.Read(psk); err != nil {
		t.Fatal(err)
	}
	psk[0], psk[1] = 0xff, 0xfe // never valid UTF-8
	m := vici.NewMessage()
	_ = m.Set("data", string(psk))
	_ = m.Set("type", "IKE")
	_ = m.Set("certs", []string{"text", string(psk)})
	w, back := jsonRoundTrip(t, m)
	if got, _ := back.Get("data").(string); got != string(psk) {
		t.Errorf("binary value changed crossing JSON: % x", got)
	}
	if got, _ := back.Get("certs").([]string); len(got) != 2 || got[0] != "text" || got[1] != string(psk) {
		t.Errorf("binary list changed crossing JSON: %q", got)
	}
	if got, _ := back.Get("type").(string); got != "IKE" || w[1].Value == nil {
		t.Errorf("text value %q, element %+v; want it kept as text", got, w[1])
	}
}

package intake

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// testNow is the intake time used throughout the tests.
var testNow = time.Date(2025, 3, 14, 3, 10, 0, 0, time.UTC)

// testInventory is a four-site VPN: hq, an HA pair in osaka, a factory and
// an empty data-centre site.
func testInventory(tb testing.TB) *inventory.Inventory {
	tb.Helper()
	inv := &inventory.Inventory{
		Sites: []inventory.Site{
			{Name: "hq", TimeZone: "Asia/Tokyo"},
			{Name: "osaka", TimeZone: "Asia/Tokyo"},
			{Name: "factory", TimeZone: "Asia/Tokyo"},
			{Name: "dc"},
		},
		Gateways: []inventory.Gateway{
			{ID: "gw-hq", Site: "hq", VM: "gw-hq", Hostname: "gw-hq.corp.example",
				Addresses: []string{"203.0.113.10", "10.10.0.1", "2001:db8:10::1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-osaka-a", Site: "osaka", Hostname: "gw-osaka-a.corp.example",
				Addresses: []string{"203.0.113.20", "10.20.0.1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-osaka-b", Site: "osaka", Hostname: "gw-osaka-b.corp.example",
				Addresses: []string{"203.0.113.21", "10.20.0.2"}, ManagementNetworks: []string{"192.168.100.0/24"}},
			{ID: "gw-factory", Site: "factory",
				Addresses: []string{"203.0.113.30", "10.30.0.1", "2001:db8:30::1"}, ManagementNetworks: []string{"192.168.100.0/24"}},
		},
		Tunnels: []inventory.Tunnel{
			{A: "gw-hq", B: "gw-osaka-a", Kind: inventory.KindWireGuard},
			{A: "gw-hq", B: "gw-osaka-b", Kind: inventory.KindWireGuard},
			{A: "gw-hq", B: "gw-factory", Kind: inventory.KindStrongSwan},
		},
	}
	if err := inv.Validate(); err != nil {
		tb.Fatalf("test inventory: %v", err)
	}
	return inv
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func testdataFiles(tb testing.TB, pattern string) map[string][]byte {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(names) == 0 {
		tb.Fatalf("no testdata matches %s: %v", pattern, err)
	}
	out := map[string][]byte{}
	for _, n := range names {
		out[filepath.Base(n)] = readTestdata(tb, filepath.Base(n))
	}
	return out
}

// checkEachInput runs fn, named name in messages, on every input of tests
// in a subtest of its own, wanting the value tests gives for it.
func checkEachInput[T ~string](t *testing.T, name string, fn func(string) T, tests map[string]T) {
	t.Helper()
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := fn(in); got != want {
				t.Errorf("%s(%q) = %q, want %q", name, in, got, want)
			}
		})
	}
}

// testTime parses an RFC 3339 time a test wants.
func testTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// checkFuzzedError checks a decoder's error: a FieldError naming a field.
func checkFuzzedError(t *testing.T, err error) {
	t.Helper()
	var fe *indicator.FieldError
	if !errors.As(err, &fe) || fe.Field == "" {
		t.Fatalf("error does not name a field: %T %v", err, err)
	}
}

// fuzzedBody says what a decoder's result must look like beyond what
// every decoder keeps.
type fuzzedBody struct {
	// records names the records in a skipped item's reason ("alerts").
	records string
	// limit, when > 0, is the most items a body may give.
	limit int
	// dense: every record is an item, so Index is the item's position.
	dense bool
}

// checkFuzzedDecode is the property every item decoder keeps, whatever
// the body: no panic; an error names a field and comes alone; items are in
// increasing record order with JSON Raw; a skipped item names its record
// and is not matched; an unmatched one says why; a matched one has no
// reason, validates, names a gateway of inv and is normalised; the whole
// marshals (it is stored and answered as JSON) and Ignored counts are
// positive under short keys.
func checkFuzzedDecode(t *testing.T, inv *inventory.Inventory, body fuzzedBody, d Decoded, err error) {
	t.Helper()
	if err != nil {
		checkFuzzedError(t, err)
		if len(d.Items) != 0 || len(d.Ignored) != 0 {
			t.Fatalf("error %v with %d items, %d ignored", err, len(d.Items), len(d.Ignored))
		}
		return
	}
	if body.limit > 0 && len(d.Items) > body.limit {
		t.Fatalf("%d items", len(d.Items))
	}
	for i, it := range d.Items {
		if i > 0 && it.Index <= d.Items[i-1].Index {
			t.Fatalf("[%d] index %d after %d", i, it.Index, d.Items[i-1].Index)
		}
		if body.dense && it.Index != i {
			t.Fatalf("[%d] index %d", i, it.Index)
		}
		if len(it.Indicator.Raw) == 0 || !json.Valid(it.Indicator.Raw) {
			t.Fatalf("[%d] raw is not JSON: %q", i, it.Indicator.Raw)
		}
		if it.Skipped && (it.Matched || !strings.HasPrefix(it.Reason, fmt.Sprintf("%s[%d]", body.records, it.Index))) {
			t.Fatalf("[%d] skipped, matched %t, reason %q does not name the record", i, it.Matched, it.Reason)
		}
		if !it.Matched {
			if it.Reason == "" {
				t.Fatalf("[%d] unmatched without a reason", i)
			}
			continue
		}
		if it.Reason != "" {
			t.Fatalf("[%d] matched with reason %q", i, it.Reason)
		}
		if err := it.Indicator.Validate(); err != nil {
			t.Fatalf("[%d] matched but invalid: %v", i, err)
		}
		if _, ok := inv.Gateway(it.Indicator.Gateway); !ok {
			t.Fatalf("[%d] matched unknown gateway %q", i, it.Indicator.Gateway)
		}
		if it.Indicator.Fingerprint == "" {
			t.Fatalf("[%d] not normalised", i)
		}
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatalf("decoded body does not marshal: %v", err)
	}
	for k, n := range d.Ignored {
		if n <= 0 || len([]rune(k)) > 65 {
			t.Fatalf("ignored %q: %d", k, n)
		}
	}
}

// detectorDecode decodes a body with one mapping, for the table tests
// every detector format shares.
type detectorDecode func(body []byte) (Decoded, error)

// checkBodyRefused wants each body refused with a FieldError on "body".
func checkBodyRefused(t *testing.T, decode detectorDecode, bodies []string) {
	t.Helper()
	for _, body := range bodies {
		_, err := decode([]byte(body))
		var fe *indicator.FieldError
		if !errors.As(err, &fe) || fe.Field != "body" {
			t.Errorf("%q: error %v, want a FieldError on body", body, err)
		}
	}
}

// checkSkipsNamingTheField wants each body (one record) decoded into one
// skipped item whose reason is the wanted one (with prefix, starts with
// it).
func checkSkipsNamingTheField(t *testing.T, decode detectorDecode, tests map[string]string, prefix bool) {
	t.Helper()
	for body, want := range tests {
		d, err := decode([]byte(body))
		if err != nil {
			t.Errorf("%s: %v", body, err)
			continue
		}
		if len(d.Items) != 1 || !d.Items[0].Skipped || !(d.Items[0].Reason == want || prefix && strings.HasPrefix(d.Items[0].Reason, want)) {
			t.Errorf("%s: items %+v, want one skipped with %q", body, d.Items, want)
		}
	}
}

// checkGatewayOrder decodes record(fields) for each key of tests and wants
// its one item about the gateway tests gives.
func checkGatewayOrder(t *testing.T, decode detectorDecode, record func(fields string) string, tests map[string]string) {
	t.Helper()
	for fields, want := range tests {
		d, err := decode([]byte(record(fields)))
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Items) != 1 || d.Items[0].Indicator.Gateway != want {
			t.Errorf("%s: items %+v, want gateway %s", fields, d.Items, want)
		}
	}
}

// matchedGateways lists the gateways of the matched items, in order.
func matchedGateways(d Decoded) []string {
	var gws []string
	for _, it := range d.Items {
		if it.Matched {
			gws = append(gws, it.Indicator.Gateway)
		}
	}
	return gws
}

// checkValidateFields wants each mapping refused by Validate with a
// FieldError on the field tests gives.
func checkValidateFields[M interface {
	comparable
	Validate() error
}](t *testing.T, tests map[M]string) {
	t.Helper()
	for m, field := range tests {
		err := m.Validate()
		var fe *indicator.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%+v: %v, want a FieldError on %s", m, err, field)
		}
	}
}

package intake

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/warden-ir/warden/indicator"
)

func FuzzDecodeNative(f *testing.F) {
	for _, b := range testdataFiles(f, "native_*.json") {
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `{"indicators":[]}`, `{"indicators":[{}]}`, `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":0.5}`} {
		f.Add([]byte(s))
	}
	inv := testInventory(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeNative(body, inv, testNow)
		if err != nil {
			if got != nil {
				t.Fatalf("error %v with %d indicators", err, len(got))
			}
			var fe *indicator.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error does not name a field: %T %v", err, err)
			}
			return
		}
		if len(got) == 0 || len(got) > MaxIndicatorsPerRequest {
			t.Fatalf("%d indicators without error", len(got))
		}
		for i, in := range got {
			if err := in.Validate(); err != nil {
				t.Fatalf("[%d] accepted an invalid indicator: %v", i, err)
			}
			if _, ok := inv.Gateway(in.Gateway); !ok {
				t.Fatalf("[%d] accepted unknown gateway %q", i, in.Gateway)
			}
			if in.Fingerprint == "" || len(in.Raw) == 0 {
				t.Fatalf("[%d] not normalised", i)
			}
		}
	})
}

func FuzzDecodeAlertmanager(f *testing.F) {
	for _, b := range testdataFiles(f, "am_*.json") {
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `{"alerts":[]}`, `{"alerts":[1,{},null]}`, `{"alerts":[{"labels":{"instance":"[::1]:9"}}]}`,
		`{"version":3,"groupKey":18446744073709551615,"alerts":[{"status":{"state":"suppressed"}}]}`,
		`{"alerts":[{"labels":{"gateway":"","site":null},"startsAt":"","endsAt":""}]}`} {
		f.Add([]byte(s))
	}
	inv := testInventory(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := DecodeAlertmanager(body, inv, AlertmanagerMapping{}, testNow)
		if err != nil {
			var fe *indicator.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error does not name a field: %T %v", err, err)
			}
			return
		}
		for i, it := range items {
			if it.Index != i || len(it.Indicator.Raw) == 0 {
				t.Fatalf("[%d] index %d, raw %q", i, it.Index, it.Indicator.Raw)
			}
			if it.Skipped && (it.Matched || !strings.HasPrefix(it.Reason, fmt.Sprintf("alerts[%d]", i))) {
				t.Fatalf("[%d] skipped, matched %t, reason %q does not name the alert", i, it.Matched, it.Reason)
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
		}
	})
}

func BenchmarkDecodeNative(b *testing.B) {
	inv := testInventory(b)
	for name, body := range map[string][]byte{
		"single":     readTestdata(b, "native_single.json"),
		"batch-1000": []byte(batchOf(MaxIndicatorsPerRequest)),
	} {
		b.Run(name, func(b *testing.B) {
			n, err := DecodeNative(body, inv, testNow)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeNative(body, inv, testNow); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(n))/b.Elapsed().Seconds(), "indicators/s")
		})
	}
}

func BenchmarkDecodeAlertmanager(b *testing.B) {
	inv := testInventory(b)
	body := readTestdata(b, "am_firing_multi.json")
	items, err := DecodeAlertmanager(body, inv, AlertmanagerMapping{}, testNow)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeAlertmanager(body, inv, AlertmanagerMapping{}, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(items))/b.Elapsed().Seconds(), "alerts/s")
}

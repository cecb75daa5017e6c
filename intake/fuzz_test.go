package intake

import (
	"testing"
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
			checkFuzzedError(t, err)
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
		checkFuzzedDecode(t, inv, fuzzedBody{records: "alerts", dense: true}, Decoded{Items: items}, err)
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

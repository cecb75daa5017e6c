package intake

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
)

func TestDecodeNativeAccepts(t *testing.T) {
	inv := testInventory(t)
	tests := map[string]struct {
		body     string
		gateways []string
	}{
		"single from testdata": {body: string(readTestdata(t, "native_single.json")), gateways: []string{"gw-hq"}},
		"batch from testdata":  {body: string(readTestdata(t, "native_batch.json")), gateways: []string{"gw-osaka-a", "gw-factory", "gw-hq"}},
		"null optional fields": {
			body:     `{"kind":"crash","gateway":"gw-hq","severity":"low","confidence":null,"labels":null,"observables":{"ips":null},"raw":null}`,
			gateways: []string{"gw-hq"},
		},
		"exactly the maximum batch": {body: batchOf(MaxIndicatorsPerRequest), gateways: repeat("gw-hq", MaxIndicatorsPerRequest)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeNative([]byte(tc.body), inv, testNow)
			if err != nil {
				t.Fatalf("DecodeNative: %v", err)
			}
			if len(got) != len(tc.gateways) {
				t.Fatalf("got %d indicators, want %d", len(got), len(tc.gateways))
			}
			for i, in := range got {
				if in.Gateway != tc.gateways[i] {
					t.Errorf("[%d] gateway %q, want %q", i, in.Gateway, tc.gateways[i])
				}
				if err := in.Validate(); err != nil {
					t.Errorf("[%d] not valid: %v", i, err)
				}
				if in.Fingerprint == "" || len(in.Raw) == 0 || in.Status == "" || in.ObservedAt.IsZero() {
					t.Errorf("[%d] not normalised: %+v", i, in)
				}
			}
		})
	}
}

func TestDecodeNativeNormalises(t *testing.T) {
	got, err := DecodeNative(readTestdata(t, "native_batch.json"), testInventory(t), testNow)
	if err != nil {
		t.Fatal(err)
	}
	first, second, third := got[0], got[1], got[2]

	if first.Status != indicator.StatusFiring || !first.ObservedAt.Equal(testNow) {
		t.Errorf("defaults not applied: status %q observed %v", first.Status, first.ObservedAt)
	}
	if want := first.ComputeFingerprint(); first.Fingerprint != want {
		t.Errorf("fingerprint %q, want computed %q", first.Fingerprint, want)
	}
	var rawFirst map[string]any
	if err := json.Unmarshal(first.Raw, &rawFirst); err != nil || rawFirst["source"] != "fail2ban" {
		t.Errorf("raw should be the indicator as received, got %s (%v)", first.Raw, err)
	}
	if strings.ContainsAny(string(first.Raw), "\n") {
		t.Errorf("raw should be compacted: %q", first.Raw)
	}

	if second.Fingerprint != "aide-etc-wireguard-wg0" {
		t.Errorf("caller fingerprint lost: %q", second.Fingerprint)
	}
	if string(second.Raw) != `{"file": "/etc/wireguard/wg0.conf"}` {
		t.Errorf("caller raw lost: %s", second.Raw)
	}

	wantObserved := time.Date(2025, 3, 14, 3, 0, 0, 0, time.UTC)
	if third.Status != indicator.StatusResolved || !third.ObservedAt.Equal(wantObserved) {
		t.Errorf("third: status %q observed %v, want resolved at %v", third.Status, third.ObservedAt, wantObserved)
	}
}

func TestDecodeNativeRejects(t *testing.T) {
	inv := testInventory(t)
	valid := `{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":0.9}`
	tests := map[string]struct {
		body string
		want string // the whole error message
	}{
		"empty body":        {``, "body: is empty"},
		"not JSON":          {`{"kind":`, "body: invalid JSON: unexpected end of JSON input"},
		"garbage":           {`kind=c2`, "body: invalid JSON: invalid character 'k' looking for beginning of value"},
		"top-level array":   {`[` + valid + `]`, "body: expected object, got array"},
		"top-level string":  {`"x"`, "body: expected object, got string"},
		"trailing data":     {valid + valid, "body: invalid JSON: invalid character '{' after top-level value"},
		"unknown field":     {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","colour":"red"}`, "colour: unknown field"},
		"field name case":   {`{"Kind":"c2_beacon","gateway":"gw-hq","severity":"high"}`, "Kind: unknown field"},
		"duplicate field":   {`{"kind":"c2_beacon","gateway":"gw-hq","gateway":"gw-osaka-a","severity":"high"}`, "gateway: duplicate field"},
		"id sent":           {`{"id":"x","kind":"c2_beacon","gateway":"gw-hq","severity":"high"}`, "id: is assigned by Warden; do not send it"},
		"confidence string": {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":"0.9"}`, "confidence: expected number, got string"},
		"kind number":       {`{"kind":3,"gateway":"gw-hq","severity":"high"}`, "kind: expected string, got number"},
		"missing kind":      {`{"gateway":"gw-hq","severity":"high"}`, "kind: is required"},
		"unknown kind":      {`{"kind":"bad_vibes","gateway":"gw-hq","severity":"high"}`, `kind: unknown kind "bad_vibes"`},
		"unknown gateway":   {`{"kind":"c2_beacon","gateway":"x","severity":"high"}`, `gateway: unknown gateway "x"`},
		"wildcard gateway":  {`{"kind":"c2_beacon","gateway":"*","severity":"high"}`, "gateway: wildcards are not allowed"},
		"confidence > 1":    {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":1.5}`, "confidence: must be between 0 and 1"},
		"huge number":       {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":1e999}`, "confidence: number out of range"},
		"bad time":          {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observed_at":"yesterday"}`, `observed_at: expected an RFC 3339 time, got "yesterday"`},
		"labels not object": {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","labels":["a"]}`, "labels: expected object, got array"},
		"label value type":  {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","labels":{"sid":2027865}}`, "labels.sid: expected string, got number"},
		"observable type":   {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observables":{"ips":[1]}}`, "observables.ips[0]: expected string, got number"},
		"observable key":    {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observables":{"urls":[]}}`, "observables.urls: unknown field (known: ips, domains, hashes)"},
		"long fingerprint":  {`{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","fingerprint":"` + strings.Repeat("f", 201) + `"}`, "fingerprint: is longer than 200 characters"},

		"batch not array":       {`{"indicators":{}}`, "indicators: expected array, got object"},
		"batch empty":           {`{"indicators":[]}`, "indicators: is empty"},
		"batch too large":       {batchOf(MaxIndicatorsPerRequest + 1), "indicators: more than 1000 elements"},
		"batch extra key":       {`{"indicators":[` + valid + `],"dry_run":true}`, `dry_run: unknown field (a batch body has only "indicators")`},
		"batch duplicate key":   {`{"indicators":[` + valid + `],"indicators":[]}`, "indicators: duplicate field"},
		"batch element type":    {`{"indicators":[` + valid + `,` + valid + `,{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","confidence":"high"}]}`, "indicators[2].confidence: expected number, got string"},
		"batch element scalar":  {`{"indicators":[` + valid + `,7]}`, "indicators[1]: expected object, got number"},
		"batch unknown gateway": {`{"indicators":[` + valid + `,{"kind":"c2_beacon","gateway":"gw-mars","severity":"high"}]}`, `indicators[1].gateway: unknown gateway "gw-mars"`},
		"batch bad ip":          {`{"indicators":[{"kind":"c2_beacon","gateway":"gw-hq","severity":"high","observables":{"ips":["10.0.0.1","10.0.0.999"]}}]}`, `indicators[0].observables.ips[1]: "10.0.0.999" is not an IP address`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeNative([]byte(tc.body), inv, testNow)
			if err == nil {
				t.Fatalf("accepted %d indicators, want error %q", len(got), tc.want)
			}
			var fe *indicator.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not a *indicator.FieldError: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n got  %q\n want %q", err.Error(), tc.want)
			}
		})
	}
}

func TestDecodeNativeNilInventoryKnowsNoGateway(t *testing.T) {
	_, err := DecodeNative(readTestdata(t, "native_single.json"), nil, testNow)
	if err == nil || err.Error() != `gateway: unknown gateway "gw-hq"` {
		t.Fatalf("got %v", err)
	}
}

func batchOf(n int) string {
	var b strings.Builder
	b.WriteString(`{"indicators":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kind":"brute_force","gateway":"gw-hq","severity":"medium","confidence":0.5,"source":"test","observables":{"ips":["198.51.100.%d"]}}`, i%250)
	}
	b.WriteString(`]}`)
	return b.String()
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

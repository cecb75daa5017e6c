package intake

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/warden-ir/warden/indicator"
)

func TestDecodeSTIXFixtures(t *testing.T) {
	c2Phases := map[string]string{"kill_chain_phases": "Network activity", "created_by_ref": "identity--a0c22599-9e58-4da4-96ac-7051603fa951"}
	tests := []struct {
		file    string
		items   []wantThreat
		skipped []wantSkip
		ignored map[string]int
	}{
		{file: "stix_c2_ip.json", items: []wantThreat{{
			ref: "indicator--33fe3b22-0201-47cf-85d0-97c02164528d", name: "IP Address for known C2 channel",
			prefixes: []string{"10.0.0.0/32"}, confidence: DefaultThreatConfidence, validFrom: "2014-05-08T09:00:00Z",
			labels: map[string]string{"pattern": "[ipv4-addr:value = '10.0.0.0']", "indicator_types": "malicious-activity", "sightings": ""},
		}}},
		// STIX 2.0: labels instead of indicator_types; a pattern with a
		// colon where a dot belongs.
		{file: "stix_c2_with_coa.json",
			items: []wantThreat{{
				ref: "indicator--53fe3b22-0201-47cf-85d0-97c02164528d", name: "IP Address for known C2 channel",
				prefixes: []string{"10.0.0.0/32"}, confidence: DefaultThreatConfidence, validFrom: "2014-05-08T09:00:00Z",
				labels: map[string]string{"labels": "ip-watchlist", "created_by_ref": "identity--f690c992-8e7d-4b9a-9303-3312616c0220"},
			}},
			skipped: []wantSkip{{ref: "indicator--a932fcc6-e032-176c-126f-cb970a5a1ade", field: "objects[3].pattern",
				reason: "malformed pattern at offset 12: expected a comparison operator, got ':'"}},
			ignored: map[string]int{"identity": 1, "malware": 1, "course-of-action": 1, "relationship": 3},
		},
		// The sighting is of a URL indicator: linked, so not ignored, but
		// nothing to block.
		{file: "stix_sighting_url.json",
			skipped: []wantSkip{{ref: "indicator--9299f726-ce06-492e-8472-2b52ccb53191", field: "objects[2].pattern", reason: "unsupported: object type url"}},
			ignored: map[string]int{"identity": 2},
		},
		// The example's own typo (ipv4addr) makes its indicator unusable;
		// its TLP marking definition is read, not ignored.
		{file: "stix_marking_definitions.json",
			skipped: []wantSkip{{ref: "indicator--33fe3b22-0201-47cf-85d0-97c02164528d", field: "objects[3].pattern", reason: "unsupported: object type ipv4addr"}},
			ignored: map[string]int{"identity": 1},
		},
		// A bundle written without "type".
		{file: "stix_tlp2_green_no_type.json", ignored: map[string]int{"identity": 1, "threat-actor": 1, "relationship": 1}},
		// What MISP exports: a domain is recorded; domain|ip and filename
		// patterns are outside the subset.
		{file: "stix_misp_attributes.json",
			items: []wantThreat{{
				ref: "indicator--4bb235a7-7d25-4aef-802f-2c6b45c5eceb", name: "Domain test attribute",
				domains: []string{"circl.lu"}, confidence: DefaultThreatConfidence, validFrom: "2020-10-25T16:22:00Z",
				labels: map[string]string{"labels": `misp:type="domain",misp:category="Network activity",misp:to_ids="True"`},
			}},
			skipped: []wantSkip{
				{ref: "indicator--726f90e2-2ad6-44a2-b345-c05e55e850e5", field: "objects[3].pattern", reason: "unsupported: object path domain-name:resolves_to_refs[*].value (at offset 36)"},
				{ref: "indicator--02de0847-dccf-481a-a96a-6a7654328658", field: "objects[4].pattern", reason: "unsupported: object type file"},
			},
			ignored: map[string]int{"identity": 1, "observed-data": 1},
		},
		{file: "stix_misp_ip.json", items: []wantThreat{
			{ref: "indicator--91ae0a21-c7ae-4c7f-b84b-b84a7ce53d1f", name: "Source IP test attribute", prefixes: []string{"1.2.3.4/32"},
				confidence: DefaultThreatConfidence, validFrom: "2020-10-25T16:22:00Z", labels: c2Phases},
			{ref: "indicator--518b4bcb-a86b-4783-9457-391d548b605b", name: "Destination IP test attribute", prefixes: []string{"5.6.7.8/32"},
				confidence: DefaultThreatConfidence, validFrom: "2020-10-25T16:22:00Z", labels: c2Phases},
		}},
		// A port narrows what the indicator matches: blocking the whole
		// address would block more than the feed says.
		{file: "stix_misp_ip_port.json", skipped: []wantSkip{
			{ref: "indicator--91ae0a21-c7ae-4c7f-b84b-b84a7ce53d1f", field: "objects[0].pattern", reason: "unsupported: network-traffic:src_port narrows the block"},
			{ref: "indicator--518b4bcb-a86b-4783-9457-391d548b605b", field: "objects[1].pattern", reason: "unsupported: network-traffic:dst_port narrows the block"},
		}},
		{file: "stix_lifecycle.json",
			items: []wantThreat{
				{ref: "indicator--0e8a5c7b-6f1d-4b2e-9a3c-1d2e3f4a5b6c", name: "C2 servers of campaign Lantern", // the version modified last
					prefixes: []string{"198.51.100.7/32", "2001:db8:bad::/48"}, tlp: "TLP:AMBER+STRICT", confidence: 0.85,
					validFrom: "2025-01-01T00:00:00Z", validTill: "2025-06-01T00:00:00Z",
					labels: map[string]string{"sightings": "4", "first_seen": "2025-01-15T00:00:00Z", "last_seen": "2025-03-10T12:00:00Z"}},
				{ref: "indicator--7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d", name: "Exfiltration drop", kind: indicator.Exfiltration,
					prefixes: []string{"2001:db8:ee::1/128"}, domains: []string{"drop.example.net", "upload.example.net"},
					tlp: "TLP:RED", confidence: DefaultThreatConfidence, validFrom: "2025-02-01T00:00:00Z",
					labels: map[string]string{"kill_chain_phases": "exfiltration", "sightings": ""}},
			},
			skipped: []wantSkip{
				{ref: "indicator--3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", field: "objects[5].revoked", reason: "the indicator is revoked"},
				{ref: "indicator--4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a", field: "objects[6].valid_until", reason: "expired: 2024-12-31T00:00:00Z is past"},
				{ref: "indicator--5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b", field: "objects[7].indicator_types", reason: "says benign: nothing to block"},
				{ref: "indicator--6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c", field: "objects[8].pattern_type", reason: `unsupported: pattern_type "snort"`},
			},
			ignored: map[string]int{"identity": 1, "sighting": 1},
		},
		{file: "stix_partly_bad.json",
			items: []wantThreat{
				{ref: "indicator--22222222-2222-4222-8222-222222222222", name: "[ipv4-addr:value = '198.51.100.2']",
					prefixes: []string{"198.51.100.2/32"}, confidence: DefaultThreatConfidence, validFrom: "2025-01-01T00:00:00Z"},
				{ref: "indicator--88888888-8888-4888-8888-888888888888", name: "[domain-name:value = 'c2.example.org']",
					domains: []string{"c2.example.org"}, confidence: DefaultThreatConfidence, validFrom: "2025-01-01T00:00:00Z"},
			},
			skipped: []wantSkip{
				{field: "objects[0]", reason: "expected object, got number"},
				{ref: "indicator--11111111-1111-4111-8111-111111111111", field: "objects[1].type", reason: "is required"},
				{ref: "indicator--33333333-3333-4333-8333-333333333333", field: "objects[3].pattern", reason: "expected string, got number"},
				{ref: "indicator--44444444-4444-4444-8444-444444444444", field: "objects[4].confidence", reason: "must be an integer from 0 to 100, got 150"},
				{ref: "attack-pattern--55555555-5555-4555-8555-555555555555", field: "objects[5].id", reason: "expected indicator--<uuid>"},
				{ref: "indicator--66666666-6666-4666-8666-666666666666", field: "objects[6].pattern", reason: "malformed pattern at offset 33: expected ']', got end of pattern"},
				{ref: "sighting--77777777-7777-4777-8777-777777777777", field: "objects[7].sighting_of_ref", reason: "is required"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d, err := DecodeSTIX(readTestdata(t, tt.file), testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkThreatDecoded(t, SourceSTIX, d, tt.items, tt.skipped, tt.ignored)
		})
	}
}

func TestDecodeSTIXGarbageNamesTheField(t *testing.T) {
	tests := map[string]string{ // body: field
		"":                               "body",
		"<html>":                         "body",
		`{"type":"bundle","objects":[1,`: "body",
		"[]":                             "body",
		`"bundle"`:                       "body",
		`{}`:                             "body",
		`{"id":"bundle--1"}`:             "body",
		`{"type":"indicator","pattern":"[x:y=1]"}`: "type",
		`{"type":7,"objects":[]}`:                  "type",
		`{"type":"bundle","objects":{}}`:           "objects",
		`{"type":"bundle","objects":"indicator"}`:  "objects",
	}
	for body, field := range tests {
		_, err := DecodeSTIX([]byte(body), testNow)
		var fe *indicator.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%q: error %v, want a FieldError on %s", body, err, field)
		}
	}
	// An empty bundle and an envelope are fine.
	for _, body := range []string{`{"type":"bundle","id":"bundle--1"}`, `{"type":"bundle","objects":[]}`, `{"more":false,"objects":[]}`} {
		if d, err := DecodeSTIX([]byte(body), testNow); err != nil || len(d.Items)+len(d.Skipped)+len(d.Ignored) != 0 {
			t.Errorf("%s: %+v, %v", body, d, err)
		}
	}
}

// TestDecodeSTIXValidity checks the indicator's own time window against
// now, at the edges.
func TestDecodeSTIXValidity(t *testing.T) {
	indicatorWith := func(fields string) string {
		return `{"type":"bundle","objects":[{"type":"indicator","id":"indicator--0f0e0d0c-0000-4000-8000-000000000001",` +
			`"pattern":"[ipv4-addr:value = '192.0.2.1']","pattern_type":"stix"` + fields + `}]}`
	}
	tests := map[string]string{ // fields: the skip reason, "" for an item
		`,"valid_from":"2025-01-01T00:00:00Z"`:                                      "",
		`,"valid_from":"2026-01-01T00:00:00Z"`:                                      "", // not yet valid: the controller holds it until then
		`,"valid_until":"2025-03-14T03:10:00.000001Z"`:                              "",
		`,"valid_until":"2025-03-14T03:10:00Z"`:                                     "objects[0].valid_until: expired: 2025-03-14T03:10:00Z is past",
		`,"valid_from":"2025-05-01T00:00:00Z","valid_until":"2025-04-01T00:00:00Z"`: "objects[0].valid_until: is not after valid_from",
		`,"valid_until":"14 March 2025"`:                                            `objects[0].valid_until: expected an RFC 3339 time, got "14 March 2025"`,
		`,"revoked":false`:                                                          "",
		`,"revoked":"false"`:                                                        "objects[0].revoked: expected boolean, got string",
		`,"indicator_types":["anomalous-activity","Benign"]`:                        "objects[0].indicator_types: says benign: nothing to block",
		`,"confidence":0`:                                                           "",
		`,"confidence":99.5`:                                                        "objects[0].confidence: must be an integer from 0 to 100, got 99.5",
		`,"object_marking_refs":"marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"`: "objects[0].object_marking_refs: expected array, got string",
		`,"kill_chain_phases":[{"kill_chain_name":"lockheed-martin-cyber-kill-chain"}]`:     "",
		`,"kill_chain_phases":[{"phase_name":5}]`:                                           "objects[0].kill_chain_phases[0].phase_name: expected string, got number",
	}
	for fields, want := range tests {
		d, err := DecodeSTIX([]byte(indicatorWith(fields)), testNow)
		if err != nil {
			t.Fatalf("%s: %v", fields, err)
		}
		switch {
		case want == "" && (len(d.Items) != 1 || len(d.Skipped) != 0):
			t.Errorf("%s: items %+v skipped %+v, want one item", fields, d.Items, d.Skipped)
		case want != "" && (len(d.Items) != 0 || len(d.Skipped) != 1 || d.Skipped[0].Field+": "+d.Skipped[0].Reason != want):
			t.Errorf("%s: items %+v skipped %+v, want %q", fields, d.Items, d.Skipped, want)
		}
	}
}

// TestDecodeSTIXMarkings reads TLP from every kind of marking: TLP 1.0 and
// 2.0 ids without the definition, a definition in the bundle by its
// definition, its TLP 2.0 extension or its name; statements are no TLP.
func TestDecodeSTIXMarkings(t *testing.T) {
	bundle := func(markings, refs string) string {
		return `{"type":"bundle","objects":[` + markings + `{"type":"indicator","id":"indicator--0f0e0d0c-0000-4000-8000-000000000002",` +
			`"pattern":"[ipv4-addr:value = '192.0.2.2']","object_marking_refs":[` + refs + `]}]}`
	}
	custom := `"marking-definition--0f0e0d0c-0000-4000-8000-00000000000a"`
	tests := map[string]struct{ markings, refs, want string }{
		"none":             {"", "", ""},
		"TLP 1.0 white":    {"", `"marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"`, "TLP:WHITE"},
		"TLP 1.0 red":      {"", `"marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"`, "TLP:RED"},
		"TLP 2.0 clear":    {"", `"marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"`, "TLP:CLEAR"},
		"TLP 2.0 green":    {"", `"marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"`, "TLP:GREEN"},
		"most restrictive": {"", `"marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb","marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"`, "TLP:RED"},
		"definition":       {`{"type":"marking-definition","id":` + custom + `,"definition_type":"tlp","definition":{"tlp":"amber"}},`, custom, "TLP:AMBER"},
		"extension": {`{"type":"marking-definition","id":` + custom + `,"extensions":{"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d":{"extension_type":"property-extension","tlp_2_0":"amber+strict"}}},`,
			custom, "TLP:AMBER+STRICT"},
		"name":      {`{"type":"marking-definition","id":` + custom + `,"name":"TLP:GREEN"},`, custom, "TLP:GREEN"},
		"statement": {`{"type":"marking-definition","id":` + custom + `,"definition_type":"statement","definition":{"statement":"Copyright"}},`, custom, ""},
		"unknown":   {"", custom, ""},
		"malformed": {`{"type":"marking-definition","id":` + custom + `,"definition":"tlp:red","extensions":7,"name":["TLP:RED"]},`, custom, ""},
	}
	for name, tt := range tests {
		d, err := DecodeSTIX([]byte(bundle(tt.markings, tt.refs)), testNow)
		if err != nil || len(d.Items) != 1 || d.Items[0].TLP != tt.want {
			t.Errorf("%s: %+v, %v, want TLP %q", name, d, err, tt.want)
		}
	}
}

func FuzzDecodeSTIX(f *testing.F) {
	for _, b := range testdataFiles(f, "stix_*.json") {
		f.Add(b)
	}
	for _, b := range testdataFiles(f, "taxii_*.json") {
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `[]`, `{"type":"bundle"}`, `{"objects":[1,{},null,{"type":"indicator"}]}`,
		`{"type":"bundle","objects":[{"type":"indicator","id":"indicator--1","pattern":"[ipv4-addr:value = '1.2.3.4']","valid_until":"2030-01-01T00:00:00Z"},` +
			`{"type":"sighting","id":"sighting--1","sighting_of_ref":"indicator--1","count":3}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeSTIX(body, testNow)
		checkFuzzedThreat(t, SourceSTIX, d, err)
		for _, it := range d.Items {
			if !strings.HasPrefix(it.Ref, "indicator--") {
				t.Fatalf("item of %q", it.Ref)
			}
			if !it.ValidUntil.IsZero() && !it.ValidUntil.After(testNow) {
				t.Fatalf("expired item %+v", it)
			}
		}
	})
}

// BenchmarkDecodeSTIX decodes a feed-sized bundle: 10,000 indicators of
// one address or network each, every tenth with a sighting.
func BenchmarkDecodeSTIX(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"type":"bundle","id":"bundle--0f0e0d0c-0000-4000-8000-000000000000","objects":[`)
	const n = 10000
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"type":"indicator","spec_version":"2.1","id":"indicator--0f0e0d0c-0000-4000-8000-%012d",`+
			`"created":"2025-01-01T00:00:00.000Z","modified":"2025-01-01T00:00:00.000Z","indicator_types":["malicious-activity"],`+
			`"pattern":"[ipv4-addr:value = '10.%d.%d.0/24' OR network-traffic:dst_ref.value = '198.51.%d.%d']","pattern_type":"stix",`+
			`"valid_from":"2025-01-01T00:00:00Z","confidence":80,"object_marking_refs":["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]}`,
			i, i/256%256, i%256, i/256%256, i%256)
		if i%10 == 0 {
			fmt.Fprintf(&sb, `,{"type":"sighting","id":"sighting--0f0e0d0c-0000-4000-8000-%012d","sighting_of_ref":"indicator--0f0e0d0c-0000-4000-8000-%012d","count":2}`, i, i)
		}
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	d, err := DecodeSTIX(body, testNow)
	if err != nil || len(d.Items) != n {
		b.Fatalf("%d items, %v", len(d.Items), err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeSTIX(body, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "indicators/s")
}

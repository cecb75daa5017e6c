package intake

import (
	"errors"
	"testing"

	"github.com/warden-ir/warden/indicator"
)

func TestDecodeMISPFixtures(t *testing.T) {
	const (
		converterEvent = "a6ef17d6-91cb-4a05-b10b-2f045daf874c"
		converterName  = "MISP-STIX-Converter test event"
		high           = 0.85 // threat_level_id 1
	)
	network := func(ref, comment string, prefixes, domains []string, labels map[string]string) wantThreat {
		labels["event"], labels["org"], labels["category"] = converterEvent, "MISP-Project", "Network activity"
		name := converterName
		if comment != "" {
			name += ": " + comment
		}
		return wantThreat{ref: ref, name: name, prefixes: prefixes, domains: domains, tlp: "TLP:AMBER", confidence: high, labels: labels}
	}
	sednit := func(ref, domain string) wantThreat {
		return wantThreat{ref: ref, name: "OSINT - Sednit update: How Fancy Bear Spent the Year: Xagent Samples",
			domains: []string{domain}, tlp: "TLP:WHITE", confidence: 0.15, // threat_level_id 3
			labels: map[string]string{"event": "5a3c2fcd-8328-42bb-a95e-4f4402de0b81", "type": "domain", "org": ""}}
	}
	tests := []struct {
		file    string
		items   []wantThreat
		skipped []wantSkip
		ignored map[string]int
	}{
		{file: "misp_events_collection_1.json",
			items: []wantThreat{{ref: "4bb235a7-7d25-4aef-802f-2c6b45c5eceb",
				name:    "MISP-STIX-Converter test event with domain attribute: Domain test attribute",
				domains: []string{"circl.lu"}, confidence: 0.5, // threat_level_id 2
				labels: map[string]string{"event": "d402185f-c129-4f65-8678-43edb2cee1cf", "type": "domain", "tags": ""}}},
			ignored: map[string]int{"AS": 1},
		},
		{file: "misp_events_collection_2.json",
			items: []wantThreat{{ref: "726f90e2-2ad6-44a2-b345-c05e55e850e5",
				name:     "MISP-STIX-Converter test event with domain|ip attribute: Domain|ip test attribute",
				prefixes: []string{"149.13.33.14/32"}, domains: []string{"circl.lu"}, confidence: 0.5,
				labels: map[string]string{"type": "domain|ip"}}},
			ignored: map[string]int{"filename": 1},
		},
		// An attribute search answers attributes without their event.
		{file: "misp_attributes_collection.json",
			items: []wantThreat{{ref: "4bb235a7-7d25-4aef-802f-2c6b45c5eceb", name: "Domain test attribute",
				domains: []string{"circl.lu"}, confidence: DefaultThreatConfidence, labels: map[string]string{"event": ""}}},
			ignored: map[string]int{"AS": 1},
		},
		{file: "misp_network_event.json",
			items: []wantThreat{
				withTimes(network("91ae0a21-c7ae-4c7f-b84b-b84a7ce53d1f", "Source IP test attribute", []string{"1.2.3.4/32"}, nil,
					map[string]string{"type": "ip-src", "first_seen": "2025-03-01T00:00:00Z", "last_seen": "2025-04-01T00:00:00Z"}),
					"2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z"),
				// last_seen is past: when it was last seen, not an expiry.
				network("518b4bcb-a86b-4783-9457-391d548b605b", "Destination IP test attribute", []string{"5.6.7.8/32"}, nil,
					map[string]string{"type": "ip-dst", "last_seen": "2025-03-10T00:00:00Z"}),
				network("c1f0e3a2-1b4d-4c6e-8f7a-9b0c1d2e3f40", "Source IP | Port test attribute", []string{"1.2.3.4/32"}, nil,
					map[string]string{"type": "ip-src|port", "port": "1234", "tags": "tlp:amber"}),
				withTLP(network("c1f0e3a2-1b4d-4c6e-8f7a-9b0c1d2e3f41", "Destination IP | Port test attribute", []string{"5.6.7.8/32"}, nil,
					map[string]string{"type": "ip-dst|port", "port": "5678", "tags": "tlp:amber,tlp:red"}), "TLP:RED"),
				network("c1f0e3a2-1b4d-4c6e-8f7a-9b0c1d2e3f42", "Hostname test attribute", nil, []string{"circl.lu"},
					map[string]string{"type": "hostname"}),
				network("c1f0e3a2-1b4d-4c6e-8f7a-9b0c1d2e3f43", "Domain|ip test attribute", []string{"149.13.33.14/32"}, []string{"circl.lu"},
					map[string]string{"type": "domain|ip"}),
				network("07a4c4aa-7380-44b5-82d4-06628ee3afba", "", nil, []string{"google.com"},
					map[string]string{"type": "domain", "object": "domain-ip", "object_relation": "domain"}),
				network("7ef43014-e2d6-4a13-b8fd-129fe4009310", "", []string{"8.8.8.8/32"}, nil,
					map[string]string{"type": "ip-dst", "object": "domain-ip", "object_relation": "ip"}),
			},
			ignored: map[string]int{"hostname|port": 1, "port": 1},
		},
		// PyMISP's event without its wrapper: a link and a text that are
		// not for IDS, seven domains.
		{file: "misp_pymisp_sednit_bare.json",
			items: []wantThreat{
				sednit("5a3c3045-ab0c-4d38-8efe-459002de0b81", "movieultimate.com"),
				sednit("5a3c3045-61dc-495c-ae8a-471e02de0b81", "meteost.com"),
				sednit("5a3c3045-e354-4978-a6b4-49ad02de0b81", "faststoragefiles.org"),
				sednit("5a3c3045-968c-4572-9f64-491502de0b81", "nethostnet.com"),
				sednit("5a3c3045-eb44-433f-a13a-44b902de0b81", "fsportal.net"),
				sednit("5a3c3045-6a88-479d-b799-4d3d02de0b81", "fastdataexchange.org"),
				sednit("5a3c3045-7480-4831-a5c4-48c802de0b81", "newfilmts.com"),
			},
			ignored: map[string]int{"link": 1, "text": 1},
		},
		{file: "misp_partly_bad.json",
			items: []wantThreat{
				{ref: "0a000000-0000-4000-8000-000000000003", name: "Mixed bag", kind: indicator.BruteForce, prefixes: []string{"198.51.100.10/32"},
					tlp: "TLP:GREEN", confidence: 0.15, labels: map[string]string{"tags": "kill-chain:Brute Force,tlp:green"}},
				{ref: "0a000000-0000-4000-8000-000000000007", name: "Mixed bag", kind: indicator.BruteForce, prefixes: []string{"2001:db8::/32"},
					tlp: "TLP:GREEN", confidence: 0.15},
			},
			skipped: []wantSkip{
				{field: "response[0]", reason: "expected object, got number"},
				{ref: "0b0e0d0c-0000-4000-8000-000000000001", field: "response[1].Event.info", reason: "expected string, got number"},
				{ref: "0a000000-0000-4000-8000-000000000001", field: "response[2].Event.Attribute[0].value", reason: `"not-an-ip" is not an IP address or CIDR`},
				{ref: "0a000000-0000-4000-8000-000000000002", field: "response[2].Event.Attribute[1].deleted", reason: "the attribute is deleted"},
				{field: "response[2].Event.Attribute[3].uuid", reason: "is required"},
				{ref: "0a000000-0000-4000-8000-000000000005", field: "response[2].Event.Attribute[4].value", reason: `"http" is not a port`},
				{ref: "0a000000-0000-4000-8000-000000000006", field: "response[2].Event.Attribute[5].value", reason: `"localhost" is not a domain name`},
				{ref: "0a000000-0000-4000-8000-000000000008", field: "response[2].Event.Attribute[7].to_ids", reason: `expected true or false (or 0 or 1), got "yes"`},
				{ref: "0c000000-0000-4000-8000-000000000001", field: "response[2].Event.Object[0].deleted", reason: "the object is deleted"},
				{ref: "0b0e0d0c-0000-4000-8000-000000000002", field: "response[2].Event.Object[1].Attribute", reason: "expected array, got string"},
				{field: "response[3]", reason: `expected {"Event": {…}}`},
			},
			ignored: map[string]int{"to_ids=false": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d, err := DecodeMISP(readTestdata(t, tt.file), testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkThreatDecoded(t, SourceMISP, d, tt.items, tt.skipped, tt.ignored)
		})
	}
}

func withTimes(w wantThreat, from, until string) wantThreat {
	w.validFrom, w.validTill = from, until
	return w
}

func withTLP(w wantThreat, tlp string) wantThreat {
	w.tlp = tlp
	return w
}

// TestDecodeMISPShapes decodes one event in every shape MISP sends it.
func TestDecodeMISPShapes(t *testing.T) {
	event := `{"uuid":"5f1e2d3c-0000-4000-8000-0000000000e1","info":"C2","threat_level_id":"1","Attribute":[` +
		`{"uuid":"5f1e2d3c-0000-4000-8000-0000000000a1","type":"ip-dst","category":"Network activity","value":"198.51.100.77","to_ids":true}]}`
	for name, body := range map[string]string{
		"wrapped":       `{"Event":` + event + `}`,
		"bare":          event,
		"list":          `[{"Event":` + event + `}]`,
		"events search": `{"response":[{"Event":` + event + `}]}`,
		"attribute search": `{"response":{"Attribute":[{"uuid":"5f1e2d3c-0000-4000-8000-0000000000a1","type":"ip-dst","category":"Network activity",` +
			`"value":"198.51.100.77","to_ids":true,"Event":{"uuid":"5f1e2d3c-0000-4000-8000-0000000000e1","info":"C2","threat_level_id":"1"}}]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			d, err := DecodeMISP([]byte(body), testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkThreatDecoded(t, SourceMISP, d, []wantThreat{{ref: "5f1e2d3c-0000-4000-8000-0000000000a1", name: "C2",
				prefixes: []string{"198.51.100.77/32"}, confidence: 0.85,
				labels: map[string]string{"event": "5f1e2d3c-0000-4000-8000-0000000000e1"}}}, nil, nil)
		})
	}
}

func TestDecodeMISPGarbageNamesTheField(t *testing.T) {
	tests := map[string]string{ // body: field
		"":                              "body",
		"<html>":                        "body",
		"42":                            "body",
		`{}`:                            "body",
		`{"events":[]}`:                 "body",
		`{"Event":[]}`:                  "Event",
		`{"Event":"x"}`:                 "Event",
		`[1,2,3]`:                       "body",
		`[{"Attribute":[]}]`:            "body",
		`{"response":"none"}`:           "response",
		`{"response":[1]}`:              "response",
		`{"response":{}}`:               "response.Attribute",
		`{"response":{"Attribute":{}}}`: "response.Attribute",
		`{"Event":{"Attribute":[1,]}}`:  "body",
	}
	for body, field := range tests {
		_, err := DecodeMISP([]byte(body), testNow)
		var fe *indicator.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%q: error %v, want a FieldError on %s", body, err, field)
		}
	}
	for _, body := range []string{`[]`, `{"response":[]}`, `{"Event":{}}`, `{"response":{"Attribute":[]}}`} {
		if d, err := DecodeMISP([]byte(body), testNow); err != nil || len(d.Items)+len(d.Skipped)+len(d.Ignored) != 0 {
			t.Errorf("%s: %+v, %v, want nothing and no error", body, d, err)
		}
	}
}

func TestDecodeMISPValues(t *testing.T) {
	attr := func(typ, value string) string {
		return `{"Event":{"Attribute":[{"uuid":"5f1e2d3c-0000-4000-8000-0000000000a2","type":"` + typ + `","value":"` + value + `","to_ids":true}]}}`
	}
	tests := []struct {
		typ, value string
		prefixes   []string
		domains    []string
		port, err  string
	}{
		{typ: "ip-src", value: "192.0.2.5", prefixes: []string{"192.0.2.5/32"}},
		{typ: "ip-dst", value: "192.0.2.77/28", prefixes: []string{"192.0.2.64/28"}},
		{typ: "ip-dst", value: " 2001:db8::5 ", prefixes: []string{"2001:db8::5/128"}},
		{typ: "ip-dst", value: "2001:db8::5%eth0", err: `"2001:db8::5%eth0" is not an IP address or CIDR`},
		{typ: "ip-dst|port", value: "2001:db8::6|8443", prefixes: []string{"2001:db8::6/128"}, port: "8443"},
		{typ: "ip-dst|port", value: "[2001:db8::6]|443", prefixes: []string{"2001:db8::6/128"}, port: "443"},
		{typ: "ip-src|port", value: "192.0.2.6|65536", err: `"65536" is not a port`},
		{typ: "ip-src|port", value: "192.0.2.6", err: `"192.0.2.6" is not address|port`},
		{typ: "domain", value: "Evil.Example.COM.", domains: []string{"evil.example.com"}},
		{typ: "hostname", value: "c2.evil.example", domains: []string{"c2.evil.example"}},
		{typ: "hostname", value: "192.0.2.9", err: `"192.0.2.9" is not a domain name`},
		{typ: "domain|ip", value: "evil.example|2001:db8::7", prefixes: []string{"2001:db8::7/128"}, domains: []string{"evil.example"}},
		{typ: "domain|ip", value: "evil.example", err: `"evil.example" is not domain|ip`},
		{typ: "domain|ip", value: "evil.example|nope", err: `"nope" is not an IP address or CIDR`},
	}
	for _, tt := range tests {
		d, err := DecodeMISP([]byte(attr(tt.typ, tt.value)), testNow)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.typ, tt.value, err)
		}
		if tt.err != "" {
			if len(d.Items) != 0 || len(d.Skipped) != 1 || d.Skipped[0].Reason != tt.err || d.Skipped[0].Field != "Event.Attribute[0].value" {
				t.Errorf("%s %q: %+v, want skipped with %q", tt.typ, tt.value, d, tt.err)
			}
			continue
		}
		if len(d.Items) != 1 {
			t.Errorf("%s %q: %+v, want one item", tt.typ, tt.value, d)
			continue
		}
		checkThreatItem(t, 0, SourceMISP, d.Items[0], wantThreat{ref: "5f1e2d3c-0000-4000-8000-0000000000a2", name: oneLine(tt.typ + " " + tt.value),
			prefixes: tt.prefixes, domains: tt.domains, confidence: DefaultThreatConfidence, labels: map[string]string{"port": tt.port, "type": tt.typ}})
	}
}

func FuzzDecodeMISP(f *testing.F) {
	for _, b := range testdataFiles(f, "misp_*.json") {
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `[]`, `{"Event":{}}`, `{"response":[]}`, `{"response":{"Attribute":[{}]}}`,
		`{"Event":{"Attribute":[{"uuid":"u","type":"ip-dst|port","value":"[::1]|0","to_ids":1,"first_seen":"2030-01-01T00:00:00Z","last_seen":"2031-01-01T00:00:00Z"}],` +
			`"Object":[{"deleted":"0","Attribute":[{"uuid":"v","type":"domain|ip","value":"a.example|10.0.0.0/8","to_ids":"1","Tag":[{"name":"TLP:AMBER+STRICT"}]}]}]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeMISP(body, testNow)
		checkFuzzedThreat(t, SourceMISP, d, err)
		for _, it := range d.Items {
			if !it.ValidUntil.IsZero() && !it.ValidUntil.After(testNow) {
				t.Fatalf("item valid until the past: %+v", it)
			}
		}
	})
}

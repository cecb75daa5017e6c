package intake

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
)

func TestDecodeZeekFixtures(t *testing.T) {
	inv := testInventory(t)
	at := func(s string) time.Time { return testTime(t, s) }
	tests := map[string][]nsmItem{
		// Zeek's own btest baseline for SSH password guessing
		// (zeek/zeek testing/btest/Baseline/scripts.policy.protocols.ssh.
		// detect-bruteforcing/notice.log), with the ts and #open of the
		// same notice in the notice framework's documentation
		// (frameworks/notice.rst) where btest masks them; the guesser and
		// the server changed to a remote address and gw-factory. The
		// notice names only the guesser: the gateway is the sampled
		// server.
		"zeek_notice_bruteforce.log": {
			{0, wantItem{matched: true, gateway: "gw-factory", kind: indicator.BruteForce, severity: indicator.Medium, confidence: 0.8,
				observed: at("2015-03-30T14:45:59.303199Z"), ips: []string{"198.51.100.66"},
				summary: "198.51.100.66 appears to be guessing SSH passwords (seen in 10 connections)."}},
		},
		// Ours, with that header: notices raised as Zeek's scripts raise
		// them (misc/scan.zeek, frameworks/dpd/detect-protocols.zeek,
		// ssl/validate-certs.zeek), a custom Warden:: notice with an
		// escaped tab and the empty field, one with a broken address, one
		// of no gateway, a short line; then a rotated log's second header
		// with fewer fields.
		"zeek_notice_mixed.log": {
			{0, wantItem{matched: true, gateway: "gw-hq", kind: indicator.BruteForce, severity: indicator.Medium, confidence: 0.8,
				observed: at("2025-03-14T03:00:00.000001Z"), ips: []string{"198.51.100.7"},
				summary: "198.51.100.7 scanned at least 15 unique ports of host 203.0.113.10 in 0m3s"}},
			{1, wantItem{matched: true, gateway: "gw-osaka-b", kind: indicator.UnknownDestination, severity: indicator.Medium, confidence: 0.8,
				observed: at("2025-03-14T03:01:00.5Z"), ips: []string{"192.0.2.80"}, summary: "10.20.0.2:51234 > 192.0.2.80:8443 SSH on port 8443/tcp"}},
			{2, wantItem{matched: true, gateway: "gw-factory", kind: indicator.ConfigTamper, severity: indicator.Medium, confidence: 0.8,
				observed: at("2025-03-14T03:02:00.25Z"), summary: "/etc/swanctl/swanctl.conf changed outside change control"}},
			{3, wantItem{gateway: "gw-hq", reason: "no usable kind: note SSL::Invalid_Server_Cert is not mapped and is not a Warden:: note"}},
			{4, wantItem{skipped: true, reason: `notices[4].dst: "not-an-ip" is not an IP address (line 13)`}},
			{5, wantItem{reason: "no gateway has src 192.0.2.99"}},
			{6, wantItem{skipped: true, reason: "notices[6]: has 4 columns, #fields names 25 (line 15)"}},
			{7, wantItem{matched: true, gateway: "gw-osaka-a", kind: indicator.C2Beacon, severity: indicator.Medium, confidence: 0.8,
				observed: at("2025-03-14T04:00:00.75Z"), ips: []string{"198.51.100.200"}, summary: "periodic beacon every 60s"}},
		},
		// Ours: "|" as the separator, written escaped in the header and
		// inside a value.
		"zeek_notice_pipe.log": {
			{0, wantItem{matched: true, gateway: "gw-osaka-b", kind: indicator.Exfiltration, severity: indicator.Medium, confidence: 0.8,
				observed: at("2025-03-14T03:07:00.0001Z"), ips: []string{"198.51.100.23"}, summary: "4.2 GiB to 198.51.100.23 | 10 minutes"}},
		},
		// JSON lines: the documented notice as LogAscii::use_json writes
		// it; ours with _path and an ISO 8601 ts (JSON::TS_ISO8601), with
		// epoch milliseconds (JSON::TS_MILLIS) and flat id.* keys, and a
		// port that is not one.
		"zeek_notice.json": {
			{0, wantItem{matched: true, gateway: "gw-factory", kind: indicator.BruteForce, severity: indicator.Medium, confidence: 0.8,
				observed: at("2015-03-30T14:45:59.303199Z"), ips: []string{"198.51.100.66"},
				summary: "198.51.100.66 appears to be guessing SSH passwords (seen in 10 connections)."}},
			{1, wantItem{matched: true, gateway: "gw-osaka-a", kind: indicator.BruteForce, severity: indicator.Medium, confidence: 0.8,
				observed: at("2025-03-14T03:02:00.123456Z"), ips: []string{"198.51.100.7"},
				summary: "198.51.100.7 scanned at least 15 unique ports of host 203.0.113.20 in 0m0s"}},
			{2, wantItem{matched: true, gateway: "gw-osaka-b", kind: indicator.UnknownDestination, severity: indicator.Medium, confidence: 0.8,
				observed: at("2025-03-14T03:03:00.123Z"), ips: []string{"192.0.2.80"}, summary: "192.0.2.80:8443 is running SSH"}},
			{3, wantItem{skipped: true, reason: `notices[3]."id.resp_p": "https" is not a port`}},
		},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			d, err := DecodeZeek(readTestdata(t, name), inv, ZeekMapping{}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkNSMItems(t, SourceZeek, d.Items, want)
			if len(d.Ignored) != 0 {
				t.Errorf("ignored %v", d.Ignored)
			}
		})
	}
}

func TestDecodeZeekLabelsAndRaw(t *testing.T) {
	d, err := DecodeZeek(readTestdata(t, "zeek_notice_mixed.log"), testInventory(t), ZeekMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	in := d.Items[1].Indicator
	want := map[string]string{"note": "ProtocolDetector::Protocol_Found", "uid": "CHhAvVGS1DHFjwGM9", "proto": "tcp",
		"id.orig_h": "10.20.0.2", "id.orig_p": "51234", "id.resp_h": "192.0.2.80", "id.resp_p": "8443", "p": "8443"}
	if !maps.Equal(in.Labels, want) {
		t.Errorf("labels\n got  %v\n want %v", in.Labels, want)
	}
	// A TSV record's Raw is its columns as a JSON object: unset columns
	// left out, the empty field empty, escapes undone.
	var raw map[string]string
	if err := json.Unmarshal(d.Items[2].Indicator.Raw, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["_path"] != "notice" || raw["sub"] != "" || raw["msg"] != "/etc/swanctl/swanctl.conf\tchanged outside change control" ||
		raw["actions"] != "Notice::ACTION_LOG,Notice::ACTION_ALARM" || raw["n"] != "3" {
		t.Errorf("raw %v", raw)
	}
	if _, ok := raw["uid"]; ok {
		t.Errorf("unset uid in raw: %v", raw)
	}
	if l := d.Items[2].Indicator.Labels; l["peer_descr"] != "worker-1" || l["n"] != "3" || l["src"] != "10.30.0.1" {
		t.Errorf("labels %v", l)
	}
}

func TestDecodeZeekRejects(t *testing.T) {
	tsv := func(lines ...string) string { return strings.Join(lines, "\n") + "\n" }
	tests := map[string]struct{ body, field, reason string }{
		"empty":       {" \n", "body", "is empty"},
		"garbage":     {"hello world", "body", "expected Zeek's notice.log"},
		"conn.log":    {string(readTestdata(t, "zeek_conn.log")), "#path", "this is Zeek's conn log; only notice.log is taken (line 5)"},
		"json _path":  {`{"_path":"notice","note":"A::B"}` + "\n" + `{"_path":"conn","uid":"C1"}`, "notices[1]._path", "this is Zeek's conn log"},
		"bad json":    {`{"note":`, "body", "invalid JSON: unexpected end of input"},
		"not objects": {`[1,2]`, "body", "expected Zeek notice.log JSON objects, got number"},
		"no fields":   {tsv("#separator \\x09", "1741921200\tScan::Port_Scan"), "#fields", "is required before the first record (line 2)"},
		"no note":     {tsv("#separator \\x09", "#fields\tts\tuid"), "#fields", "has no note column"},
		"repeated":    {tsv("#separator \\x09", "#fields\tnote\tnote"), "#fields", `has an empty or repeated name "note"`},
		"types":       {tsv("#separator \\x09", "#fields\tts\tnote", "#types\ttime"), "#types", "names 1 types for 2 fields (line 3)"},
		"separator":   {tsv("#separator ", "#fields note"), "#separator", "is empty (line 1)"},
		"too many": {tsv(append([]string{"#fields\tnote"}, repeat("Warden::Crash", MaxIndicatorsPerRequest+1)...)...),
			"body", "more than 1000 notices"},
		"too many json": {strings.Repeat(`{"note":"Warden::Crash"}`+"\n", MaxIndicatorsPerRequest+1), "body", "more than 1000 notices"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeZeek([]byte(tc.body), testInventory(t), ZeekMapping{}, testNow)
			var fe *indicator.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.HasPrefix(fe.Reason, tc.reason) {
				t.Errorf("error %v, want %s: %s…", err, tc.field, tc.reason)
			}
		})
	}
}

func TestDecodeZeekTSVHeaders(t *testing.T) {
	inv := testInventory(t)
	// Custom unset and empty fields; CRLF line ends; a header with no
	// #path; a value that is literally "-" written escaped.
	body := "#separator \\x2c\r\n#unset_field,NONE\r\n#empty_field,EMPTY\r\n#fields,ts,note,msg,sub,src,dst\r\n" +
		"1741921200,Warden::Crash,NONE,EMPTY,10.10.0.1,NONE\r\n" +
		"1741921201,Warden::Crash,\\x2d,NONE,NONE,10.20.0.1\r\n"
	d, err := DecodeZeek([]byte(body), inv, ZeekMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Items) != 2 || !d.Items[0].Matched || !d.Items[1].Matched {
		t.Fatalf("items %+v", d.Items)
	}
	if in := d.Items[0].Indicator; in.Gateway != "gw-hq" || in.Kind != indicator.Crash || in.Summary != "Warden::Crash" || len(in.Observables.IPs) != 0 {
		t.Errorf("first: %+v", in)
	}
	if in := d.Items[1].Indicator; in.Gateway != "gw-osaka-a" || in.Summary != "-" {
		t.Errorf("second: %+v", in)
	}
	// "(empty)" and "-" keep their defaults when the header does not set
	// them; a field the header does not name is not read.
	body = "#separator \\x09\n#fields\tnote\tsrc\tsub\n" + "Warden::Crash\t-\t(empty)\n"
	d, err = DecodeZeek([]byte(body), inv, ZeekMapping{}, testNow)
	if err != nil || len(d.Items) != 1 || d.Items[0].Matched || !strings.Contains(d.Items[0].Reason, "no dst, id.resp_h, src or id.orig_h") {
		t.Errorf("defaults: %+v %v", d.Items, err)
	}
}

func TestDecodeZeekJSONVariants(t *testing.T) {
	inv := testInventory(t)
	tests := map[string]string{
		// Nested conn_id, as some shippers write it.
		`{"ts":1741921200.5,"id":{"orig_h":"198.51.100.1","orig_p":5555,"resp_h":"203.0.113.30","resp_p":22},"note":"SSH::Login_By_Password_Guesser","msg":"m"}`: "gw-factory high",
		// An ISO 8601 ts without fraction, a port written "22/tcp".
		`{"ts":"2025-03-14T03:00:00Z","note":"Scan::Port_Scan","src":"198.51.100.1","dst":"10.30.0.1","p":"22/tcp"}`: "gw-factory medium",
		// Notes compared without regard to case.
		`{"note":"ssh::password_guessing","src":"203.0.113.21"}`: "gw-osaka-b medium",
	}
	for body, want := range tests {
		d, err := DecodeZeek([]byte(body), inv, ZeekMapping{}, testNow)
		if err != nil || len(d.Items) != 1 || !d.Items[0].Matched {
			t.Errorf("%s: %+v %v", body, d.Items, err)
			continue
		}
		if in := d.Items[0].Indicator; in.Gateway+" "+string(in.Severity) != want {
			t.Errorf("%s: %s %s, want %s", body, in.Gateway, in.Severity, want)
		}
	}
	skips := map[string]string{
		`{"ts":true,"note":"A::B"}`:                            "notices[0].ts: expected number or string, got boolean",
		`{"ts":"soon","note":"A::B"}`:                          `notices[0].ts: expected an ISO 8601 time or epoch seconds, got "soon"`,
		`{"note":1}`:                                           "notices[0].note: expected string, got number",
		`{"msg":"no note"}`:                                    "notices[0].note: is required",
		`{"note":"A::B","src":"10.0.0.1.1"}`:                   `notices[0].src: "10.0.0.1.1" is not an IP address`,
		`{"note":"A::B","n":-1}`:                               "notices[0].n: expected an unsigned integer",
		`{"note":"A::B","id":{"resp_h":7}}`:                    `notices[0].id.resp_h: expected string, got number`,
		`{"note":"A::B","_path":1}`:                            "notices[0]._path: expected string, got number",
		"{\"note\":\"A::B\"}\n{\"note\":\n{\"note\":\"C::D\"}": "notices[1]: invalid JSON",
	}
	for body, want := range skips {
		d, err := DecodeZeek([]byte(body), inv, ZeekMapping{}, testNow)
		if err != nil {
			t.Errorf("%s: %v", body, err)
			continue
		}
		found := false
		for _, it := range d.Items {
			if it.Skipped && strings.HasPrefix(it.Reason, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: items %+v, want one skipped %q", body, d.Items, want)
		}
	}
}

func TestZeekMappingDefaults(t *testing.T) {
	m := ZeekMapping{
		NoteKinds:      map[string]string{"scan::port_scan": "", "MyDetector::*": "traffic_spike", "Intel::Notice": "c2_beacon"},
		NoteSeverities: map[string]string{"intel::notice": "critical"},
		KindModule:     "Site",
		Confidence:     0.6,
	}.WithDefaults()
	if m.Severity != "medium" || m.Confidence != 0.6 || m.KindModule != "Site" ||
		m.NoteKinds["ssh::password_guessing"] != "brute_force" || m.NoteKinds["mydetector::*"] != "traffic_spike" ||
		m.NoteSeverities["ssh::login_by_password_guesser"] != "high" {
		t.Errorf("defaults: %+v", m)
	}
	again := m.WithDefaults()
	if !maps.Equal(again.NoteKinds, m.NoteKinds) || again.NoteKinds["scan::port_scan"] != "" {
		t.Errorf("WithDefaults twice differs: %+v", again.NoteKinds)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	body := `{"note":"Scan::Port_Scan","dst":"10.10.0.1"}` + "\n" + `{"note":"MyDetector::Odd","src":"10.10.0.1"}` + "\n" +
		`{"note":"Intel::Notice","src":"10.10.0.1"}` + "\n" + `{"note":"Site::Exfiltration","src":"10.10.0.1"}` + "\n" +
		`{"note":"Warden::Exfiltration","src":"10.10.0.1"}` + "\n" + `{"note":"Site::Nonsense","src":"10.10.0.1"}`
	d, err := DecodeZeek([]byte(body), testInventory(t), m, testNow)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(d.Items))
	for i, it := range d.Items {
		got[i] = string(it.Indicator.Kind) + "/" + string(it.Indicator.Severity) + "/" + it.Reason
	}
	want := []string{
		"/medium/no usable kind: note Scan::Port_Scan is switched off",
		"traffic_spike/medium/",
		"c2_beacon/critical/",
		"exfiltration/medium/",
		"/medium/no usable kind: note Warden::Exfiltration is not mapped and is not a Site:: note",
		"/medium/no usable kind: note Site::Nonsense names no known kind",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("kinds\n got  %q\n want %q", got, want)
	}

	for _, tc := range []struct {
		m    ZeekMapping
		want string
	}{
		{ZeekMapping{NoteKinds: map[string]string{"SSH::Password_Guessing": "brute-force"}}, `note_kinds.SSH::Password_Guessing: unknown kind "brute-force"`},
		{ZeekMapping{NoteKinds: map[string]string{"Password_Guessing": "brute_force"}}, "note_kinds.Password_Guessing: is not a note"},
		{ZeekMapping{NoteSeverities: map[string]string{"A::B": ""}}, `note_severities.A::B: unknown severity ""`},
		{ZeekMapping{Severity: "info"}, `severity: unknown severity "info"`},
		{ZeekMapping{Confidence: -0.1}, "confidence: must be between 0 and 1"},
		{ZeekMapping{KindModule: "Warden::"}, "kind_module: is a module name"},
	} {
		err := tc.m.Validate()
		var fe *indicator.FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.m, err, tc.want)
		}
	}
}

func TestParseZeekEpoch(t *testing.T) {
	for in, want := range map[string]string{
		"1427726759.303199":     "2015-03-30T14:45:59.303199Z",
		"1427726759":            "2015-03-30T14:45:59Z",
		"1427726759.1234567891": "2015-03-30T14:45:59.123456789Z", // float: precision of a float64
		"1.4e9":                 "2014-05-13T16:53:20Z",
	} {
		got, err := parseZeekEpoch(in)
		if err != nil || got.Sub(testTime(t, want)).Abs() > time.Microsecond {
			t.Errorf("parseZeekEpoch(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "NaN", "1e300", "12.ab", "-1", "-0.5", "253402300800", "99999999999999.5"} {
		if _, err := parseZeekEpoch(in); err == nil {
			t.Errorf("parseZeekEpoch(%q) accepted", in)
		}
	}
}

func FuzzDecodeZeek(f *testing.F) {
	for _, pattern := range []string{"zeek_*.log", "zeek_*.json"} {
		for _, b := range testdataFiles(f, pattern) {
			f.Add(b)
		}
	}
	for _, s := range []string{``, `#`, "#separator \\x", "#separator \\x09\n#fields\tnote\n-\n(empty)\n", "#fields\tnote\tsrc\nA::B\t10.10.0.1\\x",
		`{"note":"Warden::C2_Beacon","id":{"resp_h":"::ffff:203.0.113.10"}}`, `[{"note":"x"},[]]`, `{"ts":-99999999999999,"note":"A::B"}`} {
		f.Add([]byte(s))
	}
	inv := testInventory(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeZeek(body, inv, ZeekMapping{}, testNow)
		checkFuzzedDecode(t, inv, fuzzedBody{records: "notices", limit: MaxIndicatorsPerRequest, dense: true}, d, err)
	})
}

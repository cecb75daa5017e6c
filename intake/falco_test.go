package intake

import (
	"maps"
	"strings"
	"testing"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// falcoShellSummary is the documented output, clipped to a summary's length.
var falcoShellSummary = clip("Terminal shell in container: A shell was spawned in a container with an attached terminal (user=root user_loginuid=-1 k8s.ns=default k8s.pod=kubecon container=ee97d9c4186f shell=sh parent=runc cmdline=sh -c clear; (bash || ash || sh) terminal=34816 container_id=ee97d9c4186f image=docker.io/library/alpine)", maxSummaryLen)

func TestDecodeFalcoFixtures(t *testing.T) {
	inv := testInventory(t)
	shell := func(index int, gw string) wantRecord {
		return wantRecord{index: index, matched: true, gateway: gw, kind: indicator.ConfigTamper, severity: indicator.Critical,
			observed: testTime(t, "2023-05-25T13:44:05.478445995Z"), summary: falcoShellSummary}
	}
	tests := []struct {
		file    string
		mapping FalcoMapping
		want    []wantRecord
		ignored map[string]int
	}{
		{file: "falco_doc_terminal_shell.json", want: []wantRecord{shell(0, "gw-hq")}},
		{file: "falco_sidekick_webhook.json", want: []wantRecord{shell(0, "gw-osaka-b")}},
		{file: "falco_doc_pretty.json", want: []wantRecord{{
			kind: indicator.ConfigTamper, severity: indicator.Critical, summary: falcoShellSummary,
			reason: "no gateway: hostname=falco-xczjd is not a gateway of the inventory",
		}}},
		{file: "falco_sidekick_drop.json", ignored: map[string]int{"internal": 1}},
		{file: "falco_sidekick_test.json", ignored: map[string]int{"test": 1}},
		// A custom rule, mapped by the operator; no hostname (Falco before
		// 0.35), so the local end of the connection names the gateway.
		{file: "falco_outbound.json", mapping: FalcoMapping{RuleKinds: map[string]string{"kubernetes outbound connection": "unknown_destination"}},
			want: []wantRecord{{
				matched: true, gateway: "gw-factory", kind: indicator.UnknownDestination, severity: indicator.Medium,
				observed: testTime(t, "2021-04-16T18:05:13.045457220Z"), ips: []string{"198.51.100.23"},
				summary: "kubernetes outbound connection: Outbound network traffic connection from a Pod: (pod=falco-l8xmm namespace=falco srcip=203.0.113.30 dstip=198.51.100.23 dstport=4444 proto=tcp procname=nc) k8s.ns=falco k8s.pod=falco-l8xmm container=cb86ca8afdaa",
			}}},
		{file: "falco_outbound.json", want: []wantRecord{{
			gateway: "gw-factory", severity: indicator.Medium, ips: []string{"198.51.100.23"},
			reason: `no usable kind: rule "kubernetes outbound connection" not mapped`,
		}}},
		{file: "falco_partly_bad.json", ignored: map[string]int{"internal": 1, "no_rule": 1}, want: []wantRecord{
			{index: 0, kind: indicator.ConfigTamper, severity: indicator.Critical, reason: "no gateway: hostname=falco-xczjd"},
			{index: 1, skipped: true, reason: "events[1]: expected object, got number"},
			{index: 3, skipped: true, reason: "events[3].priority: expected string, got number"},
			shell(5, "gw-hq"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d, err := DecodeFalco(readTestdata(t, tt.file), inv, tt.mapping, testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkDetectorDecoded(t, d, tt.want, tt.ignored)
		})
	}
}

func TestDecodeFalcoShapes(t *testing.T) {
	inv := testInventory(t)
	line := strings.TrimSpace(string(readTestdata(t, "falco_doc_terminal_shell.json")))
	hook := strings.TrimSpace(string(readTestdata(t, "falco_sidekick_webhook.json")))
	drop := strings.TrimSpace(string(readTestdata(t, "falco_sidekick_drop.json")))
	for name, body := range map[string]string{
		"newline-delimited": line + "\n" + drop + "\n" + hook + "\n",
		"concatenated":      line + drop + hook,
		"array":             "[" + line + "," + drop + "," + hook + "]",
		"torn last line":    line + "\n" + drop + "\n" + hook + "\n" + `{"rule":"Write below etc","prio`,
	} {
		t.Run(name, func(t *testing.T) {
			d, err := DecodeFalco([]byte(body), inv, FalcoMapping{}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			gws := matchedGateways(d)
			if strings.Join(gws, ",") != "gw-hq,gw-osaka-b" || d.Ignored["internal"] != 1 {
				t.Errorf("matched %v, ignored %v, items %+v", gws, d.Ignored, d.Items)
			}
		})
	}
}

func TestDecodeFalcoGarbageNamesBody(t *testing.T) {
	checkBodyRefused(t, decodeFalcoWith(testInventory(t), FalcoMapping{}),
		[]string{"", "\n", "<html>", "3.14", `"rule"`, `{"rule":"x"`, "[1,", "false"})
}

func TestDecodeFalcoSkipsNamingTheField(t *testing.T) {
	tests := map[string]string{
		`{"rule":"Write below etc","time":"13:44:05"}`: `events[0].time: expected an RFC 3339 time, got "13:44:05"`,
		`{"rule":7}`: "events[0].rule: expected string, got number",
		`{"rule":"Write below etc","tags":"T1562"}`:                "events[0].tags: expected array, got string",
		`{"rule":"Write below etc","output_fields":["fd.sip"]}`:    "events[0].output_fields: expected object, got array",
		`{"rule":"Write below etc","hostname":{"name":"gw-hq"}}`:   "events[0].hostname: expected string, got object",
		`{"rule":"Write below etc","source":1,"hostname":"gw-hq"}`: "events[0].source: expected string, got number",
	}
	checkSkipsNamingTheField(t, decodeFalcoWith(testInventory(t), FalcoMapping{}), tests, false)
}

func TestDecodeFalcoIgnoresInternalRecords(t *testing.T) {
	body := `{"rule":"Falco internal: metrics snapshot","priority":"Informational","source":"internal","output_fields":{"evt.hostname":"gw-hq"}}
{"rule":"Write below etc","source":"INTERNAL","hostname":"gw-hq"}
{"output":"no rule here","priority":"Warning","hostname":"gw-hq"}
{"rule":"","hostname":"gw-hq"}
{"rule":"Write below etc","source":"syscall","hostname":"gw-hq","output_fields":{"fd.name":"/etc/sudoers","proc.name":"vi"}}`
	d, err := DecodeFalco([]byte(body), testInventory(t), FalcoMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"internal": 2, "no_rule": 2}; !maps.Equal(d.Ignored, want) {
		t.Errorf("ignored %v, want %v", d.Ignored, want)
	}
	if len(d.Items) != 1 || !d.Items[0].Matched || d.Items[0].Index != 4 || d.Items[0].Indicator.Labels["fd.name"] != "/etc/sudoers" {
		t.Errorf("items %+v", d.Items)
	}
}

func TestDecodeFalcoGatewayOrder(t *testing.T) {
	inv := testInventory(t)
	tests := map[string]string{
		`"hostname":"gw-hq","output_fields":{"fd.lip":"203.0.113.20"}`:                    "gw-hq",
		`"hostname":"node-7","output_fields":{"evt.hostname":"gw-factory"}`:               "gw-factory",
		`"output_fields":{"fd.sip":"198.51.100.9","fd.cip":"10.20.0.2"}`:                  "gw-osaka-b",
		`"output_fields":{"fd.rip":"2001:db8:10:0::1","fd.lip":"198.51.100.9"}`:           "gw-hq",
		`"output_fields":{"fd.lip":"203.0.113.30","fd.sip":"203.0.113.10","fd.sport":22}`: "gw-factory",
	}
	checkGatewayOrder(t, decodeFalcoWith(inv, FalcoMapping{}), func(fields string) string {
		return `{"rule":"Write below etc","priority":"Error",` + fields + `}`
	}, tests)
}

func TestFalcoKindAndSeverity(t *testing.T) {
	m := FalcoMapping{}.WithDefaults()
	tests := []struct {
		event falcoEvent
		want  indicator.Kind
	}{
		{falcoEvent{rule: "Write below etc", tags: []string{"T1048"}}, indicator.ConfigTamper},
		{falcoEvent{rule: "ssh tunneling", tags: []string{"mitre_exfiltration", "T1572"}}, indicator.C2Beacon},
		{falcoEvent{rule: "x", tags: []string{"T1110.001"}}, indicator.BruteForce},
		{falcoEvent{rule: "x", tags: []string{"network", "mitre_exfiltration"}}, indicator.Exfiltration},
		{falcoEvent{rule: "Read sensitive file untrusted", tags: []string{"T1555", "mitre_credential_access"}}, ""},
	}
	for _, tt := range tests {
		got, why := m.kind(&tt.event)
		if got != tt.want || (got == "") != (why != "") {
			t.Errorf("%+v: kind %q (%s), want %q", tt.event, got, why, tt.want)
		}
	}
	for p, want := range map[string]indicator.Severity{
		"Emergency": indicator.Critical, "ALERT": indicator.Critical, "Critical": indicator.Critical, "Error": indicator.High,
		"Warning": indicator.Medium, "Notice": indicator.Low, "Informational": indicator.Low, "Debug": indicator.Low, "": indicator.Medium, "loud": indicator.Medium,
	} {
		if got := falcoSeverity(p); got != want {
			t.Errorf("priority %q: %q, want %q", p, got, want)
		}
	}
}

func TestFalcoMappingDefaultsAndValidate(t *testing.T) {
	var zero FalcoMapping
	d := zero.WithDefaults()
	if d.Confidence != 0.8 || d.RuleKinds["write below etc"] != "config_tamper" || d.TagKinds["t1048"] != "exfiltration" {
		t.Errorf("defaults %+v", d)
	}
	if zero.RuleKinds != nil {
		t.Error("WithDefaults changed its receiver")
	}
	if err := zero.Validate(); err != nil {
		t.Errorf("zero mapping: %v", err)
	}
	checkValidateFields(t, map[*FalcoMapping]string{
		{RuleKinds: map[string]string{"Read sensitive file untrusted": "credential_access"}}: `rule_kinds."read sensitive file untrusted"`,
		{RuleKinds: map[string]string{" ": "config_tamper"}}:                                 `rule_kinds." "`,
		{TagKinds: map[string]string{"T1059": "execution"}}:                                  "tag_kinds.t1059",
		{Confidence: 2}: "confidence",
	})
}

// A configuration file's keys arrive lower-cased (viper): a rule or a tag
// configured there must still match Falco's spelling.
func TestFalcoMappingKeysIgnoreCase(t *testing.T) {
	m := FalcoMapping{
		RuleKinds: map[string]string{"read sensitive file untrusted": "config_tamper"},
		TagKinds:  map[string]string{"t1003": "config_tamper"},
	}.WithDefaults()
	for _, e := range []falcoEvent{
		{rule: "Read sensitive file untrusted"},
		{rule: "Unmapped rule", tags: []string{"T1003"}},
	} {
		if k, why := m.kind(&e); k != "config_tamper" {
			t.Errorf("%+v: kind %q (%s), want config_tamper", e, k, why)
		}
	}
}

func TestFalcoSummary(t *testing.T) {
	for out, want := range map[string]string{
		"2026-07-10T13:56:08.279203170+0000: Warning Sensitive file opened for reading | file=/etc/shadow": "R: Sensitive file opened for reading | file=/etc/shadow",
		"":                             "R",
		"R happened\n  twice":          "R happened twice",
		"13:00:00.1: Debug R detail x": "R detail x",
	} {
		if got := falcoSummary(&falcoEvent{rule: "R", output: out}); got != want {
			t.Errorf("%q: %q, want %q", out, got, want)
		}
	}
}

func FuzzDecodeFalco(f *testing.F) {
	for _, b := range testdataFiles(f, "falco_*json") {
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `[]`, `[{},1,null]`, `{"rule":"Write below etc","hostname":"gw-hq"}`,
		`{"rule":"x","tags":["T1048"],"output_fields":{"fd.sip":"[::1]","fd.lip":"10.30.0.1"}}`,
		"{\"rule\":\"a\"}\n{\"rule\":", `{"rule":"Falco internal: x","source":"internal"}`} {
		f.Add([]byte(s))
	}
	inv := testInventory(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeFalco(body, inv, FalcoMapping{}, testNow)
		checkFuzzedDecode(t, inv, fuzzedBody{records: "events"}, d, err)
	})
}

// decodeFalcoWith decodes Falco bodies with inv and m.
func decodeFalcoWith(inv *inventory.Inventory, m FalcoMapping) detectorDecode {
	return func(body []byte) (Decoded, error) { return DecodeFalco(body, inv, m, testNow) }
}

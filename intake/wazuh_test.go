package intake

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
)

// wantRecord is what a detector test checks of one Item.
type wantRecord struct {
	index    int
	matched  bool
	skipped  bool
	gateway  string
	kind     indicator.Kind
	severity indicator.Severity
	observed time.Time
	ips      []string
	domains  []string
	hashes   []string
	summary  string
	reason   string // substring of Reason
}

// checkDetectorDecoded compares a Decoded with the wanted items and
// ignored counts.
func checkDetectorDecoded(t *testing.T, d Decoded, want []wantRecord, ignored map[string]int) {
	t.Helper()
	if len(d.Items) != len(want) {
		for i, it := range d.Items {
			t.Logf("item %d: index %d matched %t skipped %t reason %q", i, it.Index, it.Matched, it.Skipped, it.Reason)
		}
		t.Fatalf("%d items, want %d", len(d.Items), len(want))
	}
	if !maps.Equal(d.Ignored, ignored) {
		t.Errorf("ignored %v, want %v", d.Ignored, ignored)
	}
	for i, w := range want {
		it := d.Items[i]
		in := it.Indicator
		if it.Index != w.index || it.Matched != w.matched || it.Skipped != w.skipped {
			t.Errorf("[%d] index %d matched %t skipped %t (reason %q), want index %d matched %t skipped %t",
				i, it.Index, it.Matched, it.Skipped, it.Reason, w.index, w.matched, w.skipped)
			continue
		}
		if len(in.Raw) == 0 {
			t.Errorf("[%d] no raw record", i)
		}
		if w.reason != "" && !strings.Contains(it.Reason, w.reason) {
			t.Errorf("[%d] reason %q, want it to contain %q", i, it.Reason, w.reason)
		}
		if w.matched && it.Reason != "" {
			t.Errorf("[%d] matched with reason %q", i, it.Reason)
		}
		if w.skipped {
			continue
		}
		if in.Gateway != w.gateway || in.Kind != w.kind || in.Severity != w.severity {
			t.Errorf("[%d] gateway %q kind %q severity %q, want %q %q %q", i, in.Gateway, in.Kind, in.Severity, w.gateway, w.kind, w.severity)
		}
		if !w.observed.IsZero() && !in.ObservedAt.Equal(w.observed) {
			t.Errorf("[%d] observed %v, want %v", i, in.ObservedAt, w.observed)
		}
		if !slices.Equal(in.Observables.IPs, w.ips) || !slices.Equal(in.Observables.Domains, w.domains) || !slices.Equal(in.Observables.Hashes, w.hashes) {
			t.Errorf("[%d] observables %+v, want ips %v domains %v hashes %v", i, in.Observables, w.ips, w.domains, w.hashes)
		}
		if w.summary != "" && in.Summary != w.summary {
			t.Errorf("[%d] summary %q, want %q", i, in.Summary, w.summary)
		}
		if w.matched {
			if err := in.Validate(); err != nil {
				t.Errorf("[%d] matched but invalid: %v", i, err)
			}
			if in.Fingerprint == "" || in.Status != indicator.StatusFiring {
				t.Errorf("[%d] not normalised: fingerprint %q status %q", i, in.Fingerprint, in.Status)
			}
		}
	}
}

func TestDecodeWazuhFixtures(t *testing.T) {
	inv := testInventory(t)
	tests := []struct {
		file    string
		mapping WazuhMapping
		want    []wantRecord
		ignored map[string]int
	}{
		{file: "wazuh_integrator_5720.json", want: []wantRecord{{
			matched: true, gateway: "gw-osaka-a", kind: indicator.BruteForce, severity: indicator.Medium,
			observed: testTime(t, "2020-04-17T00:25:13.117Z"), ips: []string{"49.88.112.76"},
			summary: "sshd: Multiple authentication failures.",
		}}},
		// As documented: the agent is the manager's host, the attacker a
		// private address; neither is a gateway, and a web attack has no
		// kind by default.
		{file: "wazuh_ar_shellshock.json", want: []wantRecord{{
			gateway: "", kind: "", severity: indicator.Critical, ips: []string{"192.168.0.223"},
			reason: "no gateway: agent.name=ubuntu-bionic, data.srcip=192.168.0.223 is not a gateway of the inventory; no usable kind: rule 31168, groups web,accesslog,attack, MITRE T1068,T1190 not mapped",
		}}},
		// An operator who wants exploits of public-facing services on a
		// gateway to count maps the technique.
		{file: "wazuh_ar_shellshock_gateway.json", mapping: WazuhMapping{MitreKinds: map[string]string{"T1190": "integrity_violation"}},
			want: []wantRecord{{
				matched: true, gateway: "gw-factory", kind: indicator.IntegrityViolation, severity: indicator.Critical,
				observed: testTime(t, "2021-02-01T20:58:44.830Z"), ips: []string{"192.168.0.223"}, summary: "Shellshock attack detected",
			}}},
		{file: "wazuh_ar_shellshock_delete.json", ignored: map[string]int{"active_response_delete": 1}},
		{file: "wazuh_integrations_test.json", want: []wantRecord{{
			skipped: true, reason: `alerts[0].timestamp: expected a time like 2021-02-01T20:58:44.830+0000, got "year-month-dayThours:minuts:seconds+0000"`,
		}}},
		{file: "wazuh_fim_etc.json", want: []wantRecord{{
			matched: true, gateway: "gw-factory", kind: indicator.ConfigTamper, severity: indicator.Medium,
			hashes: []string{"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}, summary: "Integrity checksum changed.",
		}}},
		{file: "wazuh_fim_etc.json", mapping: WazuhMapping{ConfigPaths: []string{}}, want: []wantRecord{{
			matched: true, gateway: "gw-factory", kind: indicator.IntegrityViolation, severity: indicator.Medium,
			hashes: []string{"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"},
		}}},
		{file: "wazuh_partly_bad.ndjson", ignored: map[string]int{"active_response_delete": 1}, want: []wantRecord{
			{index: 0, matched: true, gateway: "gw-hq", kind: indicator.BruteForce, severity: indicator.Low, ips: []string{"49.88.112.73"}},
			{index: 1, skipped: true, reason: "alerts[1]: expected object, got string"},
			{index: 2, skipped: true, reason: "alerts[2].rule.level: expected number, got string"},
			{index: 4, gateway: "", kind: indicator.BruteForce, severity: indicator.Low, ips: []string{"123.20.109.89"},
				reason: "no gateway: agent.name=Ubuntu, agent.ip=10.0.1.85, predecoder.hostname=ip-10-0-1-85, data.srcip=123.20.109.89 is not a gateway"},
			{index: 5, skipped: true, reason: "alerts[5]: invalid JSON"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d, err := DecodeWazuh(readTestdata(t, tt.file), inv, tt.mapping, testNow)
			if err != nil {
				t.Fatal(err)
			}
			checkDetectorDecoded(t, d, tt.want, tt.ignored)
		})
	}
}

func TestDecodeWazuhShapes(t *testing.T) {
	inv := testInventory(t)
	alert := string(readTestdata(t, "wazuh_integrator_5720.json"))
	ar := string(readTestdata(t, "wazuh_ar_shellshock_gateway.json"))
	del := string(readTestdata(t, "wazuh_ar_shellshock_delete.json"))
	m := WazuhMapping{MitreKinds: map[string]string{"T1190": "integrity_violation"}}
	for name, body := range map[string]string{
		"array":                   "[" + alert + "," + ar + "," + del + "]",
		"concatenated pretty":     ar + del + alert,
		"newline-delimited":       strings.Join([]string{alert, ar, del}, "\n"),
		"crlf and blank lines":    alert + "\r\n\r\n" + strings.ReplaceAll(ar, "\n", " ") + "\r\n" + strings.ReplaceAll(del, "\n", " ") + "\r\n",
		"array with null element": "[" + alert + ",null," + ar + "," + del + "]",
	} {
		t.Run(name, func(t *testing.T) {
			d, err := DecodeWazuh([]byte(body), inv, m, testNow)
			if err != nil {
				t.Fatal(err)
			}
			gws := matchedGateways(d)
			slices.Sort(gws)
			if !slices.Equal(gws, []string{"gw-factory", "gw-osaka-a"}) || d.Ignored["active_response_delete"] != 1 {
				t.Errorf("matched %v, ignored %v", gws, d.Ignored)
			}
		})
	}
}

func TestDecodeWazuhGarbageNamesBody(t *testing.T) {
	checkBodyRefused(t, decodeWazuhWith(testInventory(t), WazuhMapping{}),
		[]string{"", "  \n", "not json", "42", `"alert"`, "[", `{"rule":`, "1 2 3", "null", "true false"})
}

func TestDecodeWazuhSkipsNamingTheField(t *testing.T) {
	tests := map[string]string{
		`{"timestamp":"2021-02-01T20:58:44.830+0000"}`:                                   "alerts[0].rule: is required",
		`{"rule":{"id":"5720","level":17}}`:                                              "alerts[0].rule.level: expected a level 0..16, got 17",
		`{"rule":{"id":"5720","level":2.5}}`:                                             "alerts[0].rule.level: expected a level 0..16",
		`{"rule":{"id":["5720"]}}`:                                                       "alerts[0].rule.id: expected string, got array",
		`{"rule":{"groups":"sshd"}}`:                                                     "alerts[0].rule.groups: expected array, got string",
		`{"rule":{"mitre":{"id":[1110]}}}`:                                               "alerts[0].rule.mitre.id[0]: expected string, got number",
		`{"rule":{"id":"5720"},"agent":{"name":7}}`:                                      "alerts[0].agent.name: expected string, got number",
		`{"rule":{"id":"5720"},"data":{"srcip":["1.2.3.4"]}}`:                            "alerts[0].data.srcip: expected string, got array",
		`{"rule":{"id":"5720"},"data":"srcip=1.2.3.4"}`:                                  "alerts[0].data: expected object, got string",
		`{"version":1,"parameters":{"alert":{}}}`:                                        "alerts[0].command: is required",
		`{"version":1,"command":"restart","parameters":{"alert":{}}}`:                    `alerts[0].command: expected add or delete, got "restart"`,
		`{"version":1,"command":"add","parameters":{"extra_args":[]}}`:                   "alerts[0].parameters.alert: is required",
		`{"version":1,"command":"add","parameters":[]}`:                                  "alerts[0].parameters: expected object, got array",
		`{"version":1,"command":"add","parameters":{"alert":{"rule":{"level":"high"}}}}`: "alerts[0].parameters.alert.rule.level: expected number, got string",
	}
	checkSkipsNamingTheField(t, decodeWazuhWith(testInventory(t), WazuhMapping{}), tests, true)
}

func TestDecodeWazuhIgnoresFieldsItDoesNotUse(t *testing.T) {
	// Wazuh 3.x and other senders vary these; Warden must not care.
	body := `{"rule":{"id":5720,"level":10,"groups":["authentication_failures"],"firedtimes":"5","mitre":{"tactic":7}},` +
		`"agent":{"name":"gw-hq","labels":[1]},"manager":{"name":"m","extra":null},"full_log":{"x":1},"cluster":7,"data":{"srcport":22,"win":{}}}`
	d, err := DecodeWazuh([]byte(body), testInventory(t), WazuhMapping{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Items) != 1 || !d.Items[0].Matched || d.Items[0].Indicator.Labels["rule_id"] != "5720" {
		t.Fatalf("items %+v", d.Items)
	}
	if got := d.Items[0].Indicator.ObservedAt; !got.Equal(testNow) {
		t.Errorf("observed %v, want the intake time", got)
	}
}

func TestDecodeWazuhGatewayOrder(t *testing.T) {
	inv := testInventory(t)
	tests := map[string]string{
		`"agent":{"name":"gw-hq","ip":"203.0.113.20"}`:                                                    "gw-hq",
		`"agent":{"name":"wazuh-manager","ip":"203.0.113.20"}`:                                            "gw-osaka-a",
		`"agent":{"id":"000","name":"wazuh-manager"},"predecoder":{"hostname":"gw-osaka-b.corp.example"}`: "gw-osaka-b",
		`"agent":{"name":"web01","ip":"any"},"data":{"srcip":"198.51.100.7","dstip":"2001:db8:30:0::1"}`:  "gw-factory",
		`"agent":{"name":"web01"},"data":{"srcip":"10.10.0.1","dstip":"198.51.100.7"}`:                    "gw-hq",
	}
	checkGatewayOrder(t, decodeWazuhWith(inv, WazuhMapping{}), func(fields string) string {
		return `{"rule":{"id":"5720","level":10},` + fields + `}`
	}, tests)
}

func TestWazuhKindPrecedence(t *testing.T) {
	m := WazuhMapping{}.WithDefaults()
	tests := []struct {
		alert wazuhAlert
		want  indicator.Kind
	}{
		{wazuhAlert{ruleID: "5712", groups: []string{"syscheck"}}, indicator.BruteForce},
		{wazuhAlert{ruleID: "1", groups: []string{"syslog", "sshd", "authentication_failed"}}, indicator.BruteForce},
		{wazuhAlert{groups: []string{"authentication_failed"}}, ""},
		{wazuhAlert{groups: []string{"authentication_failed", "pam", "sshd", "sshd"}}, indicator.BruteForce},
		{wazuhAlert{groups: []string{"rootcheck"}}, indicator.IntegrityViolation},
		{wazuhAlert{groups: []string{"web"}, mitre: []string{"T1021", "T1110.001"}}, indicator.BruteForce},
		{wazuhAlert{mitre: []string{"t1048"}}, indicator.Exfiltration},
		{wazuhAlert{ruleID: "550", fimPath: "/etc/wireguard/wg0.conf"}, indicator.ConfigTamper},
		{wazuhAlert{ruleID: "550", fimPath: "/usr/sbin/sshd"}, indicator.IntegrityViolation},
	}
	for _, tt := range tests {
		got, why := m.kind(&tt.alert)
		if got != tt.want || (got == "") != (why != "") {
			t.Errorf("%+v: kind %q (%s), want %q", tt.alert, got, why, tt.want)
		}
	}
	three := WazuhMapping{RuleGroupKinds: map[string]string{"web+attack+accesslog": "integrity_violation", "web+attack": "crash"}}.WithDefaults()
	if got, _ := three.kind(&wazuhAlert{groups: []string{"web", "accesslog", "attack"}}); got != indicator.IntegrityViolation {
		t.Errorf("three groups: %q, want the three-group combination first", got)
	}
	off := WazuhMapping{RuleIDKinds: map[string]string{"5712": ""}, RuleGroupKinds: map[string]string{"sshd+authentication_failed": ""}}.WithDefaults()
	if got, _ := off.kind(&wazuhAlert{ruleID: "5712", groups: []string{"sshd", "authentication_failed"}}); got != "" {
		t.Errorf("defaults switched off still map to %q", got)
	}
	bogus := WazuhMapping{RuleIDKinds: map[string]string{"9": "bogus"}}.WithDefaults()
	if got, why := bogus.kind(&wazuhAlert{ruleID: "9"}); got != "" || !strings.Contains(why, `unknown kind "bogus"`) {
		t.Errorf("unknown kind: %q %q", got, why)
	}
}

func TestWazuhSeverityThresholds(t *testing.T) {
	def := WazuhMapping{}.WithDefaults()
	strict := WazuhMapping{MediumLevel: 5, HighLevel: 10, CriticalLevel: 13}.WithDefaults()
	for level, want := range map[int][2]indicator.Severity{
		0: {indicator.Low, indicator.Low}, 5: {indicator.Low, indicator.Medium}, 6: {indicator.Low, indicator.Medium},
		7: {indicator.Medium, indicator.Medium}, 10: {indicator.Medium, indicator.High}, 12: {indicator.High, indicator.High},
		13: {indicator.High, indicator.Critical}, 15: {indicator.Critical, indicator.Critical}, 16: {indicator.Critical, indicator.Critical},
	} {
		if got := [2]indicator.Severity{def.severity(level), strict.severity(level)}; got != want {
			t.Errorf("level %d: %v, want %v", level, got, want)
		}
	}
}

func TestWazuhMappingDefaultsAndValidate(t *testing.T) {
	var zero WazuhMapping
	d := zero.WithDefaults()
	if d.MediumLevel != 7 || d.HighLevel != 12 || d.CriticalLevel != 15 || d.Confidence != 0.8 || !slices.Equal(d.ConfigPaths, []string{"/etc/"}) {
		t.Errorf("defaults %+v", d)
	}
	if zero.RuleIDKinds != nil {
		t.Error("WithDefaults changed its receiver")
	}
	twice := d.WithDefaults()
	if !maps.Equal(twice.RuleGroupKinds, d.RuleGroupKinds) || !maps.Equal(twice.MitreKinds, d.MitreKinds) {
		t.Error("WithDefaults is not idempotent")
	}
	if err := zero.Validate(); err != nil {
		t.Errorf("zero mapping: %v", err)
	}
	checkValidateFields(t, map[*WazuhMapping]string{
		{RuleIDKinds: map[string]string{"5712": "bruteforce"}}:                     "rule_id_kinds.5712",
		{RuleGroupKinds: map[string]string{"sshd+": "brute_force"}}:                `rule_group_kinds."sshd+"`,
		{RuleGroupKinds: map[string]string{"web": "exploit"}}:                      "rule_group_kinds.web",
		{RuleGroupKinds: map[string]string{"a+b+c+d": "brute_force"}}:              `rule_group_kinds."a+b+c+d"`,
		{RuleGroupKinds: map[string]string{"authentication_failed+sshd": "crash"}}: `rule_group_kinds."sshd+authentication_failed"`,
		{MitreKinds: map[string]string{"Brute Force": "brute_force"}}:              `mitre_kinds."BRUTE FORCE"`,
		{MitreKinds: map[string]string{"T1190": "initial_access"}}:                 "mitre_kinds.T1190",
		{CriticalLevel: 17}:             "critical_level",
		{MediumLevel: -1}:               "medium_level",
		{MediumLevel: 12, HighLevel: 8}: "high_level",
		{Confidence: 1.5}:               "confidence",
		{Confidence: -0.1}:              "confidence",
	})
	if err := (WazuhMapping{RuleIDKinds: map[string]string{"5712": ""}, MitreKinds: map[string]string{"T1190.001": "integrity_violation"}}).Validate(); err != nil {
		t.Errorf("switching off and sub-techniques: %v", err)
	}
}

func TestDecodeWazuhNilInventory(t *testing.T) {
	d, err := DecodeWazuh(readTestdata(t, "wazuh_integrator_5720.json"), nil, WazuhMapping{}, testNow)
	if err != nil || len(d.Items) != 1 || d.Items[0].Matched || !strings.Contains(d.Items[0].Reason, "no gateway") {
		t.Fatalf("%+v %v", d, err)
	}
}

func FuzzDecodeWazuh(f *testing.F) {
	for _, b := range testdataFiles(f, "wazuh_*json") {
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `[]`, `[1,{},null]`, `{"rule":{}}`, `{"rule":{"level":16,"id":5720},"agent":{"ip":"[::1]"}}`,
		`{"parameters":{"alert":{"rule":{}}},"command":"add"}`, "{\"rule\":{}}\n{\"rule\":", `{"rule":{"groups":["sshd","authentication_failed"]},"data":{"dstip":"10.20.0.2"}}`} {
		f.Add([]byte(s))
	}
	inv := testInventory(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := DecodeWazuh(body, inv, WazuhMapping{}, testNow)
		checkFuzzedDecode(t, inv, fuzzedBody{records: "alerts"}, d, err)
	})
}

// decodeWazuhWith decodes Wazuh bodies with inv and m.
func decodeWazuhWith(inv *inventory.Inventory, m WazuhMapping) detectorDecode {
	return func(body []byte) (Decoded, error) { return DecodeWazuh(body, inv, m, testNow) }
}

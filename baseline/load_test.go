package baseline

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadFileErrorsNameFileAndLine(t *testing.T) {
	tests := map[string]struct {
		file string
		want []string
	}{
		"unknown key": {
			file: "testdata/unknown-key.yaml",
			want: []string{`testdata/unknown-key.yaml:10: unknown key "permit"`},
		},
		"parameter of another type": {
			file: "testdata/wrong-type-param.yaml",
			want: []string{`testdata/wrong-type-param.yaml:17: check "fwd": "max_key_age" is not a parameter of type sysctl`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFile(tc.file)
			if err == nil {
				t.Fatal("loaded an invalid baseline")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadFileValid(t *testing.T) {
	b, err := LoadFile("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, ok := b.Check("fwd")
	if !ok || b.Name != "branch-minimal" || c.Line != 5 || c.File != "testdata/minimal.yaml" || !c.RequireBoot {
		t.Errorf("loaded %+v / %+v", b, c)
	}
}

const validCheck = `
  - id: ok
    title: t
    rationale: r
    severity: low
    type: sysctl
    keys: [net.ipv4.ip_forward]
    one_of: ["1"]
`

func TestParseRejects(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want string
	}{
		"no name":           {"checks:" + validCheck, "b.yaml: name is required"},
		"no checks":         {"name: x\nchecks: []\n", "at least one check"},
		"two documents":     {"name: x\nchecks:" + validCheck + "---\nname: y\n", "exactly one YAML document"},
		"bad yaml":          {"name: x\nchecks: [\n", "b.yaml:"},
		"duplicate id":      {"name: x\nchecks:" + validCheck + validCheck, `b.yaml:11: check "ok": duplicate id, first defined at line 3`},
		"bad severity":      {"name: x\nchecks:" + strings.Replace(validCheck, "severity: low", "severity: urgent", 1), `b.yaml:3: check "ok": severity "urgent"`},
		"unknown type":      {"name: x\nchecks:" + strings.Replace(validCheck, "type: sysctl", "type: selinux", 1), `type "selinux" is not one of`},
		"bad id":            {"name: x\nchecks:" + strings.Replace(validCheck, "id: ok", "id: Not OK", 1), "id must be lower-case"},
		"no rationale":      {"name: x\nchecks:" + strings.Replace(validCheck, "rationale: r", "rationale: ''", 1), "rationale is required"},
		"sysctl glob key":   {"name: x\nchecks:" + strings.Replace(validCheck, "net.ipv4.ip_forward", "net.ipv4.conf.*.rp_filter", 1), "is not a sysctl name"},
		"sysctl max":        {"name: x\nchecks:" + validCheck + "    max: 3\n", `b.yaml:10: check "ok": "max" is not a parameter of type sysctl`},
		"unsafe with value": {"name: x\nchecks:" + validCheck + "    remediation: {safe: false, value: '1', description: d}\n", "only used by a safe remediation"},
		"safe value not accepted": {"name: x\nchecks:" + validCheck + "    remediation: {safe: true, value: '0', description: d}\n",
			`remediation.value "0" must be one of one_of`},
		"safe remediation outside sysctl": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: tunnels, require_psk: true, remediation: {safe: true, description: d}}\n",
			"only sysctl remediations are applied automatically"},
		"override without rationale": {"name: x\nchecks:" + validCheck + "    profile_override: {benchmark: CIS}\n", "needs both benchmark and rationale"},
		"sshd two expectations": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: sshd, option: MaxAuthTries, max: 4, one_of: ['3']}\n",
			"takes only one of max/min, one_of"},
		"sshd algorithms on a yes/no option": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: sshd, option: PermitRootLogin, allowed_algorithms: [x]}\n",
			"allowed_algorithms applies to Ciphers, MACs and KexAlgorithms"},
		"firewall nothing": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: firewall}\n",
			"needs one of allowed_listeners, default_policies"},
		"firewall bad policy": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: firewall, default_policies: {input: reject}}\n",
			`policy "reject" is not drop or accept`},
		"listener bad address": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: firewall, allowed_listeners: [{proto: tcp, ports: [22], addresses: [mgmt]}]}\n",
			`address "mgmt" is not any, management`},
		"listener unknown key": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: firewall, allowed_listeners: [{proto: tcp, port: 22}]}\n",
			`b.yaml:3: unknown key "port"`},
		"tunnels two aspects": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: tunnels, require_psk: true, forbid_aggressive: true}\n",
			"takes only one of forbid_aggressive, require_psk"},
		"bad key age": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: tunnels, max_key_age: 3 months}\n",
			`b.yaml:3: parsing duration "3 months"`},
		"bad minimum version": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: packages, minimum_versions: {openssh-server: 'x:1.0'}}\n",
			"epoch in version is not a non-negative number"},
		"relative integrity path": {"name: x\nchecks:\n  - {id: a, title: t, rationale: r, severity: low, type: integrity, files: [etc/passwd]}\n",
			"must be an absolute, clean path"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("b.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("parsed an invalid baseline")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadFromFS(t *testing.T) {
	fsys := fstest.MapFS{"site/gw.yaml": {Data: []byte("name: x\nchecks:" + validCheck)}}
	b, err := Load(fsys, "site/gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b.File != "site/gw.yaml" || b.Checks[0].Line != 3 {
		t.Errorf("file %q line %d", b.File, b.Checks[0].Line)
	}
	if _, err := Load(fsys, "missing.yaml"); err == nil {
		t.Error("loaded a missing file")
	}
}

func TestDefaultBaselineShape(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	fwd, ok := b.Check("sysctl-ip-forward")
	if !ok || fwd.ProfileOverride == nil || !strings.Contains(fwd.ProfileOverride.Benchmark, "ip_forward = 0") {
		t.Errorf("ip_forward must carry an explicit profile override of the generic benchmark: %+v", fwd)
	}
	for _, c := range b.Checks {
		if c.Remediation == nil {
			t.Errorf("%s: no remediation advice", c.ID)
			continue
		}
		if c.Remediation.Safe && c.Type != TypeSysctl {
			t.Errorf("%s: only sysctl remediations may be safe", c.ID)
		}
	}
	types := map[CheckType]bool{}
	for _, c := range b.Checks {
		types[c.Type] = true
	}
	for ct := range typeKeys {
		if !types[ct] {
			t.Errorf("the shipped baseline has no %s check", ct)
		}
	}
}

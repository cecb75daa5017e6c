package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/baseline"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/netlab/netlabtest"
	"github.com/warden-ir/warden/store"
)

// The drift lab: the compromised gateway of the Linux lab gets a
// filesystem root (a directory the agent reads configuration files under,
// --baseline-root) that passes every check of the shipped gateway baseline,
// and its network namespace gets the runtime values and firewall that
// baseline wants: hardened sysctls and a default-drop INPUT and FORWARD
// policy (both families) that accepts only loopback, established flows,
// ICMP, IKE/WireGuard, and the agent port from the management networks.
// The agent is its namespace's only listener (QuietTarget). The controller
// runs the shipped default policies and runbooks (policies.dir empty) with
// the drift schedule off: every check is driven through the API.

// hardenedSysctls are the values the shipped baseline's sysctl checks want,
// set at runtime in the gateway's namespace and written to the boot-time
// file under the root.
var hardenedSysctls = [][2]string{
	{"net.ipv4.ip_forward", "1"},
	{"net.ipv4.conf.all.rp_filter", "2"},
	{"net.ipv4.conf.default.rp_filter", "2"},
	{"net.ipv4.conf.all.accept_redirects", "0"},
	{"net.ipv4.conf.default.accept_redirects", "0"},
	{"net.ipv6.conf.all.accept_redirects", "0"},
	{"net.ipv6.conf.default.accept_redirects", "0"},
	{"net.ipv4.conf.all.send_redirects", "0"},
	{"net.ipv4.conf.default.send_redirects", "0"},
	{"net.ipv4.conf.all.accept_source_route", "0"},
	{"net.ipv4.conf.default.accept_source_route", "0"},
	{"net.ipv6.conf.all.accept_source_route", "0"},
	{"net.ipv6.conf.default.accept_source_route", "0"},
	{"net.ipv4.tcp_syncookies", "1"},
	{"net.ipv4.conf.all.log_martians", "1"},
	{"net.ipv4.conf.default.log_martians", "1"},
}

const (
	hardenedSSHD = `# Hardened gateway sshd configuration.
Include /etc/ssh/sshd_config.d/*.conf
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
MaxAuthTries 3
UsePAM yes
Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com
KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org
Subsystem sftp /usr/lib/openssh/sftp-server
`
	// strongSwanConf is a site-to-site connection; PROPOSAL is replaced by
	// the IKE proposal. No secret is in it (the PSK would be in
	// conf.d/secrets, which the checks do not need).
	strongSwanConf = `connections {
   hq {
      version = 2
      proposals = PROPOSAL
      local_addrs = 192.0.2.1
      remote_addrs = 192.0.2.2
      local {
         auth = psk
         id = osaka
      }
      remote {
         auth = psk
         id = hq
      }
      children {
         lan {
            local_ts = 10.1.0.0/16
            remote_ts = 10.2.0.0/16
            esp_proposals = aes256gcm16-ecp384
         }
      }
   }
}
`
	strongProposal = "aes256gcm16-prfsha384-ecp384"
	weakProposal   = "aes128-sha1-modp1024"

	gatewayPasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
admin:x:1000:1000:Gateway admin,,,:/home/admin:/bin/bash
`
	// sshdBinary is the stand-in for /usr/sbin/sshd that integrity-binaries
	// hashes; phase 4 trojans it.
	sshdBinary = "/usr/sbin/sshd"
)

// writeGatewayRoot writes, under root, a Debian 12 VPN gateway's files
// that pass every check of the shipped baseline once the namespace's
// runtime values are hardened too.
func writeGatewayRoot(t *testing.T, root string) {
	t.Helper()
	var sysctl strings.Builder
	sysctl.WriteString("# Gateway kernel settings.\n")
	for _, kv := range hardenedSysctls {
		sysctl.WriteString(kv[0] + " = " + kv[1] + "\n")
	}
	var dpkg strings.Builder
	for _, p := range [][2]string{
		{"openssh-server", "1:9.2p1-2+deb12u6"},
		{"strongswan-charon", "5.9.8-5+deb12u6"},
		{"libssl3", "3.0.17-1~deb12u2"},
		{"sudo", "1.9.13p3-1+deb12u1"},
		{"wireguard-tools", "1.0.20210914-1+b1"},
	} {
		dpkg.WriteString("Package: " + p[0] + "\nStatus: install ok installed\nArchitecture: amd64\nVersion: " + p[1] + "\nDescription: " + p[0] + "\n\n")
	}
	files := map[string]string{
		"/etc/ssh/sshd_config":          hardenedSSHD,
		"/etc/sysctl.d/90-gateway.conf": sysctl.String(),
		"/etc/swanctl/swanctl.conf":     strings.Replace(strongSwanConf, "PROPOSAL", strongProposal, 1),
		"/etc/wireguard/wg0.conf": "[Interface]\nPrivateKey = " + randomKey(t) + "\nListenPort = 51820\n\n" +
			"[Peer]\nPublicKey = " + randomKey(t) + "\nPresharedKey = " + randomKey(t) + "\nAllowedIPs = 10.3.0.0/16\n",
		"/var/lib/dpkg/status":       dpkg.String(),
		"/etc/passwd":                gatewayPasswd,
		"/root/.ssh/authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eDriftLabBreakGlassKeyNotARealKey000000 breakglass@ops\n",
		sshdBinary:                   "ELF sshd 9.2p1 (stand-in)\n",
		"/usr/lib/ipsec/charon":      "ELF charon 5.9.8 (stand-in)\n",
		"/usr/sbin/swanctl":          "ELF swanctl 5.9.8 (stand-in)\n",
		"/usr/sbin/nft":              "ELF nft (stand-in)\n",
		"/usr/bin/sudo":              "ELF sudo (stand-in)\n",
		"/etc/pam.d/sshd":            "@include common-auth\naccount required pam_nologin.so\n",
		"/etc/pam.d/common-auth":     "auth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\n",
		"/etc/sudoers":               "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n",
	}
	for p, content := range files {
		writeUnder(t, root, p, content)
	}
}

// randomKey is a WireGuard-shaped key made up for the fixture.
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func writeUnder(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readUnder(t *testing.T, root, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hardenNamespace sets the hardened sysctls at runtime in the gateway's
// namespace and installs a default-drop firewall next to the lab's site
// table: nftables drops a packet that any base chain on the hook drops, so
// this table decides, and the baseline's firewall check sees policy drop
// for input and forward in both families (an inet table).
func (l *linuxLab) hardenNamespace(t *testing.T) {
	t.Helper()
	ns := l.target.Gateway.NS
	for _, kv := range hardenedSysctls {
		l.setSysctl(t, kv[0], kv[1])
	}
	mgmt := l.lab.ManagementPrefixes()
	cmds := [][]string{
		{"nft", "add", "table", "inet", "gwharden"},
		{"nft", "add", "chain", "inet", "gwharden", "input", "{", "type", "filter", "hook", "input", "priority", "10", ";", "policy", "drop", ";", "}"},
		{"nft", "add", "chain", "inet", "gwharden", "forward", "{", "type", "filter", "hook", "forward", "priority", "10", ";", "policy", "drop", ";", "}"},
		{"nft", "add", "rule", "inet", "gwharden", "input", "iif", "lo", "accept"},
		{"nft", "add", "rule", "inet", "gwharden", "input", "ct", "state", "established,related", "accept"},
		{"nft", "add", "rule", "inet", "gwharden", "input", "meta", "l4proto", "{", "icmp,", "ipv6-icmp", "}", "accept"},
		{"nft", "add", "rule", "inet", "gwharden", "input", "udp", "dport", "{", "500,", "4500,", "51820", "}", "accept"},
		{"nft", "add", "rule", "inet", "gwharden", "forward", "ct", "state", "established,related", "accept"},
	}
	for _, p := range mgmt {
		fam := "ip"
		if p.Addr().Is6() {
			fam = "ip6"
		}
		cmds = append(cmds, []string{"nft", "add", "rule", "inet", "gwharden", "input", fam, "saddr", p.String(), "tcp", "dport", "{", "22,", "8443", "}", "accept"})
	}
	for _, c := range cmds {
		if out, err := l.lab.Run(t.Context(), ns, c...); err != nil {
			t.Fatalf("hardening the gateway's firewall: %v\n%s", err, out)
		}
	}
}

func (l *linuxLab) setSysctl(t *testing.T, key, value string) {
	t.Helper()
	if out, err := l.lab.Run(t.Context(), l.target.Gateway.NS, "sysctl", "-w", key+"="+value); err != nil {
		t.Fatalf("setting %s in the gateway's namespace: %v\n%s", key, err, out)
	}
}

func (l *linuxLab) sysctl(t *testing.T, key string) string {
	t.Helper()
	out, err := l.lab.Run(t.Context(), l.target.Gateway.NS, "sysctl", "-n", key)
	if err != nil {
		t.Fatalf("reading %s in the gateway's namespace: %v\n%s", key, err, out)
	}
	return strings.TrimSpace(string(out))
}

// driftCheck is POST /v1/drift/check for the lab's gateway.
func (l *linuxLab) driftCheck(t *testing.T) controller.DriftResult {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"gateway": l.gwID})
	var out struct {
		Results []controller.DriftResult `json:"results"`
	}
	l.api.call(t, http.MethodPost, "/v1/drift/check", body, http.StatusOK, &out)
	if len(out.Results) != 1 {
		t.Fatalf("drift check answered %d results, want 1: %+v", len(out.Results), out.Results)
	}
	r := out.Results[0]
	if r.Error != "" || r.Skipped != "" {
		t.Fatalf("drift check of %s: error %q, skipped %q", r.Gateway, r.Error, r.Skipped)
	}
	return r
}

// explainBaseline asks the agent directly (as the controller would, but
// recording nothing) for the full report and logs every check that did not
// pass with its message and evidence: the drift API names only the ids.
func (l *linuxLab) explainBaseline(t *testing.T) {
	t.Helper()
	var mgmt []string
	for _, p := range l.lab.ManagementPrefixes() {
		mgmt = append(mgmt, p.String())
	}
	var res wire.BaselineResult
	if code, err := l.agent.send(t.Context(), wire.KindBaseline, wire.BaselineParams{Management: mgmt}, &res); err != nil {
		t.Logf("asking the agent for its baseline report: %d %v", code, err)
		return
	}
	var rep baseline.Report
	if err := json.Unmarshal(res.Report, &rep); err != nil {
		t.Logf("decoding the agent's report: %v", err)
		return
	}
	for _, r := range rep.Results {
		if r.Status != baseline.StatusPass {
			t.Logf("%s: %s: %s; evidence %+v", r.ID, r.Status, r.Message, r.Evidence)
		}
	}
}

// changeOf returns the drift change for check id.
func changeOf(t *testing.T, r controller.DriftResult, id string) baseline.Change {
	t.Helper()
	for _, c := range r.Changes {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("drift check reports no change of %s: changes %+v, failing %v", id, r.Changes, r.Failing)
	return baseline.Change{}
}

// onlyIndicator returns the single indicator a drift check accepted, which
// must have matched a policy and started a run.
func onlyIndicator(t *testing.T, r controller.DriftResult) controller.Accepted {
	t.Helper()
	if len(r.Indicators) != 1 {
		t.Fatalf("drift check accepted %d indicators, want 1: %+v (changes %+v)", len(r.Indicators), r.Indicators, r.Changes)
	}
	a := r.Indicators[0]
	if !a.Matched || a.Duplicate || a.IncidentID == "" || a.RunID == "" {
		t.Fatalf("drift indicator started no run: %+v", a)
	}
	return a
}

// stepDetails decodes a step's result details.
func stepDetails(t *testing.T, s store.Step) map[string]any {
	t.Helper()
	var res actions.Result
	if len(s.Result) > 0 {
		if err := json.Unmarshal(s.Result, &res); err != nil {
			t.Fatalf("decoding step %s result %s: %v", s.Action, s.Result, err)
		}
	}
	return res.Details
}

// TestLinuxBaselineDrift proves the drift path end to end in the namespace
// lab: a real agent evaluates the shipped gateway baseline against a
// gateway root and its own namespace's kernel, the controller turns a
// pass-to-fail change into an indicator, the shipped policies decide, and
// the runbook either remediates through the agent, fails naming what a
// person must fix, or waits for a person before isolating. Every step is
// in the audit chain. See each phase for what it proves.
func TestLinuxBaselineDrift(t *testing.T) {
	// Root, namespaces, nft for the firewall, sysctl to set and read the
	// namespace's kernel values by hand; skipped clearly otherwise.
	netlabtest.Skip(t, "nft", "sysctl")
	// The root must exist before the agent starts: --baseline-root names it.
	root := t.TempDir()
	writeGatewayRoot(t, root)
	l := newLinuxLab(t, linuxLabOptions{
		Prefix:      "e2d",
		AgentArgs:   []string{"--baseline-root", root},
		QuietTarget: true,
		Configure: func(cfg *config.Config) {
			cfg.Policies.Dir = "" // the shipped default policies and runbooks
			cfg.Drift.Interval = 0
		},
	})
	ctx := t.Context()
	manifest := filepath.Join(l.dir, "agent-state", "baseline-manifest.json")

	phase(t, "1 a hardened gateway passes the whole shipped baseline; the manifest is recorded", func(t *testing.T) {
		l.hardenNamespace(t)
		// The default-drop firewall still lets management reach the agent.
		l.waitAgent()
		r := l.driftCheck(t)
		if !r.Passed || r.Counts.Fail != 0 || r.Counts.Error != 0 {
			l.explainBaseline(t)
			t.Fatalf("first check does not pass: counts %+v, failing %v", r.Counts, r.Failing)
		}
		// Nothing was skipped: every check of the shipped baseline, sshd to
		// integrity, had something to judge and passed.
		if r.Counts.Skip != 0 {
			l.explainBaseline(t)
			t.Errorf("first check skipped %d checks", r.Counts.Skip)
		}
		if len(r.Changes) != 0 || len(r.Indicators) != 0 {
			t.Errorf("first check raised changes %+v, indicators %+v", r.Changes, r.Indicators)
		}
		if _, err := os.Stat(manifest); err != nil {
			t.Fatalf("no integrity manifest recorded in the agent's state dir: %v", err)
		}
	})

	var sysctlIncident, sysctlRun string
	const redirects = "net.ipv4.conf.all.accept_redirects"
	phase(t, "2 runtime sysctl drift becomes baseline_drift and the runbook remediates it through the agent", func(t *testing.T) {
		bootFile := readUnder(t, root, "/etc/sysctl.d/90-gateway.conf")
		l.setSysctl(t, redirects, "1") // runtime only; the file still says 0
		r := l.driftCheck(t)
		if r.Passed || !slices.Contains(r.Failing, "sysctl-accept-redirects") {
			t.Fatalf("drift not seen: passed %t, failing %v", r.Passed, r.Failing)
		}
		ch := changeOf(t, r, "sysctl-accept-redirects")
		if ch.Kind != indicator.BaselineDrift || ch.From != baseline.StatusPass || ch.To != baseline.StatusFail {
			t.Errorf("change %+v", ch)
		}
		a := onlyIndicator(t, r)
		if a.Policy != "baseline-drift-remediate" {
			t.Fatalf("policy %q decided, want baseline-drift-remediate", a.Policy)
		}
		sysctlIncident, sysctlRun = a.IncidentID, a.RunID
		run := l.api.waitRun(t, a.RunID, 20*time.Millisecond)
		if run.State != store.RunSucceeded || run.Runbook != "remediate-baseline" {
			t.Fatalf("run %s (%s): %s: %s", run.ID, run.Runbook, run.State, run.Error)
		}
		vb := stepOf(t, run, actions.NameVerifyBaseline)
		det := stepDetails(t, vb)
		if vb.State != store.StepSucceeded || !anyContains(det["remediated"], "sysctl-accept-redirects") {
			t.Errorf("verify_baseline %s: %s", vb.State, vb.Result)
		}
		// The kernel, read with sysctl rather than through Warden, is
		// hardened again in the gateway's namespace.
		if v := l.sysctl(t, redirects); v != "0" {
			t.Errorf("%s = %s in the gateway's namespace after remediation, want 0", redirects, v)
		}
		// The boot-time file was right all along: it is untouched, and no
		// drop-in was needed.
		if !bytes.Equal(readUnder(t, root, "/etc/sysctl.d/90-gateway.conf"), bootFile) {
			t.Error("the boot-time sysctl file changed")
		}
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(baseline.DropInPath))); err == nil {
			t.Errorf("remediation wrote %s although the boot value was right", baseline.DropInPath)
		}
		after := l.driftCheck(t)
		if !after.Passed || len(after.Indicators) != 0 {
			t.Errorf("check after remediation: passed %t, failing %v, indicators %+v", after.Passed, after.Failing, after.Indicators)
		}
	})

	var weakRun string
	phase(t, "3 a weak IPsec proposal becomes baseline_drift; the runbook fails naming the check, for a person", func(t *testing.T) {
		weak := strings.Replace(strongSwanConf, "PROPOSAL", weakProposal, 1)
		writeUnder(t, root, "/etc/swanctl/swanctl.conf", weak)
		r := l.driftCheck(t)
		ch := changeOf(t, r, "ipsec-proposals")
		if ch.Kind != indicator.BaselineDrift || !strings.Contains(ch.Message, "sha1") || !strings.Contains(ch.Message, "modp1024") {
			t.Errorf("change %+v", ch)
		}
		a := onlyIndicator(t, r)
		if a.Policy != "baseline-drift-remediate" {
			t.Fatalf("policy %q decided, want baseline-drift-remediate", a.Policy)
		}
		// The drift joins the gateway's open incident (default incident
		// window) but gets its own response: a finished remediation run
		// must not swallow a new sign.
		if a.RunID == "" || a.RunID == sysctlRun {
			t.Fatalf("the weak proposal started no new run (incident %s, run %q)", a.IncidentID, a.RunID)
		}
		weakRun = a.RunID
		run := l.api.waitRun(t, a.RunID, 20*time.Millisecond)
		if run.State != store.RunFailed || !strings.Contains(run.Error, "ipsec-proposals") {
			t.Fatalf("run %s: %s, error %q; want failed naming ipsec-proposals", run.ID, run.State, run.Error)
		}
		if n := stepOf(t, run, "notify"); n.State != store.StepSucceeded {
			t.Errorf("notify step %s: %s", n.State, n.Error)
		}
		vb := stepOf(t, run, actions.NameVerifyBaseline)
		if vb.State != store.StepFailed || !strings.Contains(vb.Error, "ipsec-proposals") {
			t.Errorf("verify_baseline %s: %q", vb.State, vb.Error)
		}
		// Terminal: no safe remediation exists, so it is not retried.
		if vb.Attempts != 1 {
			t.Errorf("verify_baseline attempted %d times, want 1", vb.Attempts)
		}
		// The agent touched nothing it may not: the weak configuration is as
		// written, waiting for a person.
		if got := string(readUnder(t, root, "/etc/swanctl/swanctl.conf")); got != weak {
			t.Errorf("swanctl.conf changed by the remediation:\n%s", got)
		}
	})

	var tamperIncident, tamperRun string
	phase(t, "4 a trojaned binary becomes integrity_violation; containment waits for approval, then isolates", func(t *testing.T) {
		trojan := "ELF sshd 9.2p1 (stand-in) with a credential harvester\n"
		writeUnder(t, root, sshdBinary, trojan)
		sum := sha256.Sum256([]byte(trojan))
		newHash := hex.EncodeToString(sum[:])

		r := l.driftCheck(t)
		ch := changeOf(t, r, "integrity-binaries")
		if ch.Kind != indicator.IntegrityViolation || ch.Severity != indicator.Critical || !strings.Contains(ch.Message, sshdBinary+" changed") {
			t.Errorf("change %+v", ch)
		}
		a := onlyIndicator(t, r)
		if a.Policy != "tamper-contain-with-approval" || a.RunState != store.RunAwaitingApproval {
			t.Fatalf("policy %q, run %s; want tamper-contain-with-approval awaiting approval", a.Policy, a.RunState)
		}
		tamperIncident, tamperRun = a.IncidentID, a.RunID
		var run store.Run
		l.api.call(t, http.MethodGet, "/v1/runs/"+a.RunID, nil, http.StatusOK, &run)
		if run.State != store.RunAwaitingApproval || !run.ApprovalRequired || run.Runbook != "respond-confirmed-compromise" {
			t.Fatalf("run %s: %s, approval required %t, runbook %s", run.ID, run.State, run.ApprovalRequired, run.Runbook)
		}
		// The new hash of the trojaned file travels with the indicator.
		var inc v1.IncidentDetail
		l.api.call(t, http.MethodGet, "/v1/incidents/"+a.IncidentID, nil, http.StatusOK, &inc)
		found := false
		for _, rec := range inc.Indicators {
			if rec.ID == a.IndicatorID {
				found = slices.Contains(rec.Indicator.Observables.Hashes, newHash)
			}
		}
		if !found {
			t.Errorf("indicator %s of incident %s does not carry the new hash %s", a.IndicatorID, a.IncidentID, newHash)
		}
		// Nothing happened to the gateway before a person decided.
		if st := l.agent.observe(t); st.Quarantined || l.rulesInKernel() {
			t.Fatalf("gateway quarantined before approval: %+v", st)
		}

		l.api.as(v1.RoleApprover).call(t, http.MethodPost, "/v1/runs/"+a.RunID+"/approve", []byte(`{}`), http.StatusOK, nil)
		run = l.api.waitRun(t, a.RunID, 20*time.Millisecond)
		if run.State != store.RunSucceeded {
			t.Fatalf("approved containment %s: %s", run.State, run.Error)
		}
		if run.ApprovedBy == "" {
			t.Error("run records no approver")
		}
		if iso := stepOf(t, run, actions.NameIsolate); iso.State != store.StepSucceeded {
			t.Errorf("isolate %s: %s", iso.State, iso.Error)
		}
		st := l.agent.observe(t)
		if !st.Quarantined || !st.Confirmed || !l.rulesInKernel() {
			t.Errorf("agent state after the approved containment: %+v", st)
		}
		if p := l.api.posture(t, l.gwID); p.Desired != store.PostureQuarantined {
			t.Errorf("posture desired %q", p.Desired)
		}
	})

	phase(t, "5 release through override and approval", func(t *testing.T) {
		l.api.release(t, l.gwID, tamperIncident)
		if l.rulesInKernel() {
			t.Error("quarantine table left in the kernel after release")
		}
		if st := l.agent.observe(t); st.Quarantined {
			t.Errorf("agent still quarantined: %+v", st)
		}
	})

	phase(t, "6 every decision is in the audit chain, and the chain verifies", func(t *testing.T) {
		_, entries := l.stopAndVerifyAudit(ctx, t)
		type want struct {
			what string
			ok   func(e audit.Entry, d map[string]any) bool
		}
		wants := []want{
			{"baseline.checked failing sysctl-accept-redirects", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "baseline.checked" && e.Subject == l.gwID && anyContains(d["failing"], "sysctl-accept-redirects")
			}},
			{"indicator.accepted baseline_drift (sysctl)", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "indicator.accepted" && e.Incident == sysctlIncident && d["kind"] == string(indicator.BaselineDrift)
			}},
			{"policy.decided baseline-drift-remediate", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "policy.decided" && e.Incident == sysctlIncident && d["policy"] == "baseline-drift-remediate"
			}},
			{"run.created remediate-baseline", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "run.created" && e.Run == sysctlRun
			}},
			{"step.succeeded verify_baseline", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "step.succeeded" && e.Run == sysctlRun && d["action"] == actions.NameVerifyBaseline
			}},
			{"step.failed verify_baseline naming ipsec-proposals", func(e audit.Entry, d map[string]any) bool {
				s, _ := d["error"].(string)
				return e.Action == "step.failed" && e.Run == weakRun && d["action"] == actions.NameVerifyBaseline && strings.Contains(s, "ipsec-proposals")
			}},
			{"indicator.accepted integrity_violation", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "indicator.accepted" && e.Incident == tamperIncident && d["kind"] == string(indicator.IntegrityViolation)
			}},
			{"policy.decided tamper-contain-with-approval", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "policy.decided" && e.Incident == tamperIncident && d["policy"] == "tamper-contain-with-approval"
			}},
			{"run.approved containment", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "run.approved" && e.Run == tamperRun
			}},
			{"step.succeeded isolate", func(e audit.Entry, d map[string]any) bool {
				return e.Action == "step.succeeded" && e.Run == tamperRun && d["action"] == actions.NameIsolate
			}},
		}
		for _, w := range wants {
			found := false
			for _, e := range entries {
				var d map[string]any
				_ = json.Unmarshal(e.Data, &d)
				if w.ok(e, d) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("no audit entry: %s", w.what)
			}
		}
	})
}

// anyContains reports whether v (a decoded JSON array) has an element
// containing s.
func anyContains(v any, s string) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if str, ok := x.(string); ok && strings.Contains(str, s) {
			return true
		}
	}
	return false
}

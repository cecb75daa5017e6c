// Package demo runs Warden end to end on an embedded default: an
// in-process vCenter simulator holding a three-site VPN (one gateway VM per
// site on a distributed switch with a quarantine portgroup), a temporary
// store, the default policies, the real HTTP API on loopback, and a local
// chat webhook. It submits a sample Alertmanager alert over HTTP, waits for
// the run, and reports what happened, with the VM's networks read back
// before and after. It acts as people, each with an API token of their own
// (people.go): the controller's bootstrap admin adds the detector that
// posts the alert, and in the Linux part a responder who asks for the
// release and an approver who approves it.
//
// RunLinux adds the OS view when run as root: a namespace lab with three
// sites, the agent in the compromised gateway's namespace, a C2 session cut
// by the real quarantine, IPv4 and IPv6 probes, and release.
//
// It owns the demo inventory and the summary. Every side effect goes
// through the same daemon that `warden serve` runs; nothing is faked above
// the simulator's SOAP API or the kernel. It talks only to loopback and to
// network namespaces it creates, and removes those namespaces and any
// temporary directory before returning, also when its context is cancelled
// (Ctrl-C). It needs no external binary: only the agent's volatile capture
// runs iptables-save, ip6tables-save and nft when they are installed, and
// records them as missing otherwise.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/actions"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/demo/demovpn"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/vsphere/vsim"
	"github.com/warden-ir/warden/report"
	"github.com/warden-ir/warden/store"
)

// Options control a demo run.
type Options struct {
	// Serve, when set, keeps the controller and API running on this
	// address after the sample alert, until ctx ends.
	Serve string
	// NoSample, with Serve, sends no sample alert: every gateway stays
	// untouched until someone submits an alert (examples/*.json).
	NoSample bool
	// Token is the API token of the demo controller's admin (the person
	// at the keyboard with Serve): the controller makes its first admin
	// from it, as `warden serve` does from server.bootstrap_token_file. At
	// least 32 characters; random when empty. The demo's other people
	// (the detector posting the sample alert) get tokens of their own.
	Token string
	// Dir holds the store, the evidence and the reports, and is kept. When
	// empty they go to a temporary directory that Run removes before it
	// returns, on every path (also when ctx is cancelled).
	Dir string
	Log *slog.Logger
	// Ready, when set, is called with the API URL and the admin's token
	// once serving (used by --serve to tell the person where to send
	// alerts).
	Ready func(url, token string)
}

// Step is one step of the demo run, for the summary.
type Step struct {
	Name       string `json:"name"`
	Action     string `json:"action"`
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Summary    string `json:"summary,omitempty"`
	Error      string `json:"error,omitempty"`
}

// NIC is a NIC's network as read from the simulator.
type NIC struct {
	Label          string `json:"label"`
	Network        string `json:"network"`
	Connected      bool   `json:"connected"`
	StartConnected bool   `json:"start_connected"`
}

// Result is the demo's outcome; `warden demo --json` prints it.
type Result struct {
	IncidentID      string       `json:"incident_id"`
	Gateway         string       `json:"gateway"`
	Site            string       `json:"site"`
	VM              string       `json:"vm"`
	Policy          string       `json:"policy"`
	RunID           string       `json:"run_id"`
	RunState        string       `json:"run_state"`
	Posture         string       `json:"posture"`
	Verified        bool         `json:"verified"`
	TimeToContainMS float64      `json:"time_to_contain_ms"`
	Steps           []Step       `json:"steps"`
	NICsBefore      []NIC        `json:"nics_before"`
	NICsAfter       []NIC        `json:"nics_after"`
	Tags            []string     `json:"tags_after"`
	Snapshots       []string     `json:"snapshots_after"`
	Unmatched       []string     `json:"unmatched_alerts"`
	Notifications   int          `json:"notifications_delivered"`
	AuditOK         bool         `json:"audit_ok"`
	AuditEntries    int64        `json:"audit_entries"`
	AuditHead       string       `json:"audit_head"`
	Timeline        []TimelineAt `json:"timeline"`
	StorePath       string       `json:"store_path"`
	Dir             string       `json:"dir"`
	// Kept is false when Dir was a temporary directory, removed when Run
	// returned: StorePath and Reports then name files that are gone.
	Kept bool `json:"kept"`
	// Reports maps "ja.md", "en.md", "ja.html", "en.html" to file paths.
	Reports map[string]string `json:"reports"`
	// RequestedBy is who the controller recorded as asking for the run:
	// the detector whose alert the policy acted on.
	RequestedBy string `json:"requested_by"`
	// People are the identities the demo acted as, each with a token of
	// its own, and what it did as each.
	People []Person `json:"people"`
}

// writeReports renders the incident report in both languages and formats.
func writeReports(ctx context.Context, d *daemon.Daemon, incident, dir string) (map[string]string, error) {
	inv := d.Config.Inventory
	m, err := report.Load(ctx, d.Store, &inv, d.Ledger, incident)
	if err != nil {
		return nil, fmt.Errorf("loading the report: %w", err)
	}
	out := map[string]string{}
	for _, lang := range []string{report.LangJapanese, report.LangEnglish} {
		for _, format := range []string{report.FormatMarkdown, report.FormatHTML} {
			b, err := report.Render(m, lang, format)
			if err != nil {
				return nil, err
			}
			p := filepath.Join(dir, "report."+lang+"."+format)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return nil, fmt.Errorf("writing %s: %w", p, err)
			}
			out[lang+"."+format] = p
		}
	}
	return out, nil
}

// TimelineAt is one audit entry, shortened.
type TimelineAt struct {
	OffsetMS float64 `json:"offset_ms"`
	Actor    string  `json:"actor"`
	Action   string  `json:"action"`
	Subject  string  `json:"subject,omitempty"`
}

// The compromised gateway of the sample alert, and the detector that
// posts it.
const (
	targetGateway = "gw-osaka"
	targetVM      = "gw-osaka"
	detectorName  = "alertmanager"
)

// Inventory is the demo VPN (demovpn.Inventory): HQ in Tokyo, a branch in
// Osaka, a data centre in Singapore, fully meshed.
func Inventory() inventory.Inventory { return demovpn.Inventory() }

// SampleAlert is an Alertmanager webhook body as Alertmanager sends it:
// two alerts in one group, one about the Osaka gateway beaconing to an
// unknown host, one about a database host that is not a gateway.
func SampleAlert(now time.Time) []byte {
	msg := map[string]any{
		"version": "4", "groupKey": `{}:{alertname=~"^(?:C2Beacon|DiskFull)$"}`, "truncatedAlerts": 0,
		"status": "firing", "receiver": "warden",
		"groupLabels": map[string]string{}, "commonLabels": map[string]string{"env": "prod"},
		"commonAnnotations": map[string]string{}, "externalURL": "http://alertmanager.example.net:9093",
		"alerts": []map[string]any{
			{
				"status": "firing",
				"labels": map[string]string{"alertname": "C2Beacon", "instance": "gw-osaka.example.net:9100", "severity": "critical",
					"warden_kind": "c2_beacon", "dst_ip": "203.0.113.66", "site": "osaka"},
				"annotations": map[string]string{"summary": "Periodic beacon from gw-osaka to 203.0.113.66:443 every 60s",
					"confidence": "0.9"},
				"startsAt": now.Add(-2 * time.Minute).UTC().Format(time.RFC3339), "endsAt": "0001-01-01T00:00:00Z",
				"generatorURL": "http://prometheus.example.net/graph", "fingerprint": "5d1c2e0a9b7f3c41",
			},
			{
				"status":      "firing",
				"labels":      map[string]string{"alertname": "DiskFull", "instance": "db1.example.net:9100", "severity": "warning"},
				"annotations": map[string]string{"summary": "db1 disk 95% full"},
				"startsAt":    now.Add(-5 * time.Minute).UTC().Format(time.RFC3339), "endsAt": "0001-01-01T00:00:00Z",
			},
		},
	}
	b, _ := json.Marshal(msg)
	return b
}

// Run executes the demo: it starts the vSphere half (startVSphere), sends
// the sample alert and reads the outcome back (unless NoSample), then, with
// Serve, keeps serving until ctx ends. Everything it started is stopped,
// and a temporary directory removed, before it returns.
func Run(ctx context.Context, opt Options) (res Result, err error) {
	v, err := startVSphere(ctx, opt)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, v.Close()) }()
	res = Result{Gateway: targetGateway, Site: "osaka", VM: targetVM, StorePath: v.d.Config.Store.Path, Dir: v.dir, Kept: !v.temp}
	if opt.Serve == "" || !opt.NoSample {
		if err := v.containSample(ctx, &res); err != nil {
			return res, err
		}
	}
	if opt.Serve != "" {
		if opt.Ready != nil {
			opt.Ready(v.base, v.token)
		}
		<-ctx.Done()
	}
	return res, nil
}

// vsphereDemo is the demo's vSphere half while it runs: the simulated
// vCenter, the chat receiver, and the controller serving its API on
// loopback.
type vsphereDemo struct {
	dir   string
	temp  bool // dir is removed by Close
	base  string
	token string
	d     *daemon.Daemon
	chat  *chat

	closers []func() error // run in reverse by Close
	once    sync.Once
	err     error
}

// startVSphere builds the demo controller on a fresh simulated vCenter and
// serves its API (on opt.Serve, else an ephemeral loopback port). On error
// it has undone whatever it started; otherwise the caller must Close it.
func startVSphere(ctx context.Context, opt Options) (_ *vsphereDemo, err error) {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &vsphereDemo{dir: opt.Dir, token: opt.Token}
	defer func() {
		if err != nil {
			err = errors.Join(err, v.Close())
		}
	}()
	if v.dir == "" {
		d, err := os.MkdirTemp("", "warden-demo-")
		if err != nil {
			return nil, fmt.Errorf("making demo directory: %w", err)
		}
		v.dir, v.temp = d, true
		v.closers = append(v.closers, func() error { return os.RemoveAll(d) })
	} else if err := os.MkdirAll(v.dir, 0o700); err != nil {
		return nil, fmt.Errorf("making demo directory: %w", err)
	}
	lab, err := vsim.Start(ctx, vsim.Options{Gateways: []string{"gw-hq", "gw-osaka", "gw-dc"}})
	if err != nil {
		return nil, fmt.Errorf("starting simulated vCenter: %w", err)
	}
	v.closers = append(v.closers, func() error { lab.Close(); return nil })
	v.chat = newChat()
	v.closers = append(v.closers, func() error { v.chat.Close(); return nil })

	vc := lab.Config()
	cfg := config.Defaults()
	if v.token, err = bootstrapAdmin(&cfg, v.dir, opt.Token); err != nil {
		return nil, err
	}
	cfg.Store.Path = filepath.Join(v.dir, "warden.db")
	cfg.Inventory = Inventory()
	cfg.Intake.Alertmanager.AlertnameKinds = AlertnameKinds()
	cfg.VSphere = config.VSphere{URL: vc.URL, Username: vc.Username, Password: vc.Password, CAFile: vc.CAFile,
		QuarantinePortgroup: vc.QuarantinePortgroup, QuarantineMode: "portgroup", TagCategory: "warden", Tag: "quarantined"}
	cfg.Notify = config.Notify{Default: "default", Channels: []config.Channel{{Name: "default", URL: v.chat.URL + "/hooks/soc", Secret: "demo-hmac-secret"}}}
	cfg.Reconcile.Interval = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating the demo configuration: %w", err)
	}

	d, err := daemon.Build(ctx, cfg, daemon.Options{Log: log})
	if err != nil {
		return nil, fmt.Errorf("building the demo controller: %w", err)
	}
	v.d = d
	v.closers = append(v.closers, func() error { d.Close(context.WithoutCancel(ctx)); return nil })
	listen := "127.0.0.1:0"
	if opt.Serve != "" {
		listen = opt.Serve
	}
	addr, err := d.Listen(listen)
	if err != nil {
		return nil, err
	}
	v.base = "http://" + addr
	// Taking the writer lease makes the admin from the bootstrap token
	// file before the first request (Serve would do it as it starts).
	if err := d.AcquireWriter(ctx); err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Serve(sctx) }()
	v.closers = append(v.closers, func() error {
		stop()
		if err := <-done; err != nil {
			return fmt.Errorf("serving the demo API: %w", err)
		}
		return nil
	})
	return v, nil
}

// Close stops serving, closes the controller, the chat receiver and the
// simulator, and removes a temporary directory, in that order. It is
// idempotent.
func (v *vsphereDemo) Close() error {
	v.once.Do(func() {
		var errs []error
		for i := len(v.closers) - 1; i >= 0; i-- {
			errs = append(errs, v.closers[i]())
		}
		v.err = errors.Join(errs...)
	})
	return v.err
}

// AlertnameKinds is the demo's alertname mapping (intake.alertmanager.
// alertname_kinds), the README's example: Alertmanager alerts named
// WireGuardBeacon are C2 beacons. The built-in names stay mapped too.
func AlertnameKinds() map[string]string {
	return map[string]string{"WireGuardBeacon": string(indicator.C2Beacon)}
}

// containSample sends the sample alert over HTTP, waits for the run it
// starts, and reads the outcome back into res: the VM, the posture, the
// audit chain, and the reports.
func (v *vsphereDemo) containSample(ctx context.Context, res *Result) error {
	d := v.d
	before, err := d.VSphere.ObserveVM(ctx, targetVM)
	if err != nil {
		return fmt.Errorf("reading VM before: %w", err)
	}
	res.NICsBefore = nics(before)

	// The alert arrives over HTTP, exactly as Alertmanager would send it,
	// with the detector's own token: it may post alerts and nothing else.
	people, err := addTeam(ctx, v.base, v.token, member{detectorName, v1.RoleIntake, "Alertmanager, the detector"})
	if err != nil {
		return err
	}
	alert := SampleAlert(time.Now())
	accepted, err := people.as(detectorName).SubmitAlertmanager(ctx, alert)
	if err != nil {
		return fmt.Errorf("sending the sample alert: %w", err)
	}
	people.did(detectorName, "posted the sample alert (POST /v1/intake/alertmanager)")
	res.People = people.people
	var runID string
	for _, a := range accepted.Results {
		if !a.Matched {
			res.Unmatched = append(res.Unmatched, a.Reason)
			continue
		}
		res.IncidentID, res.Policy, runID = a.IncidentID, a.Policy, a.RunID
	}
	if runID == "" {
		return fmt.Errorf("the sample alert started no run (policy %q)", res.Policy)
	}
	// The alert itself is evidence too.
	if _, err := d.Ledger.Add(ctx, evidence.Item{Incident: res.IncidentID, Gateway: targetGateway, Name: "alertmanager-webhook.json",
		MediaType: "application/json", Kind: evidence.KindLog, Source: "Alertmanager webhook as received", CollectedBy: "user:" + detectorName,
		CollectedFrom: "POST /v1/intake/alertmanager", Content: alert}); err != nil {
		return fmt.Errorf("storing the alert as evidence: %w", err)
	}
	res.RunID = runID
	run, err := v.waitRun(ctx, runID)
	if err != nil {
		return err
	}
	res.RunState, res.RequestedBy = run.State, run.RequestedBy
	res.Steps = demoSteps(run)

	after, err := d.VSphere.ObserveVM(ctx, targetVM)
	if err != nil {
		return fmt.Errorf("reading VM after: %w", err)
	}
	res.NICsAfter, res.Tags = nics(after), after.Tags
	for _, s := range after.Snapshots {
		mem := ""
		if s.Memory {
			mem = " (with memory)"
		}
		res.Snapshots = append(res.Snapshots, s.Name+mem)
	}
	p, err := d.Store.Posture(ctx, targetGateway)
	if err != nil {
		return fmt.Errorf("reading the posture of %s: %w", targetGateway, err)
	}
	res.Posture = p.Desired
	res.Verified = after.Quarantined && run.State == store.RunSucceeded && p.Desired == store.PostureQuarantined
	res.Notifications = v.chat.Count()

	inds, err := d.Store.IndicatorsOfIncident(ctx, res.IncidentID)
	if err != nil {
		return fmt.Errorf("reading the incident's indicators: %w", err)
	}
	for _, s := range run.Steps {
		if s.Action == actions.NameIsolate && s.State == store.StepSucceeded && len(inds) > 0 {
			res.TimeToContainMS = float64(s.FinishedAt.Sub(inds[0].ReceivedAt).Microseconds()) / 1000
		}
	}
	rep, err := audit.Verify(ctx, d.Store.DB())
	res.AuditOK = err == nil
	res.AuditEntries, res.AuditHead = rep.Entries, rep.Head
	entries, err := audit.List(ctx, d.Store.DB(), "")
	if err == nil && len(entries) > 0 {
		t0 := entries[0].At
		for _, e := range entries {
			res.Timeline = append(res.Timeline, TimelineAt{OffsetMS: float64(e.At.Sub(t0).Microseconds()) / 1000, Actor: e.Actor, Action: e.Action, Subject: e.Subject})
		}
	}
	res.Reports, err = writeReports(ctx, d, res.IncidentID, v.dir)
	return err
}

func (v *vsphereDemo) waitRun(ctx context.Context, id string) (store.Run, error) {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	run, err := v.d.Controller.WaitRun(wctx, id)
	if err != nil {
		return run, fmt.Errorf("waiting for run %s: %w", id, err)
	}
	return run, nil
}

func nics(st actions.VMState) []NIC {
	out := make([]NIC, 0, len(st.NICs))
	for _, n := range st.NICs {
		out = append(out, NIC{Label: n.Label, Network: n.Network, Connected: n.Connected, StartConnected: n.StartConnected})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}

// chat is a loopback webhook receiver standing in for the SOC chat.
type chat struct {
	*httptest.Server
	mu sync.Mutex
	n  int
}

func newChat() *chat {
	c := &chat{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Warden-Signature") == "" {
			http.Error(w, "unsigned", http.StatusUnauthorized)
			return
		}
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	return c
}

func (c *chat) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Summary renders the result for people.
func (r Result) Summary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Warden demo: simulated vCenter, 3-site VPN (hq Tokyo, osaka, dc Singapore)\n\n")
	if r.RunID == "" {
		b.WriteString("No sample alert sent (--no-sample): the gateways were left as they were.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "Alert   C2 beacon from %s (site %s) to 203.0.113.66, via Alertmanager webhook over HTTP\n", r.Gateway, r.Site)
	for _, u := range r.Unmatched {
		fmt.Fprintf(&b, "        also received, not a gateway, recorded only: %s\n", u)
	}
	fmt.Fprintf(&b, "Policy  %s -> run %s (%s), requested by %s\n", r.Policy, r.RunID, r.RunState, orDash(r.RequestedBy))
	fmt.Fprintf(&b, "Incident %s\n\nSteps\n", r.IncidentID)
	for i, s := range r.Steps {
		fmt.Fprintf(&b, "  %d. %-17s %-9s %5d ms  %s%s\n", i+1, s.Name, s.Status, s.DurationMS, s.Summary, errSuffix(s.Error))
	}
	fmt.Fprintf(&b, "\nVM %s network\n", r.VM)
	for i := range r.NICsBefore {
		bn := r.NICsBefore[i]
		an := NIC{}
		if i < len(r.NICsAfter) {
			an = r.NICsAfter[i]
		}
		fmt.Fprintf(&b, "  %-18s before: %-12s connected=%t start_connected=%t\n", bn.Label, bn.Network, bn.Connected, bn.StartConnected)
		fmt.Fprintf(&b, "  %-18s after:  %-12s connected=%t start_connected=%t\n", "", an.Network, an.Connected, an.StartConnected)
	}
	fmt.Fprintf(&b, "  tags: %s\n  snapshots: %s\n", strings.Join(r.Tags, ", "), strings.Join(r.Snapshots, ", "))
	fmt.Fprintf(&b, "\nPosture %s, verified by reading the VM back: %t\n", r.Posture, r.Verified)
	fmt.Fprintf(&b, "Time to contain (alert accepted -> isolation verified): %.1f ms\n", r.TimeToContainMS)
	fmt.Fprintf(&b, "Notifications delivered (HMAC-signed): %d\n", r.Notifications)
	fmt.Fprintf(&b, "Audit chain: %d entries, intact=%t, head %s\n", r.AuditEntries, r.AuditOK, short(r.AuditHead))
	if len(r.People) > 0 {
		fmt.Fprintf(&b, "\nPeople (each with an API token of their own; the audit, the run and the reports name them)\n%s", peopleLines(r.People))
	}
	switch {
	case len(r.Reports) > 0 && r.Kept:
		fmt.Fprintf(&b, "\nReports (for management first, then the technical detail)\n")
		for _, k := range []string{"ja.md", "ja.html", "en.md", "en.html"} {
			if p, ok := r.Reports[k]; ok {
				fmt.Fprintf(&b, "  %-8s %s\n", k, p)
			}
		}
		fmt.Fprintf(&b, "Store and evidence kept in %s (try: warden evidence list %s --db %s)\n", r.Dir, r.IncidentID, r.StorePath)
	case len(r.Reports) > 0:
		fmt.Fprintf(&b, "\nReports (ja, en; Markdown, HTML), store and evidence were written to a temporary directory, removed on exit; keep them with: warden demo --dir DIR\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// ErrNotContained is returned by callers that require containment.
var ErrNotContained = errors.New("demo did not reach a verified quarantine")

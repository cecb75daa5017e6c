// Package daemon assembles a running Warden from configuration: the store,
// the policies, the providers and the action catalogue, the controller and
// the HTTP API. `warden serve` and `warden demo` both start through it, so
// the demo exercises exactly what production runs.
//
// It owns wiring and lifecycle (start, graceful stop). It must not hold
// business logic: that lives in controller, actions and providers.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/api"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/console"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/notify"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/providers/linux"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/rotation"
	"github.com/warden-ir/warden/store"
)

// Daemon is an assembled Warden.
type Daemon struct {
	Config     config.Config
	Store      *store.Store
	Policies   *policies.Set
	Controller *controller.Controller
	API        *api.Server
	// Console is the web console mounted at /ui/; nil when
	// console.enabled is off.
	Console  *console.Console
	Registry *prometheus.Registry
	VSphere  *vsphere.Provider
	Agents   *linux.AgentPool
	Ledger   *evidence.Ledger
	// Vault holds the tunnel credentials; nil without a master key.
	Vault *rotation.Vault
	// TAXII polls the configured TAXII collections; nil without any.
	TAXII *intake.TAXIIClient
	Log   *slog.Logger

	listener net.Listener
	http     *http.Server
	// agents is the listener for the agents' findings
	// (server.agent_listen); nil without one.
	agents   *AgentIntake
	lease    *writerLease
	writable *storeWritability
	// probeEvery is how often Serve probes the store.
	probeEvery time.Duration
}

// Options add what configuration cannot say.
type Options struct {
	Log   *slog.Logger
	Clock controller.Clock
	// ExtraActions replace or add catalogue entries (tests, demo).
	ExtraActions []actions.Action
	// StoreProbeInterval is how often Serve checks that the store can
	// commit (default StoreProbeInterval).
	StoreProbeInterval time.Duration
	// AuthLimiter bounds failed authentications per address (default
	// auth.DefaultLimiter: 10, then one every 6 s). Tests that fail on
	// purpose many times from loopback give a larger one.
	AuthLimiter *auth.Limiter
}

// Build runs Check, opens the store, connects providers and assembles the
// controller and API. It starts nothing; call Serve.
func Build(ctx context.Context, cfg config.Config, opt Options) (*Daemon, error) {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{Config: cfg, Log: log, Registry: prometheus.NewRegistry(), probeEvery: opt.StoreProbeInterval}
	d.lease = newWriterLease(cfg.Store.LeaseTTL, d.Registry)
	if d.probeEvery <= 0 {
		d.probeEvery = StoreProbeInterval
	}
	ok := false
	defer func() {
		if !ok {
			d.Close(context.WithoutCancel(ctx))
		}
	}()

	checked, err := Check(cfg, opt)
	for _, w := range checked.Warnings {
		log.Warn("configuration: "+w, "component", "config")
	}
	if err != nil {
		return nil, fmt.Errorf("checking configuration: %w", err)
	}
	d.Policies = checked.Policies
	d.Store, err = OpenStore(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	// Probed once now, so that /readyz tells the truth before Serve's
	// first tick (and for callers that never Serve).
	d.writable = newStoreWritability(d.Store, d.Registry, log.With("component", "store"))
	_ = d.writable.Probe(ctx)

	evDir := cfg.Evidence.Dir
	if evDir == "" {
		evDir = filepath.Join(filepath.Dir(cfg.Store.Path), "evidence")
	}
	d.Ledger, err = evidence.Open(ctx, d.Store.DB(), evDir, evidence.WithIncidents(storeIncidents{d.Store}))
	if err != nil {
		return nil, fmt.Errorf("opening evidence store: %w", err)
	}

	ledger := ledgerEvidence{d.Ledger}
	// The catalogue's actions share one inventory, which the tunnel
	// actions complete (tunnelActions).
	inv := cfg.Inventory
	var list []actions.Action
	add := func(a ...actions.Action) { list = append(list, a...) }
	var isolateLayers, releaseLayers []actions.Action
	var observer actions.VMProvider
	var osObserver controller.OSObserver
	var checker controller.BaselineChecker
	if cfg.Agents.CertFile != "" {
		d.Agents = linux.NewAgentPool(linux.AgentTLS{CertFile: cfg.Agents.CertFile, KeyFile: cfg.Agents.KeyFile, CAFile: cfg.Agents.CAFile}, log.With("provider", "agent"))
		add(actions.NewCaptureVolatile(d.Agents, ledger), actions.NewVerifyBaseline(d.Agents, baselineStore{d.Store}), actions.NewPatch(d.Agents))
		add(actions.NewBlockIOC(d.Agents), actions.NewKillFlows(d.Agents))
		add(actions.NewInvestigate(&inv, d.Agents, storeSigns{d.Store}, ledger,
			actions.InvestigateSettings{LookBack: cfg.Investigate.LookBack, Timeout: cfg.Investigate.Timeout}, nil))
		add(actions.NewPacketCapture(d.Agents, ledger, actions.CaptureSettings{Duration: cfg.Capture.Duration, MaxBytes: cfg.Capture.MaxBytes, Filter: cfg.Capture.Filter}))
		if cfg.Capture.OnIsolate {
			d.Agents.CaptureOnQuarantine(&wire.CaptureSpec{Duration: wire.Duration(cfg.Capture.Duration), MaxBytes: cfg.Capture.MaxBytes, Filter: cfg.Capture.Filter})
		}
		checker = baselineChecker{agents: d.Agents}
		isolateLayers = append(isolateLayers, actions.Layer("os", actions.NewOSIsolate(d.Agents)))
		osObserver = osObserverFunc(func(ctx context.Context, gw inventory.Gateway) (bool, any, error) {
			q, st, err := linux.ObserveQuarantine(ctx, d.Agents, gw)
			return q, st, err
		})
	} else {
		add(unavailable("no warden agent configured (agents.cert_file)", actions.NameCaptureVolatile, actions.NameVerifyBaseline, actions.NamePatch, actions.NameBlockIOC, actions.NameInvestigate, actions.NameCapture)...)
		add(actions.NewKillFlows(nil)) // no agent: the VM's isolation cut its sessions
	}
	if cfg.VSphere.URL != "" {
		d.VSphere, err = vsphere.Connect(ctx, vsphereConfig(cfg.VSphere), log) // Connect adds provider=vsphere (and the url) itself
		if err != nil {
			return nil, fmt.Errorf("connecting to vCenter: %w", err)
		}
		observer = d.VSphere
		add(actions.NewSnapshot(d.VSphere), actions.NewPowerOff(d.VSphere))
		isolateLayers = append(isolateLayers, actions.Layer("vm", actions.NewIsolate(d.VSphere)))
		releaseLayers = append(releaseLayers, actions.Layer("vm", actions.NewRelease(d.VSphere)))
	} else {
		add(unavailable("no vCenter configured (vsphere.url)", actions.NameSnapshot, actions.NamePowerOff)...)
	}
	if d.Agents != nil {
		// Release the VM first so the agent is reachable again, then the OS.
		releaseLayers = append(releaseLayers, actions.Layer("os", actions.NewOSRelease(d.Agents)))
	}
	// Isolate the OS first (commit-confirmed over the management path),
	// then the VM's NICs.
	if len(isolateLayers) > 0 {
		add(actions.Combine(actions.NameIsolate, isolateLayers...), actions.Combine(actions.NameRelease, releaseLayers...))
	} else {
		add(unavailable("neither a vCenter nor agents are configured", actions.NameIsolate, actions.NameRelease)...)
	}
	channels := notifyChannels(cfg.Notify)
	var notifyOpts []notify.Option
	if cfg.Console.Enabled && cfg.Console.ExternalURL != "" {
		// Each notification links to its run's page in the console.
		notifyOpts = append(notifyOpts, notify.WithConsoleURL(cfg.Console.ExternalURL))
	}
	sender, err := notify.NewSender(channels, log.With("component", "notify"), notifyOpts...)
	if err != nil {
		return nil, fmt.Errorf("configuring notifications: %w", err)
	}
	add(actions.NewNotify(sender, cfg.Notify.Default))
	var pager controller.Pager
	if len(channels) > 0 {
		pager = notifyPager{s: sender, channel: cfg.Notify.Default}
	}
	tunnelActs, err := d.tunnelActions(ctx, cfg, &inv, log)
	if err != nil {
		return nil, err
	}
	add(tunnelActs...)
	d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := controller.NewMetrics(d.Registry)
	catalogue, err := buildCatalogue(list, ledger, cfg.Executor, opt, metrics)
	if err != nil {
		return nil, err
	}
	if got, want := catalogue.Names(), catalogueNames(opt); !slices.Equal(got, want) {
		// Check judged the runbooks against want: the two must not drift.
		return nil, fmt.Errorf("building the action catalogue: it has %v, but Check assumes %v", got, want)
	}

	d.Controller, err = controller.New(controller.Options{
		Store: d.Store, Inventory: &inv, Policies: d.Policies, Actions: catalogue,
		Intake: cfg.Intake, Guards: cfg.Guards, Executor: cfg.Executor, Reconcile: cfg.Reconcile, Blocks: cfg.Blocks,
		Clock: opt.Clock, Log: log.With("component", "controller"), Metrics: metrics, Observer: observer, OSObserver: osObserver, Pager: pager,
		Baseline: checker, DriftInterval: cfg.Drift.Interval, Lease: d.lease, Replicated: cfg.Store.Postgres(),
	})
	if err != nil {
		return nil, err
	}
	var sig *intake.SignatureVerifier
	if cfg.Intake.WebhookSecret != "" {
		sig = intake.NewSignatureVerifier([]byte(cfg.Intake.WebhookSecret), cfg.Intake.ReplayWindow, opt.Clock)
	}
	am := cfg.Intake.Alertmanager
	authn, err := d.authenticator(cfg, opt.AuthLimiter, log)
	if err != nil {
		return nil, err
	}
	d.API, err = api.New(api.Options{
		Controller: d.Controller, Policies: d.Policies, Ledger: d.Ledger, Auth: authn, MaxBodyBytes: cfg.Server.MaxBodyBytes,
		Alertmanager: intake.AlertmanagerMapping{GatewayLabel: am.GatewayLabel, InstanceLabel: am.InstanceLabel, SiteLabel: am.SiteLabel,
			KindLabel: am.KindLabel, AlertnameKinds: am.AlertnameKinds}.WithDefaults(),
		Formats: api.Formats{Suricata: cfg.Intake.Suricata.WithDefaults(), Zeek: cfg.Intake.Zeek.WithDefaults(),
			Wazuh: cfg.Intake.Wazuh.WithDefaults(), Falco: cfg.Intake.Falco.WithDefaults()},
		Signature: sig, Gatherer: d.Registry, Metrics: metrics, Log: log.With("component", "api"),
		StoreHealth: d.writable, StoreRetryAfter: d.probeEvery, Blocks: d.Controller,
		Sensors: d.sensorsReader(), StoreDriver: d.Store.Driver(), ReplicaID: d.lease.owner, LeaseTTL: d.lease.ttl,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Console.Enabled {
		d.Console, err = console.New(console.Options{API: d.API, Auth: authn, Controller: d.Controller, Ledger: d.Ledger,
			SessionTTL: cfg.Console.SessionTTL, SecureCookies: strings.HasPrefix(cfg.Console.ExternalURL, "https://"),
			Clock: opt.Clock, Log: log.With("component", "console")})
		if err != nil {
			return nil, err
		}
	}
	if len(cfg.Intake.TAXII) > 0 {
		var colls []intake.TAXIICollection
		for _, c := range cfg.Intake.TAXII {
			colls = append(colls, c.WithDefaults())
		}
		topts := []intake.TAXIIOption{intake.WithTAXIILogger(log.With("component", "taxii"))}
		if opt.Clock != nil {
			topts = append(topts, intake.WithTAXIIClock(opt.Clock))
		}
		if d.TAXII, err = intake.NewTAXIIClient(colls, topts...); err != nil {
			return nil, fmt.Errorf("intake.taxii: %w", err)
		}
	}
	ok = true
	return d, nil
}

// OpenStore opens the configured store: the SQLite file, or the
// PostgreSQL database with its password from store.password_file (or the
// DSN, WARDEN_STORE_DSN, PGPASSWORD). Either is migrated to this build's
// schema; a newer schema is refused.
func OpenStore(ctx context.Context, c config.Store) (*store.Store, error) {
	if !c.Postgres() {
		return store.Open(ctx, c.Path, c.Sync)
	}
	pw, err := c.Password()
	if err != nil {
		return nil, err
	}
	return store.OpenPostgres(ctx, c.DSN, store.PostgresOptions{Password: pw})
}

// StoreName names the configured store for people: the file, or the
// PostgreSQL database without its password.
func StoreName(c config.Store) string {
	if c.Postgres() {
		return store.RedactDSN(c.DSN)
	}
	return c.Path
}

// sensorsReader asks the agents what their sensors learned; nil without
// agents.
func (d *Daemon) sensorsReader() api.SensorsReader {
	if d.Agents == nil {
		return nil
	}
	return d.Agents.Sensors
}

// pollTAXII takes every configured TAXII collection's new indicators as
// blocks, as the feed (actor "feed:taxii/COLLECTION"), until ctx ends.
func (d *Daemon) pollTAXII(ctx context.Context) {
	if d.TAXII == nil {
		return
	}
	err := d.TAXII.Run(ctx, func(ctx context.Context, coll intake.TAXIICollection, got intake.ThreatDecoded) error {
		res, err := api.TakeThreatIntel(ctx, d.Controller, "feed:taxii/"+coll.Collection, intake.SourceSTIX, got, d.Log)
		if err == nil && (len(res.Blocks) > 0 || len(res.Skipped) > 0) {
			d.Log.Info("TAXII collection polled", "collection", coll.Collection, "blocks", len(res.Blocks), "skipped", len(res.Skipped))
		}
		return err
	})
	if err != nil && ctx.Err() == nil {
		d.Log.Error("polling TAXII stopped", "err", err)
	}
}

// Handler serves the listener: the web console under /ui/ (when it is
// enabled), the API everywhere else.
func (d *Daemon) Handler() http.Handler {
	if d.Console == nil {
		return d.API
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == strings.TrimSuffix(console.Prefix, "/"):
			http.Redirect(w, r, console.Prefix, http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, console.Prefix):
			d.Console.ServeHTTP(w, r)
		default:
			d.API.ServeHTTP(w, r)
		}
	})
}

// Listen binds the API address (":0" picks a free port) and returns it.
func (d *Daemon) Listen(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listening on %s: %w", addr, err)
	}
	d.listener = l
	return l.Addr().String(), nil
}

// Serve starts the controller loops and the HTTP API and blocks until ctx
// ends, then shuts down gracefully.
func (d *Daemon) Serve(ctx context.Context) error {
	if d.listener == nil {
		if _, err := d.Listen(d.Config.Server.Listen); err != nil {
			return err
		}
	}
	if d.agents == nil && d.Config.Server.AgentListen != "" {
		a, err := d.ListenAgents(AgentListener{Addr: d.Config.Server.AgentListen, CertFile: d.Config.Agents.ServerCertFile,
			KeyFile: d.Config.Agents.ServerKeyFile, CAFile: d.Config.Agents.CAFile})
		if err != nil {
			return err
		}
		d.agents = a
	}
	if err := d.AcquireWriter(ctx); err != nil {
		_ = d.agents.Close()
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopJournal, err := d.startJournal(cctx)
	if err != nil {
		_ = d.agents.Close()
		return err
	}
	// The controller's loops run while this process leads (lead).
	leaseErr := make(chan error, 1)
	go func() { leaseErr <- d.lead(cctx) }()
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		d.heartbeat(cctx, d.listener.Addr().String())
	}()
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		d.writable.Run(cctx, d.probeEvery)
	}()
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		d.pollTAXII(cctx)
	}()
	agentsDone := make(chan error, 1)
	go func() { agentsDone <- d.agents.Serve(cctx) }()
	d.http = &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	if d.Console != nil {
		// The console's live pages stream until the server shuts down.
		d.http.RegisterOnShutdown(d.Console.Close)
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if d.Config.Server.TLSCertFile != "" {
			err = d.http.ServeTLS(d.listener, d.Config.Server.TLSCertFile, d.Config.Server.TLSKeyFile)
		} else {
			err = d.http.Serve(d.listener)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	d.Log.Info("warden serving", "addr", d.listener.Addr().String())
	var stopErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			stopErr = fmt.Errorf("serving API: %w", err)
		}
	case err := <-leaseErr:
		// Fail-stop (SQLite): a controller that lost its lease stops
		// acting and exits, so that the holder is the only writer.
		stopErr = err
		leaseErr <- nil // already returned; the wait below must not block
	case err := <-agentsDone:
		stopErr = err
		agentsDone <- nil // already returned; the wait below must not block
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	_ = d.http.Shutdown(sctx)
	cancel()
	// The agents' listener stores findings through the controller: it
	// stops before the controller does.
	if err := <-agentsDone; err != nil && stopErr == nil {
		stopErr = err
	}
	<-leaseErr // the loops have stopped
	stopJournal()
	d.Controller.Wait()
	<-beating
	<-polled
	<-probed // the probe uses the store, which Close closes next
	return stopErr
}

// unavailable stands in for the named actions, whose provider is not
// configured.
func unavailable(reason string, names ...string) []actions.Action {
	out := make([]actions.Action, len(names))
	for i, n := range names {
		out[i] = actions.Unavailable{Action: n, Reason: reason}
	}
	return out
}

// buildCatalogue composes the catalogue once: the standard actions with
// their evidence recorded, the extra ones (which replace a standard one of
// the same name) as they are, and every one under the one retry layer.
func buildCatalogue(standard []actions.Action, rec actions.EvidenceRecorder, ex config.Executor, opt Options, metrics *controller.Metrics) (actions.Catalogue, error) {
	cat, err := actions.NewCatalogue(standard...)
	if err != nil {
		return nil, err
	}
	cat = cat.Decorate(actions.RecordEvidence(rec))
	for _, a := range opt.ExtraActions {
		extra, err := actions.NewCatalogue(a)
		if err != nil {
			return nil, err
		}
		maps.Copy(cat, extra)
	}
	policy := actions.RetryPolicy{MaxAttempts: ex.MaxAttempts, BackoffBase: ex.BackoffBase, BackoffMax: ex.BackoffMax, AttemptTimeout: ex.StepTimeout,
		Retried: func(action string) { metrics.StepRetries.WithLabelValues(action).Inc() }}
	if opt.Clock != nil {
		policy.After = opt.Clock.After
	}
	return cat.Decorate(actions.WithRetry(policy)), nil
}

// notifyPager pages through the default notification channel.
type notifyPager struct {
	s       *notify.Sender
	channel string
}

func (p notifyPager) Page(ctx context.Context, pg controller.Page) error {
	_, err := p.s.Send(ctx, p.channel, pg.Key, notify.Message{Title: pg.Title, Text: pg.Text, Severity: "critical", Time: time.Now()})
	return err
}

type osObserverFunc func(ctx context.Context, gw inventory.Gateway) (bool, any, error)

func (f osObserverFunc) ObserveQuarantine(ctx context.Context, gw inventory.Gateway) (bool, any, error) {
	return f(ctx, gw)
}

// Close releases the store and provider sessions.
func (d *Daemon) Close(ctx context.Context) {
	if d.Agents != nil {
		d.Agents.Close()
	}
	if d.VSphere != nil {
		_ = d.VSphere.Close(ctx)
	}
	if d.Store != nil {
		d.releaseWriter(ctx)
		_ = d.Store.Close()
	}
}

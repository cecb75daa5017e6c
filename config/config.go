// Package config loads Warden's single YAML configuration file with viper:
// file, then WARDEN_<SECTION>_<KEY> environment variables, then flags.
// Loading is strict (an unknown key is an error naming the key and the
// file), defaulted and validated; the defaults are shown by `warden config
// defaults` and pinned by a golden file.
//
// Only leaf keys are read from the environment, each bound by name: the CLI
// reads WARDEN_SERVER, WARDEN_API_TOKEN and WARDEN_CONFIG for itself, and a
// section name alone (WARDEN_SERVER is also "server") must never replace a
// whole section of the file.
//
// It owns the shape of the configuration and the checks that need no more
// than the files it names (CheckFiles, Warnings). It must not connect to
// anything, and must not create or change a file.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/inventory"
)

// Config is the whole configuration.
type Config struct {
	Server    Server    `mapstructure:"server" yaml:"server"`
	Console   Console   `mapstructure:"console" yaml:"console"`
	Store     Store     `mapstructure:"store" yaml:"store"`
	Policies  Policies  `mapstructure:"policies" yaml:"policies"`
	Intake    Intake    `mapstructure:"intake" yaml:"intake"`
	Guards    Guards    `mapstructure:"guards" yaml:"guards"`
	Executor  Executor  `mapstructure:"executor" yaml:"executor"`
	Reconcile Reconcile `mapstructure:"reconcile" yaml:"reconcile"`
	Drift     Drift     `mapstructure:"drift" yaml:"drift"`
	VSphere   VSphere   `mapstructure:"vsphere" yaml:"vsphere"`
	Notify    Notify    `mapstructure:"notify" yaml:"notify"`
	Agents    Agents    `mapstructure:"agents" yaml:"agents"`
	Evidence  Evidence  `mapstructure:"evidence" yaml:"evidence"`
	// Blocks configures fleet-wide blocks of remote addresses (block_ioc).
	Blocks Blocks `mapstructure:"blocks" yaml:"blocks"`
	// Investigate configures the investigate action (the attacker's
	// timeline).
	Investigate Investigate `mapstructure:"investigate" yaml:"investigate"`
	// Capture configures the packet capture on a gateway's interfaces
	// that every OS quarantine starts.
	Capture Capture `mapstructure:"capture" yaml:"capture"`
	// Credentials configures the tunnel credential vault and rotations.
	Credentials Credentials         `mapstructure:"credentials" yaml:"credentials"`
	Inventory   inventory.Inventory `mapstructure:"inventory" yaml:"inventory"`
}

// Investigate configures the investigate action.
type Investigate struct {
	// LookBack is how far before the incident's first sign the window of
	// an investigation starts (warden investigate --since overrides it).
	LookBack time.Duration `mapstructure:"look_back" yaml:"look_back"`
	// Timeout bounds the collection from one gateway's agent.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout"`
}

// Validate names the bad key.
func (i Investigate) Validate() error {
	var errs []error
	if i.LookBack <= 0 {
		errs = append(errs, errors.New("investigate.look_back: must be positive"))
	}
	if i.Timeout < 5*time.Second {
		errs = append(errs, fmt.Errorf("investigate.timeout: %s is shorter than 5s", i.Timeout))
	}
	return errors.Join(errs...)
}

// Capture configures the bounded packet capture (pcapng, a ring of
// segments) the agent starts on every OS quarantine.
type Capture struct {
	// OnIsolate starts a capture with every OS quarantine.
	OnIsolate bool `mapstructure:"on_isolate" yaml:"on_isolate"`
	// Duration stops a capture after this long.
	Duration time.Duration `mapstructure:"duration" yaml:"duration"`
	// MaxBytes bounds what a capture keeps: the oldest packets go first.
	MaxBytes int64 `mapstructure:"max_bytes" yaml:"max_bytes"`
	// Filter keeps only matching packets (host, net, port, tcp, udp,
	// icmp, icmp6, joined by and, or, not; empty keeps everything).
	Filter string `mapstructure:"filter" yaml:"filter"`
}

// Validate names the bad key.
func (c Capture) Validate() error {
	var errs []error
	if c.Duration < time.Second || c.Duration > 24*time.Hour {
		errs = append(errs, fmt.Errorf("capture.duration: %s is not between 1s and 24h", c.Duration))
	}
	if c.MaxBytes < 64<<10 || c.MaxBytes > 4<<30 {
		errs = append(errs, fmt.Errorf("capture.max_bytes: %d is not between 64 KiB and 4 GiB", c.MaxBytes))
	}
	if _, err := wire.ParseCaptureFilter(c.Filter); err != nil {
		errs = append(errs, fmt.Errorf("capture.filter: %w", err))
	}
	return errors.Join(errs...)
}

// Blocks configures the blocks of remote addresses from threat
// intelligence, detectors and orchestrators that block_ioc holds at every
// gateway (STIX, MISP, OpenC2, `warden block`).
type Blocks struct {
	// DefaultTTL is how long a block lasts when its source gives no end.
	DefaultTTL time.Duration `mapstructure:"default_ttl" yaml:"default_ttl"`
	// MaxTTL bounds every block's lifetime, whatever its source says.
	MaxTTL time.Duration `mapstructure:"max_ttl" yaml:"max_ttl"`
	// MaxAutoPrefixV4 and MaxAutoPrefixV6: a network wider than this
	// (a shorter prefix) is never blocked without a person's approval.
	MaxAutoPrefixV4 int `mapstructure:"max_auto_prefix_v4" yaml:"max_auto_prefix_v4"`
	MaxAutoPrefixV6 int `mapstructure:"max_auto_prefix_v6" yaml:"max_auto_prefix_v6"`
	// Protected are further networks never blocked without approval,
	// besides the built-in ones (private, loopback, link-local, multicast,
	// reserved), every management network and every gateway's address.
	Protected []string `mapstructure:"protected" yaml:"protected"`
	// RequireApproval makes every block wait for a person's approval,
	// safe or not.
	RequireApproval bool `mapstructure:"require_approval" yaml:"require_approval"`
	// Interval is how often the leader reconciles every gateway's set
	// (expiries take effect then too).
	Interval time.Duration `mapstructure:"interval" yaml:"interval"`
}

// Agents is the controller's side of the mutual TLS with `warden agent`
// on the gateways (see `warden agent init`).
type Agents struct {
	// CertFile and KeyFile: the controller's client certificate.
	CertFile string `mapstructure:"cert_file" yaml:"cert_file"`
	KeyFile  string `mapstructure:"key_file" yaml:"key_file"`
	// CAFile verifies the agents' server certificates.
	CAFile string `mapstructure:"ca_file" yaml:"ca_file"`
	// ServerCertFile and ServerKeyFile: the controller's server
	// certificate on server.agent_listen (`warden agent init` gives
	// controller.pem the server usage too, so it may serve).
	ServerCertFile string `mapstructure:"server_cert_file" yaml:"server_cert_file"`
	ServerKeyFile  string `mapstructure:"server_key_file" yaml:"server_key_file"`
}

// Credentials configures the vault of tunnel credentials and the
// revoke_peer and rotate_credentials actions. The master key that seals
// the secrets Warden generates is never written here: it comes from a file
// (mode 0600) or an environment variable. Without a key those two actions
// are unavailable.
type Credentials struct {
	// MasterKeyFile holds the 32-byte master key, raw, base64 or hex
	// (`warden credentials init-key` writes one).
	MasterKeyFile string `mapstructure:"master_key_file" yaml:"master_key_file"`
	// MasterKeyEnv names the environment variable that holds the master
	// key (base64 or hex) when there is no file.
	MasterKeyEnv string `mapstructure:"master_key_env" yaml:"master_key_env"`
	// CACertFile and CAKeyFile (PEM; the key 0600) are the CA whose
	// certificates strongSwan gateways with auth pubkey authenticate with:
	// revoking such a gateway signs a CRL with it that every peer loads.
	CACertFile string `mapstructure:"ca_cert_file" yaml:"ca_cert_file"`
	CAKeyFile  string `mapstructure:"ca_key_file" yaml:"ca_key_file"`
	// WaveSize is how many pairs or sites rotate at once after the canary
	// (a step's wave_size overrides it).
	WaveSize int `mapstructure:"wave_size" yaml:"wave_size"`
	// UnitTimeout bounds how long one pair or site may take to come back
	// with its new credential before the waves stop.
	UnitTimeout time.Duration `mapstructure:"unit_timeout" yaml:"unit_timeout"`
}

// Evidence says where evidence artefacts are kept.
type Evidence struct {
	// Dir holds content-addressed blobs; default: "evidence" beside the
	// store file.
	Dir string `mapstructure:"dir" yaml:"dir"`
}

// Server is the HTTP API.
type Server struct {
	Listen string `mapstructure:"listen" yaml:"listen"`
	// AgentListen, when set, is the mutual-TLS listener where agents
	// deliver their sensors' findings (agents.server_cert_file and
	// server_key_file; client certificates must chain to agents.ca_file).
	// The gateway is the one the agent's certificate names, never one the
	// body does. Empty: no sensor delivery.
	AgentListen string `mapstructure:"agent_listen" yaml:"agent_listen"`
	// APIToken is the deprecated shared token: it still authenticates,
	// as one admin (shared-api-token), with a warning at start. People
	// get their own tokens with `warden users add`.
	APIToken     string `mapstructure:"api_token" yaml:"api_token"`
	APITokenFile string `mapstructure:"api_token_file" yaml:"api_token_file"`
	// BootstrapTokenFile is where the first admin's token is, for a
	// store without users: read when the file exists (at least 32
	// characters), written (0600) with a new token otherwise. Default:
	// bootstrap-admin.token beside the store.
	BootstrapTokenFile string `mapstructure:"bootstrap_token_file" yaml:"bootstrap_token_file"`
	// OIDC, when its issuer is set, accepts ID tokens as bearer tokens.
	OIDC         OIDC   `mapstructure:"oidc" yaml:"oidc"`
	MaxBodyBytes int64  `mapstructure:"max_body_bytes" yaml:"max_body_bytes"`
	TLSCertFile  string `mapstructure:"tls_cert_file" yaml:"tls_cert_file"`
	TLSKeyFile   string `mapstructure:"tls_key_file" yaml:"tls_key_file"`
}

// Console is the on-call web console that `warden serve` mounts at /ui/
// on the API's listener.
type Console struct {
	// Enabled mounts the console; off, /ui/ answers 404 like any
	// unknown path.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// SessionTTL is how long a sign-in lasts, from the moment it was made
	// (at most 7 days): an on-call shift, then sign in again.
	SessionTTL time.Duration `mapstructure:"session_ttl" yaml:"session_ttl"`
	// ExternalURL is where people reach the controller
	// ("https://warden.example.net"): notifications link to the run's page
	// under it. Empty: notifications carry no link.
	ExternalURL string `mapstructure:"external_url" yaml:"external_url"`
}

// MaxSessionTTL bounds console.session_ttl.
const MaxSessionTTL = 7 * 24 * time.Hour

// Validate checks the console section, naming the key at fault.
func (c Console) Validate() error {
	var errs []error
	if c.SessionTTL < time.Minute || c.SessionTTL > MaxSessionTTL {
		errs = append(errs, fmt.Errorf("console.session_ttl: %s is not between 1m and %s", c.SessionTTL, MaxSessionTTL))
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, fmt.Errorf("console.external_url: %q is not an absolute http(s) URL", redactURL(c.ExternalURL)))
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, fmt.Errorf("console.external_url: %q must not carry credentials, a query or a fragment", redactURL(c.ExternalURL)))
		}
	}
	return errors.Join(errs...)
}

// OIDC is single sign-on: bearer ID tokens from Issuer for Audience.
type OIDC struct {
	Issuer   string `mapstructure:"issuer" yaml:"issuer"`
	Audience string `mapstructure:"audience" yaml:"audience"`
	// UserClaim names the user (default preferred_username).
	UserClaim string `mapstructure:"user_claim" yaml:"user_claim"`
	// GroupsClaim holds the groups (default groups).
	GroupsClaim string `mapstructure:"groups_claim" yaml:"groups_claim"`
	// Roles maps a group to a role (viewer, intake, responder, approver,
	// admin); a user gets the highest of their groups'.
	Roles map[string]string `mapstructure:"roles" yaml:"roles"`
}

// Store is the database: an embedded SQLite file (the default), or
// PostgreSQL, which several `warden serve` replicas share.
type Store struct {
	// Driver is "sqlite" or "postgres".
	Driver string `mapstructure:"driver" yaml:"driver"`
	// Path is the SQLite file.
	Path string `mapstructure:"path" yaml:"path"`
	// Sync: "full" (every commit survives power loss) or "normal"
	// (SQLite).
	Sync string `mapstructure:"sync" yaml:"sync"`
	// DSN is the PostgreSQL database as a postgres:// URL. Keep its
	// password out of the file: in PasswordFile, or give the whole URL in
	// WARDEN_STORE_DSN. It is never logged.
	DSN string `mapstructure:"dsn" yaml:"dsn"`
	// PasswordFile holds the PostgreSQL password (it replaces any in the
	// DSN).
	PasswordFile string `mapstructure:"password_file" yaml:"password_file"`
	// LeaseTTL is how long the writer lease (the leadership, with
	// replicas) lasts unless renewed. The holder renews it every third of
	// that and stops starting side effects two thirds of it after the
	// last renewal it sent; a replica takes over at most this long after
	// a leader dies.
	LeaseTTL time.Duration `mapstructure:"lease_ttl" yaml:"lease_ttl"`
}

// Store drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Password reads PasswordFile: "" when none is named.
func (s Store) Password() (string, error) {
	if s.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("store.password_file: %w", err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("store.password_file: %s is empty", s.PasswordFile)
	}
	return pw, nil
}

// Postgres reports whether the store is PostgreSQL.
func (s Store) Postgres() bool { return s.Driver == DriverPostgres }

// Policies says where policies and runbooks live.
type Policies struct {
	// Dir holds policy and runbook YAML; empty means the embedded defaults.
	Dir string `mapstructure:"dir" yaml:"dir"`
}

// Intake tunes how alerts become indicators and incidents.
type Intake struct {
	// DedupWindow: the same fingerprint within it joins the existing
	// incident and starts nothing new.
	DedupWindow time.Duration `mapstructure:"dedup_window" yaml:"dedup_window"`
	// IncidentWindow: indicators about one gateway within it share an
	// incident.
	IncidentWindow time.Duration `mapstructure:"incident_window" yaml:"incident_window"`
	// WebhookSecret, when set, requires an X-Warden-Signature HMAC on
	// intake requests in addition to the bearer token.
	WebhookSecret string        `mapstructure:"webhook_secret" yaml:"webhook_secret"`
	ReplayWindow  time.Duration `mapstructure:"replay_window" yaml:"replay_window"`
	// Journal: with a SQLite store, POST /v1/indicators answers a request
	// without a high or critical indicator once it is appended and fsynced
	// to the intake journal beside the database (STORE.intake/), and
	// decides it right after; off, or on PostgreSQL, every indicator is
	// decided and committed before its answer.
	Journal      bool         `mapstructure:"journal" yaml:"journal"`
	Alertmanager Alertmanager `mapstructure:"alertmanager" yaml:"alertmanager"`
	// Suricata, Zeek, Wazuh and Falco map each detector's events
	// (POST /v1/intake/NAME) to gateways and kinds; empty is the defaults.
	Suricata intake.SuricataMapping `mapstructure:"suricata" yaml:"suricata"`
	Zeek     intake.ZeekMapping     `mapstructure:"zeek" yaml:"zeek"`
	Wazuh    intake.WazuhMapping    `mapstructure:"wazuh" yaml:"wazuh"`
	Falco    intake.FalcoMapping    `mapstructure:"falco" yaml:"falco"`
	// TAXII lists the TAXII 2.1 collections the controller polls for
	// STIX indicators (each becomes a block at every gateway, as a bundle
	// posted to /v1/intake/stix does).
	TAXII []intake.TAXIICollection `mapstructure:"taxii" yaml:"taxii"`
}

// Alertmanager maps Prometheus alerts to gateways and kinds.
type Alertmanager struct {
	GatewayLabel   string            `mapstructure:"gateway_label" yaml:"gateway_label"`
	InstanceLabel  string            `mapstructure:"instance_label" yaml:"instance_label"`
	SiteLabel      string            `mapstructure:"site_label" yaml:"site_label"`
	KindLabel      string            `mapstructure:"kind_label" yaml:"kind_label"`
	AlertnameKinds map[string]string `mapstructure:"alertname_kinds" yaml:"alertname_kinds"`
}

// Guards bound the blast radius of automatic actions (safety invariant 2).
type Guards struct {
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// MaxAutoIsolationsPerSite and MaxAutoIsolationsFleet: automatic
	// isolations allowed per window; beyond, runs wait for approval.
	MaxAutoIsolationsPerSite int `mapstructure:"max_auto_isolations_per_site" yaml:"max_auto_isolations_per_site"`
	MaxAutoIsolationsFleet   int `mapstructure:"max_auto_isolations_fleet" yaml:"max_auto_isolations_fleet"`
	// The circuit breaker trips when at least BreakerMinGateways and at
	// least BreakerFraction of the fleet have firing indicators within the
	// window: every automatic action then waits for a person.
	BreakerMinGateways int     `mapstructure:"breaker_min_gateways" yaml:"breaker_min_gateways"`
	BreakerFraction    float64 `mapstructure:"breaker_fraction" yaml:"breaker_fraction"`
	// TwoPerson (default true) is four eyes: a run is approved by an
	// approver who neither requested it nor overrode a gate on it. It can
	// be set false only in the configuration file (no environment
	// variable turns it off), and every report then says that one person
	// could act alone.
	TwoPerson *bool `mapstructure:"two_person" yaml:"two_person,omitempty" env:"-"`
}

// FourEyes reports whether approvals need a second person (true unless
// two_person: false).
func (g Guards) FourEyes() bool { return g.TwoPerson == nil || *g.TwoPerson }

// Executor tunes step execution.
type Executor struct {
	MaxAttempts int           `mapstructure:"max_attempts" yaml:"max_attempts"`
	BackoffBase time.Duration `mapstructure:"backoff_base" yaml:"backoff_base"`
	BackoffMax  time.Duration `mapstructure:"backoff_max" yaml:"backoff_max"`
	StepTimeout time.Duration `mapstructure:"step_timeout" yaml:"step_timeout"`
}

// Reconcile tunes the drift-repair loop.
type Reconcile struct {
	Interval time.Duration `mapstructure:"interval" yaml:"interval"`
}

// Drift schedules baseline checks of every gateway with an agent.
type Drift struct {
	// Interval between fleet-wide checks; 0 turns the schedule off
	// (warden drift check still works).
	Interval time.Duration `mapstructure:"interval" yaml:"interval"`
}

// VSphere is the vCenter connection.
type VSphere struct {
	URL                 string `mapstructure:"url" yaml:"url"`
	Username            string `mapstructure:"username" yaml:"username"`
	Password            string `mapstructure:"password" yaml:"password"`
	Insecure            bool   `mapstructure:"insecure" yaml:"insecure"`
	CAFile              string `mapstructure:"ca_file" yaml:"ca_file"`
	Datacenter          string `mapstructure:"datacenter" yaml:"datacenter"`
	QuarantinePortgroup string `mapstructure:"quarantine_portgroup" yaml:"quarantine_portgroup"`
	QuarantineMode      string `mapstructure:"quarantine_mode" yaml:"quarantine_mode"`
	TagCategory         string `mapstructure:"tag_category" yaml:"tag_category"`
	Tag                 string `mapstructure:"tag" yaml:"tag"`
}

// Notify lists notification channels.
type Notify struct {
	Default  string    `mapstructure:"default" yaml:"default"`
	Channels []Channel `mapstructure:"channels" yaml:"channels"`
}

// Channel is one webhook.
type Channel struct {
	Name    string            `mapstructure:"name" yaml:"name"`
	URL     string            `mapstructure:"url" yaml:"url"`
	Secret  string            `mapstructure:"secret" yaml:"secret"`
	Headers map[string]string `mapstructure:"headers" yaml:"headers"`
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Server:  Server{Listen: "127.0.0.1:8780", MaxBodyBytes: 1 << 20},
		Console: Console{Enabled: true, SessionTTL: 12 * time.Hour},
		Store:   Store{Driver: DriverSQLite, Path: "warden.db", Sync: "full", LeaseTTL: 10 * time.Second},
		Intake: Intake{
			DedupWindow: 10 * time.Minute, IncidentWindow: 6 * time.Hour, ReplayWindow: 5 * time.Minute, Journal: true,
			Alertmanager: Alertmanager{GatewayLabel: "gateway", InstanceLabel: "instance", SiteLabel: "site", KindLabel: "warden_kind"},
		},
		Guards: Guards{
			Window: time.Hour, MaxAutoIsolationsPerSite: 1, MaxAutoIsolationsFleet: 3,
			BreakerMinGateways: 3, BreakerFraction: 0.5,
		},
		Executor:    Executor{MaxAttempts: 5, BackoffBase: 200 * time.Millisecond, BackoffMax: 10 * time.Second, StepTimeout: 5 * time.Minute},
		Reconcile:   Reconcile{Interval: 30 * time.Second},
		Drift:       Drift{Interval: time.Hour},
		VSphere:     VSphere{QuarantinePortgroup: "warden-quarantine", QuarantineMode: "portgroup", TagCategory: "warden", Tag: "quarantined"},
		Notify:      Notify{Default: "default"},
		Credentials: Credentials{MasterKeyEnv: "WARDEN_MASTER_KEY", WaveSize: 4, UnitTimeout: 30 * time.Second},
		Blocks:      Blocks{DefaultTTL: 7 * 24 * time.Hour, MaxTTL: 90 * 24 * time.Hour, MaxAutoPrefixV4: 16, MaxAutoPrefixV6: 32, Interval: 30 * time.Second},
		Investigate: Investigate{LookBack: 24 * time.Hour, Timeout: 90 * time.Second},
		Capture:     Capture{OnIsolate: true, Duration: 10 * time.Minute, MaxBytes: 64 << 20},
	}
}

// Load reads path (may be empty: defaults and environment only), applies
// the WARDEN_<SECTION>_<KEY> variable of each leaf key that is set,
// validates, and returns the result. Client variables (WARDEN_SERVER,
// WARDEN_API_TOKEN, WARDEN_CONFIG) are never read: the server's token is
// WARDEN_SERVER_API_TOKEN or server.api_token_file.
func Load(path string) (Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	setDefaults(v, "", reflect.ValueOf(Defaults()))
	// Each leaf is bound by name rather than with AutomaticEnv: AutomaticEnv
	// also consults the variable of every parent key, so the client's
	// WARDEN_SERVER would replace the whole server section.
	for key, env := range envBindings() {
		if err := v.BindEnv(key, env); err != nil {
			return Config{}, fmt.Errorf("binding %s to %s: %w", key, env, err)
		}
	}
	where := "defaults and environment"
	if path != "" {
		where = path
		f, err := os.Open(path)
		if err != nil {
			return Config{}, fmt.Errorf("reading config: %w", err)
		}
		defer f.Close()
		if err := v.ReadConfig(f); err != nil {
			return Config{}, fmt.Errorf("parsing config %s: %w", path, err)
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))); err != nil {
		return Config{}, fmt.Errorf("loading config %s: %w", where, cleanUnknownKeys(err))
	}
	if c.Server.APIToken == "" && c.Server.APITokenFile != "" {
		b, err := os.ReadFile(c.Server.APITokenFile)
		if err != nil {
			return Config{}, fmt.Errorf("reading server.api_token_file: %w", err)
		}
		c.Server.APIToken = strings.TrimSpace(string(b))
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("validating config %s: %w", where, err)
	}
	return c, nil
}

// cleanUnknownKeys turns mapstructure's message into one that says the key
// is unknown.
func cleanUnknownKeys(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "has invalid keys") {
		return fmt.Errorf("unknown key: %s", strings.TrimPrefix(msg, "decoding failed due to the following error(s):\n\n"))
	}
	return err
}

// setDefaults registers every leaf of d so that viper knows the full key
// set (UnmarshalExact and the environment bindings work on known keys).
func setDefaults(v *viper.Viper, prefix string, d reflect.Value) {
	walkLeaves(prefix, d, func(key string, leaf reflect.Value) {
		v.SetDefault(key, leaf.Interface())
	})
}

// envBindings maps each scalar leaf key ("server.listen") to the variable
// that overrides it ("WARDEN_SERVER_LISTEN"). Maps and lists
// (alertname_kinds, channels) come only from the file: one variable cannot
// spell them.
func envBindings() map[string]string {
	m := map[string]string{}
	walkLeaves("", reflect.ValueOf(Defaults()), func(key string, leaf reflect.Value) {
		switch leaf.Kind() {
		case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct:
			return
		}
		m[key] = "WARDEN_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
	})
	return m
}

// walkLeaves calls fn with the dotted key of every leaf of d. A section is
// never a leaf; inventory is decoded from the file only.
func walkLeaves(prefix string, d reflect.Value, fn func(key string, leaf reflect.Value)) {
	t := d.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("mapstructure")
		if key == "" || key == "inventory" || f.Tag.Get("env") == "-" {
			continue
		}
		full := key
		if prefix != "" {
			full = prefix + "." + key
		}
		fv := d.Field(i)
		if fv.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			walkLeaves(full, fv, fn)
			continue
		}
		fn(full, fv)
	}
}

// Validate checks values; each message names the field.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, err := netip.ParseAddrPort(c.Server.Listen); err != nil && !strings.HasPrefix(c.Server.Listen, "localhost:") {
		add("server.listen: %q is not host:port", c.Server.Listen)
	}
	for _, m := range []struct {
		name string
		v    interface{ Validate() error }
	}{{"intake.suricata", c.Intake.Suricata}, {"intake.zeek", c.Intake.Zeek}, {"intake.wazuh", c.Intake.Wazuh}, {"intake.falco", c.Intake.Falco}} {
		if err := m.v.Validate(); err != nil {
			add("%s: %v", m.name, err)
		}
	}
	if c.Server.MaxBodyBytes <= 0 {
		add("server.max_body_bytes: must be positive")
	}
	if err := c.Investigate.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Capture.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Blocks.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Console.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Server.AgentListen != "" {
		if _, _, err := net.SplitHostPort(c.Server.AgentListen); err != nil {
			add("server.agent_listen: %q is not host:port", c.Server.AgentListen)
		}
		for _, f := range []struct{ key, v string }{{"agents.server_cert_file", c.Agents.ServerCertFile}, {"agents.server_key_file", c.Agents.ServerKeyFile}, {"agents.ca_file", c.Agents.CAFile}} {
			if f.v == "" {
				add("%s: is required with server.agent_listen", f.key)
			}
		}
	}
	for i, t := range c.Intake.TAXII {
		if err := t.WithDefaults().Validate(); err != nil {
			add("intake.taxii[%d].%v", i, err)
		}
	}
	if (c.Server.TLSCertFile == "") != (c.Server.TLSKeyFile == "") {
		add("server.tls_cert_file and server.tls_key_file: set both or neither")
	}
	switch c.Store.Sync {
	case "full", "normal":
	default:
		add("store.sync: must be full or normal, got %q", c.Store.Sync)
	}
	if c.Store.LeaseTTL < 3*time.Second {
		add("store.lease_ttl: must be at least 3s (renewed every third of it), got %s", c.Store.LeaseTTL)
	}
	switch c.Store.Driver {
	case DriverSQLite:
		if c.Store.Path == "" {
			add("store.path: is required")
		}
	case DriverPostgres:
		switch {
		case c.Store.DSN == "":
			add("store.dsn: is required with store.driver postgres (a postgres:// URL; or set WARDEN_STORE_DSN)")
		case !strings.HasPrefix(c.Store.DSN, "postgres://") && !strings.HasPrefix(c.Store.DSN, "postgresql://"):
			add("store.dsn: must be a postgres:// URL")
		}
		if c.Evidence.Dir == "" {
			add("evidence.dir: is required with store.driver postgres: every replica reads and writes the evidence blobs, so they live on storage all of them share")
		}
	default:
		add("store.driver: must be %s or %s, got %q", DriverSQLite, DriverPostgres, c.Store.Driver)
	}
	if c.Intake.DedupWindow <= 0 {
		add("intake.dedup_window: must be positive")
	}
	if c.Intake.IncidentWindow <= 0 {
		add("intake.incident_window: must be positive")
	}
	g := c.Guards
	if g.Window <= 0 {
		add("guards.window: must be positive")
	}
	if g.MaxAutoIsolationsPerSite < 0 || g.MaxAutoIsolationsFleet < 0 {
		add("guards.max_auto_isolations_*: must not be negative")
	}
	if g.BreakerFraction <= 0 || g.BreakerFraction > 1 {
		add("guards.breaker_fraction: must be in (0, 1]")
	}
	if c.Drift.Interval < 0 {
		add("drift.interval: must not be negative (0 turns the schedule off)")
	}
	if c.Executor.MaxAttempts < 1 {
		add("executor.max_attempts: must be at least 1")
	}
	if c.Executor.BackoffBase <= 0 || c.Executor.BackoffMax < c.Executor.BackoffBase {
		add("executor.backoff_base/backoff_max: base must be positive and not above max")
	}
	if c.VSphere.URL != "" {
		u, err := url.Parse(c.VSphere.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("vsphere.url: %q is not an http(s) URL", redactURL(c.VSphere.URL))
		} else if u.User != nil {
			add("vsphere.url: must not carry credentials; use vsphere.username and WARDEN_VSPHERE_PASSWORD")
		}
	}
	switch c.VSphere.QuarantineMode {
	case "portgroup", "disconnect":
	default:
		add("vsphere.quarantine_mode: must be portgroup or disconnect, got %q", c.VSphere.QuarantineMode)
	}
	names := map[string]bool{}
	for i, ch := range c.Notify.Channels {
		if ch.Name == "" {
			add("notify.channels[%d].name: is required", i)
		}
		if names[ch.Name] {
			add("notify.channels[%d].name: duplicate channel %q", i, ch.Name)
		}
		names[ch.Name] = true
		u, err := url.Parse(ch.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("notify.channels[%d].url: %q is not an http(s) URL", i, redactURL(ch.URL))
		}
	}
	if len(c.Notify.Channels) > 0 && !names[c.Notify.Default] {
		add("notify.default: %q is not one of notify.channels", c.Notify.Default)
	}
	agentsUsed := false
	for _, g := range c.Inventory.Gateways {
		if g.Agent != "" {
			agentsUsed = true
			if u, err := url.Parse(g.Agent); err != nil || u.Scheme != "https" || u.Host == "" {
				add("inventory.gateways (%s).agent: %q must be an https:// URL (the agent only speaks mutual TLS)", g.ID, g.Agent)
			}
		}
	}
	if agentsUsed && (c.Agents.CertFile == "" || c.Agents.KeyFile == "" || c.Agents.CAFile == "") {
		add("agents.cert_file, agents.key_file and agents.ca_file: required when a gateway has an agent")
	}
	if (c.Credentials.CACertFile == "") != (c.Credentials.CAKeyFile == "") {
		add("credentials.ca_cert_file and credentials.ca_key_file: give both or neither")
	}
	if c.Credentials.WaveSize < 1 {
		add("credentials.wave_size: must be at least 1")
	}
	if c.Credentials.UnitTimeout <= 0 {
		add("credentials.unit_timeout: must be positive")
	}
	for _, g := range c.Inventory.Gateways {
		if (g.WireGuard != nil || g.StrongSwan != nil) && g.Agent == "" {
			add("inventory.gateways (%s): wireguard and strongswan need an agent on the gateway (agent), through which Warden reaches the tunnels", g.ID)
		}
	}
	if err := c.Inventory.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable>"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	u.RawQuery = ""
	return u.String()
}

// DefaultsYAML renders the defaults as YAML (for `warden config defaults`
// and the golden test).
func DefaultsYAML() ([]byte, error) {
	return DefaultsYAMLOf(Defaults())
}

// DefaultsYAMLOf renders any configuration as YAML (redact it first).
func DefaultsYAMLOf(c Config) ([]byte, error) {
	return yaml.Marshal(c)
}

// Redacted returns a copy with secrets replaced, safe to print.
func (c Config) Redacted() Config {
	r := c
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return "[redacted]"
	}
	r.Server.APIToken = mask(r.Server.APIToken)
	r.VSphere.Password = mask(r.VSphere.Password)
	r.Intake.WebhookSecret = mask(r.Intake.WebhookSecret)
	if r.Store.DSN != "" {
		r.Store.DSN = redactURL(r.Store.DSN)
	}
	r.Notify.Channels = append([]Channel(nil), c.Notify.Channels...)
	for i := range r.Notify.Channels {
		r.Notify.Channels[i].Secret = mask(r.Notify.Channels[i].Secret)
		r.Notify.Channels[i].URL = redactURL(r.Notify.Channels[i].URL)
	}
	return r
}

// Validate checks the blocks section, naming the key at fault.
func (b Blocks) Validate() error {
	var errs []error
	if b.DefaultTTL <= 0 {
		errs = append(errs, errors.New("blocks.default_ttl: must be positive"))
	}
	if b.MaxTTL < b.DefaultTTL {
		errs = append(errs, fmt.Errorf("blocks.max_ttl: must be at least blocks.default_ttl (%s)", b.DefaultTTL))
	}
	if b.MaxAutoPrefixV4 < 0 || b.MaxAutoPrefixV4 > 32 {
		errs = append(errs, fmt.Errorf("blocks.max_auto_prefix_v4: %d is not a prefix length 0..32", b.MaxAutoPrefixV4))
	}
	if b.MaxAutoPrefixV6 < 0 || b.MaxAutoPrefixV6 > 128 {
		errs = append(errs, fmt.Errorf("blocks.max_auto_prefix_v6: %d is not a prefix length 0..128", b.MaxAutoPrefixV6))
	}
	for i, p := range b.Protected {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, aerr := netip.ParseAddr(p); aerr != nil {
				errs = append(errs, fmt.Errorf("blocks.protected[%d]: %q is not an address or CIDR", i, p))
			}
		}
	}
	if b.Interval <= 0 {
		errs = append(errs, errors.New("blocks.interval: must be positive"))
	}
	return errors.Join(errs...)
}

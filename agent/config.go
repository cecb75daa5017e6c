package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// Defaults.
const (
	DefaultListen        = ":8443"
	DefaultStateDir      = "/var/lib/warden-agent"
	DefaultConfirmWindow = 30 * time.Second
	DefaultHealInterval  = 10 * time.Second
	DefaultMaxTTL        = 2 * time.Minute
	DefaultClockSkew     = 30 * time.Second
	DefaultMaxNonces     = 1 << 16
)

// Bounds on a confirm window asked for by the controller: shorter than a
// second cannot survive one retry; longer than ten minutes leaves a gateway
// that locked its responders out for too long.
const (
	MinConfirmWindow = time.Second
	MaxConfirmWindow = 10 * time.Minute
)

// Config configures the agent.
type Config struct {
	// Listen is the TCP address of the HTTPS API.
	Listen string
	// CertFile and KeyFile are the agent's server certificate and key.
	CertFile, KeyFile string
	// ClientCAFile holds the CA certificates a controller's client
	// certificate must chain to.
	ClientCAFile string
	// ControllerIdentity must appear as the client certificate's
	// CommonName, or as one of its DNS or URI SANs.
	ControllerIdentity string
	// StateDir holds the quarantine record and the nonce journal (0700).
	StateDir string
	// ConfirmWindow is how long an isolate waits for its confirm before the
	// agent reverts it by itself.
	ConfirmWindow time.Duration
	// HealInterval is how often the agent compares the rules with its
	// record and repairs drift.
	HealInterval time.Duration
	// MaxTTL is the longest lifetime (ExpiresAt - IssuedAt) of a command.
	MaxTTL time.Duration
	// ClockSkew is the tolerated difference between controller and agent
	// clocks.
	ClockSkew time.Duration
	// MaxNonces bounds the remembered nonces; commands beyond it get 429.
	MaxNonces int
	// Management networks stay reachable through every quarantine, in
	// addition to the ones each isolate names.
	Management []netip.Prefix
	// WireGuardLinks names the tunnel links isolate brings down. Empty
	// means every link of kind wireguard or named wg*.
	WireGuardLinks []string
}

// withDefaults returns c with every zero field defaulted.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.ControllerIdentity == "" {
		c.ControllerIdentity = wire.DefaultControllerIdentity
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.ConfirmWindow == 0 {
		c.ConfirmWindow = DefaultConfirmWindow
	}
	if c.HealInterval == 0 {
		c.HealInterval = DefaultHealInterval
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.MaxNonces == 0 {
		c.MaxNonces = DefaultMaxNonces
	}
	return c
}

// validate checks a defaulted config.
func (c Config) validate() error {
	var errs []error
	if c.CertFile == "" || c.KeyFile == "" {
		errs = append(errs, errors.New("a server certificate and key are required"))
	}
	if c.ClientCAFile == "" {
		errs = append(errs, errors.New("a client CA file is required: the agent only talks to a controller with a certificate"))
	}
	if c.ConfirmWindow < MinConfirmWindow || c.ConfirmWindow > MaxConfirmWindow {
		errs = append(errs, fmt.Errorf("confirm window %s is outside [%s, %s]", c.ConfirmWindow, MinConfirmWindow, MaxConfirmWindow))
	}
	if c.HealInterval < 0 {
		errs = append(errs, fmt.Errorf("heal interval %s is negative", c.HealInterval))
	}
	if c.MaxTTL < 0 || c.ClockSkew < 0 || c.MaxNonces < 0 {
		errs = append(errs, errors.New("max TTL, clock skew and max nonces must not be negative"))
	}
	for _, p := range c.Management {
		if _, err := normalisePrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("management network: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("validating agent config: %w", err)
	}
	return nil
}

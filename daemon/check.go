package daemon

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/notify"
	"github.com/warden-ir/warden/policies"
	"github.com/warden-ir/warden/providers/vsphere"
	"github.com/warden-ir/warden/rotation"
)

// Checked is what Check found in a configuration that passed.
type Checked struct {
	// Policies are the loaded and compiled policies and runbooks.
	Policies *policies.Set
	// Warnings name settings that work but are probably mistakes.
	Warnings []string
}

// Check runs every check Build and Serve make that needs neither a network
// nor the store, in this order: the files and directories the
// configuration names (config.CheckFiles), the policies (loaded, compiled,
// every runbook step naming an action the catalogue will have), the API
// token, the vCenter settings, the notification channels and the
// credential vault's key and CA. `warden config check` runs it alone;
// Build runs it first, so the two cannot disagree. Every problem is
// reported, joined, each naming its key. Warnings are returned even with
// an error.
func Check(cfg config.Config, opt Options) (Checked, error) {
	out := Checked{Warnings: cfg.Warnings()}
	var errs []error
	if err := cfg.CheckFiles(); err != nil {
		errs = append(errs, err)
	}
	pol, err := loadPolicies(cfg)
	if err != nil {
		errs = append(errs, err)
	} else if err := checkRunbookActions(cfg, pol, catalogueNames(opt)); err != nil {
		errs = append(errs, err)
	}
	for _, check := range []func(config.Config) error{checkAPIToken, checkVSphere, checkNotify, checkCredentials} {
		if err := check(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	out.Policies = pol
	return out, nil
}

// policiesKey names where the policies come from in an error.
func policiesKey(cfg config.Config) string {
	if cfg.Policies.Dir == "" {
		return "policies.dir (empty: the embedded defaults)"
	}
	return "policies.dir"
}

// loadPolicies loads and compiles the configured policies, or the
// embedded defaults.
func loadPolicies(cfg config.Config) (*policies.Set, error) {
	var set *policies.Set
	var err error
	if cfg.Policies.Dir != "" {
		set, err = policies.LoadDir(cfg.Policies.Dir)
	} else {
		set, err = policies.Default()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: loading policies: %w", policiesKey(cfg), err)
	}
	return set, nil
}

// catalogueNames is every action Build puts in the catalogue: the standard
// actions, each either working or Unavailable with the reason, and the
// extra ones. TestCatalogueNamesMatchBuild keeps it honest.
func catalogueNames(opt Options) []string {
	names := actions.StandardNames()
	for _, a := range opt.ExtraActions {
		if !slices.Contains(names, a.Name()) {
			names = append(names, a.Name())
		}
	}
	slices.Sort(names)
	return names
}

// checkRunbookActions: every runbook step names an action in names (as
// controller.New requires of the catalogue), so a typo fails here rather
// than at start.
func checkRunbookActions(cfg config.Config, set *policies.Set, names []string) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(set.Runbooks)) {
		rb := set.Runbooks[name]
		for _, s := range rb.Steps {
			if !slices.Contains(names, s.Action) {
				where := fmt.Sprintf("runbook %q", rb.Name)
				if rb.File != "" {
					where = fmt.Sprintf("%s:%d: %s", rb.File, rb.Line, where)
				}
				errs = append(errs, fmt.Errorf("%s: %s uses action %q, which is not available (have: %v)", policiesKey(cfg), where, s.Action, names))
			}
		}
	}
	return errors.Join(errs...)
}

// checkAPIToken: people authenticate with their own tokens (users in the
// store, the first admin from server.bootstrap_token_file) or, when
// server.oidc is set, with ID tokens; the mapping must name real roles.
func checkAPIToken(cfg config.Config) error {
	o := cfg.Server.OIDC
	if o.Issuer == "" && o.Audience == "" && len(o.Roles) == 0 {
		return nil
	}
	_, err := auth.NewOIDC(auth.OIDCConfig{Issuer: o.Issuer, Audience: o.Audience, UserClaim: o.UserClaim, GroupsClaim: o.GroupsClaim, Roles: o.Roles}, nil, nil)
	return err
}

// vsphereConfig is the provider's view of the vsphere section.
func vsphereConfig(v config.VSphere) vsphere.Config {
	return vsphere.Config{
		URL: v.URL, Username: v.Username, Password: v.Password,
		Insecure: v.Insecure, CAFile: v.CAFile, Datacenter: v.Datacenter,
		QuarantinePortgroup: v.QuarantinePortgroup, QuarantineMode: v.QuarantineMode,
		TagCategory: v.TagCategory, Tag: v.Tag,
	}
}

// checkVSphere: what vsphere.Connect validates before it dials.
func checkVSphere(cfg config.Config) error {
	if cfg.VSphere.URL == "" {
		return nil
	}
	if err := vsphereConfig(cfg.VSphere).Validate(); err != nil {
		return fmt.Errorf("validating the vCenter settings: %w", err) // each message names its vsphere.* key
	}
	return nil
}

// notifyChannels is the sender's view of the notify section.
func notifyChannels(n config.Notify) []notify.Channel {
	channels := make([]notify.Channel, 0, len(n.Channels))
	for _, ch := range n.Channels {
		channels = append(channels, notify.Channel{Name: ch.Name, URL: ch.URL, Secret: ch.Secret, Headers: ch.Headers})
	}
	return channels
}

// checkNotify: the channels the sender accepts.
func checkNotify(cfg config.Config) error {
	if _, err := notify.NewSender(notifyChannels(cfg.Notify), nil); err != nil {
		return fmt.Errorf("notify.channels: %w", err)
	}
	return nil
}

// checkCredentials: the vault's master key, when configured, loads, and
// so does the IPsec CA.
func checkCredentials(cfg config.Config) error {
	c := cfg.Credentials
	var errs []error
	if _, _, err := masterKey(c); err != nil {
		key := "credentials.master_key_file"
		if c.MasterKeyFile == "" {
			key = "credentials.master_key_env (" + c.MasterKeyEnv + ")"
		}
		errs = append(errs, fmt.Errorf("%s: %w", key, err))
	}
	if c.CACertFile != "" && c.CAKeyFile != "" {
		if _, err := rotation.LoadCAFiles(c.CACertFile, c.CAKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("credentials.ca_cert_file and credentials.ca_key_file: %w", err))
		}
	}
	return errors.Join(errs...)
}

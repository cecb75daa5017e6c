package vsphere

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
)

// Quarantine modes.
const (
	// ModePortgroup moves NICs to the quarantine portgroup and keeps them
	// connected there, so forensics can still reach the VM on an isolated
	// segment.
	ModePortgroup = "portgroup"
	// ModeDisconnect also disconnects every NIC.
	ModeDisconnect = "disconnect"
)

// Defaults applied by WithDefaults.
const (
	DefaultTagCategory = "warden"
	DefaultTag         = "quarantined"
	DefaultAttribute   = "warden.original-network"
)

// Config says how to reach vCenter and how to quarantine a VM.
type Config struct {
	// URL of the SDK endpoint, https://vcenter/sdk. It must not carry
	// credentials.
	URL string `mapstructure:"url" json:"url" yaml:"url"`
	// Username and Password log in to vCenter. They are never logged.
	Username string `mapstructure:"username" json:"username" yaml:"username"`
	Password string `mapstructure:"password" json:"-" yaml:"password"`
	// Insecure turns TLS verification off (lab only). Verification is on
	// by default.
	Insecure bool `mapstructure:"insecure" json:"insecure,omitempty" yaml:"insecure,omitempty"`
	// CAFile is a PEM CA bundle to trust instead of the system roots.
	CAFile string `mapstructure:"ca_file" json:"ca_file,omitempty" yaml:"ca_file,omitempty"`
	// Datacenter is optional; by default the only datacenter is used.
	Datacenter string `mapstructure:"datacenter" json:"datacenter,omitempty" yaml:"datacenter,omitempty"`
	// QuarantinePortgroup is the distributed portgroup isolated NICs move
	// to. Required in mode "portgroup"; optional in mode "disconnect"
	// (NICs then keep their network and are only disconnected).
	QuarantinePortgroup string `mapstructure:"quarantine_portgroup" json:"quarantine_portgroup,omitempty" yaml:"quarantine_portgroup,omitempty"`
	// QuarantineMode is "portgroup" (default) or "disconnect".
	QuarantineMode string `mapstructure:"quarantine_mode" json:"quarantine_mode,omitempty" yaml:"quarantine_mode,omitempty"`
	// TagCategory and Tag mark a quarantined VM (created if missing).
	TagCategory string `mapstructure:"tag_category" json:"tag_category,omitempty" yaml:"tag_category,omitempty"`
	Tag         string `mapstructure:"tag" json:"tag,omitempty" yaml:"tag,omitempty"`
	// Attribute is the custom attribute that holds the original NIC
	// backings while a VM is quarantined (created if missing).
	Attribute string `mapstructure:"attribute" json:"attribute,omitempty" yaml:"attribute,omitempty"`
}

// WithDefaults returns c with empty optional fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.QuarantineMode = cmp.Or(c.QuarantineMode, ModePortgroup)
	c.TagCategory = cmp.Or(c.TagCategory, DefaultTagCategory)
	c.Tag = cmp.Or(c.Tag, DefaultTag)
	c.Attribute = cmp.Or(c.Attribute, DefaultAttribute)
	return c
}

// Validate reports every problem with the configuration (after defaults),
// each naming its field. It does no I/O.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.URL == "" {
		add("vsphere.url: is required")
	} else if u, err := url.Parse(c.URL); err != nil {
		// url.Parse echoes its input, which may hold a password: say
		// only that it is malformed.
		add("vsphere.url: is not a valid URL")
	} else {
		if u.Scheme != "https" {
			add("vsphere.url: scheme must be https, not %q", u.Scheme)
		}
		if u.Host == "" {
			add("vsphere.url: has no host")
		}
		if u.User != nil {
			add("vsphere.url: must not contain credentials (use vsphere.username and vsphere.password)")
		}
	}
	if c.Username == "" {
		add("vsphere.username: is required")
	}
	if c.Password == "" {
		add("vsphere.password: is required")
	}
	if c.Insecure && c.CAFile != "" {
		add("vsphere.ca_file: set together with vsphere.insecure; choose one")
	}
	switch c.QuarantineMode {
	case ModePortgroup:
		if c.QuarantinePortgroup == "" {
			add("vsphere.quarantine_portgroup: is required when vsphere.quarantine_mode is %q", ModePortgroup)
		}
	case ModeDisconnect:
	default:
		add("vsphere.quarantine_mode: %q is not one of %q, %q", c.QuarantineMode, ModePortgroup, ModeDisconnect)
	}
	return errors.Join(errs...)
}

// redactedURL returns the URL without userinfo, for logs and errors.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	u.User = nil
	return u.String()
}

package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
)

var (
	_ actions.VMProvider         = (*Provider)(nil)
	_ actions.ManagementIsolator = (*Provider)(nil)
)

// keepAliveIdle is how often an idle SOAP session is touched so vCenter
// does not expire it between incidents.
const keepAliveIdle = 5 * time.Minute

// Provider talks to one vCenter. It is safe for concurrent use; calls for
// the same VM are serialised. It must not be used after Close.
type Provider struct {
	cfg  Config
	log  *slog.Logger
	user *url.Userinfo

	vim  *vim25.Client
	sm   *session.Manager
	rest *rest.Client
	tags *tags.Manager

	dc                  *object.Datacenter
	finder              *find.Finder
	vmFolder, netFolder types.ManagedObjectReference
	fields              *object.CustomFieldsManager

	loginMu sync.Mutex
	// sessionGen counts logins, so concurrent callers that all saw the
	// session die log in again only once. Guarded by loginMu.
	sessionGen int

	mu sync.Mutex // guards the views, caches and vmLocks below
	// vmView and netView are container views over the datacenter's VM and
	// network folders: one round trip per look-up instead of a folder
	// walk. They belong to the session and are made again with it.
	vmView, netView *view.ContainerView
	// caches of identifiers that do not change for an object's life.
	vmRefs        map[string]types.ManagedObjectReference
	dvsUUID       map[types.ManagedObjectReference]string
	tagNames      map[string]tagName // tag id -> names
	categoryNames map[string]string  // category id -> name
	quarantineTag string             // tag id, once found or created
	fieldKey      int32              // custom field key, 0 until known
	fieldNames    map[int32]string
	vmLocks       map[string]*sync.Mutex
}

type tagName struct{ category, name string }

// Connect validates cfg, logs in to vCenter (SOAP and vAPI REST), finds the
// datacenter and checks that the quarantine portgroup exists. Errors never
// contain the password; bad credentials, an untrusted certificate or a
// missing portgroup are terminal. The provider adds provider=vsphere and the
// url to every line it logs: pass log without them.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Provider, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, actions.Terminal(fmt.Errorf("validating vsphere config: %w", err))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		cfg:           cfg,
		log:           log.With("provider", "vsphere", "url", redactedURL(cfg.URL)),
		user:          url.UserPassword(cfg.Username, cfg.Password),
		vmRefs:        map[string]types.ManagedObjectReference{},
		dvsUUID:       map[types.ManagedObjectReference]string{},
		tagNames:      map[string]tagName{},
		categoryNames: map[string]string{},
		fieldNames:    map[int32]string{},
		vmLocks:       map[string]*sync.Mutex{},
	}
	if err := p.connect(ctx); err != nil {
		p.Close(context.WithoutCancel(ctx))
		return nil, classify(redact(fmt.Errorf("connecting to vcenter %s: %w", redactedURL(cfg.URL), err), cfg.Password))
	}
	p.log.Info("connected to vcenter", "datacenter", p.dc.Name(), "quarantine_mode", cfg.QuarantineMode,
		"quarantine_portgroup", cfg.QuarantinePortgroup)
	return p, nil
}

func (p *Provider) connect(ctx context.Context) error {
	u, err := url.Parse(p.cfg.URL)
	if err != nil {
		return fmt.Errorf("parsing url: %w", errInvalid)
	}
	u.User = nil
	sc := soap.NewClient(u, p.cfg.Insecure)
	if p.cfg.CAFile != "" {
		if err := sc.SetRootCAs(p.cfg.CAFile); err != nil {
			return fmt.Errorf("loading ca_file %q: %w: %w", p.cfg.CAFile, errInvalid, err)
		}
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return fmt.Errorf("reading service content: %w", err)
	}
	vc.RoundTripper = keepalive.NewHandlerSOAP(vc.RoundTripper, keepAliveIdle, nil)
	p.vim = vc
	p.sm = session.NewManager(vc)
	if err := p.sm.Login(ctx, p.user); err != nil {
		return fmt.Errorf("logging in: %w", err)
	}
	p.rest = rest.NewClient(vc)
	if err := p.rest.Login(ctx, p.user); err != nil {
		return fmt.Errorf("logging in to the vapi endpoint: %w", err)
	}
	p.tags = tags.NewManager(p.rest)

	p.finder = find.NewFinder(vc, false)
	if p.cfg.Datacenter != "" {
		p.dc, err = p.finder.Datacenter(ctx, p.cfg.Datacenter)
	} else {
		p.dc, err = p.finder.DefaultDatacenter(ctx)
	}
	if err != nil {
		return fmt.Errorf("finding datacenter: %w", err)
	}
	p.finder.SetDatacenter(p.dc)
	folders, err := p.dc.Folders(ctx)
	if err != nil {
		return fmt.Errorf("reading folders of datacenter %s: %w", p.dc.Name(), err)
	}
	p.vmFolder, p.netFolder = folders.VmFolder.Reference(), folders.NetworkFolder.Reference()
	if err := p.createViews(ctx); err != nil {
		return err
	}
	if p.fields, err = object.GetCustomFieldsManager(vc); err != nil {
		return fmt.Errorf("opening custom fields manager (custom attributes need vCenter): %w: %w", errInvalid, err)
	}
	if p.cfg.QuarantinePortgroup != "" {
		nets, err := p.networks(ctx)
		if err != nil {
			return err
		}
		if _, err := nets.quarantine(p.cfg.QuarantinePortgroup); err != nil {
			return err
		}
	}
	return nil
}

// Close logs out. It is safe to call on a partly connected provider and
// more than once.
func (p *Provider) Close(ctx context.Context) error {
	// Container views end with the session.
	var errs []error
	if p.rest != nil {
		if err := p.rest.Logout(ctx); err != nil {
			errs = append(errs, err)
		}
		p.rest = nil
	}
	if p.sm != nil {
		if err := p.sm.Logout(ctx); err != nil {
			errs = append(errs, err)
		}
		p.sm = nil
	}
	if err := errors.Join(errs...); err != nil {
		return redact(fmt.Errorf("closing vsphere session: %w", err), p.cfg.Password)
	}
	return nil
}

// QuarantineTarget says where isolation puts a NIC: the quarantine
// portgroup ("" when NICs keep their network) and whether NICs are also
// disconnected. It implements actions.QuarantineTargeter.
func (p *Provider) QuarantineTarget() (network string, disconnect bool) {
	return p.cfg.QuarantinePortgroup, p.cfg.QuarantineMode == ModeDisconnect
}

// withSession runs fn, and once more after logging in again when vCenter
// says the session is gone (expired or vCenter restarted). fn must be
// idempotent, which every provider method is. The returned error is
// classified and has the password redacted.
func (p *Provider) withSession(ctx context.Context, fn func() error) error {
	p.loginMu.Lock()
	gen := p.sessionGen
	p.loginMu.Unlock()
	err := fn()
	if isNotAuthenticated(err) {
		if lerr := p.relogin(ctx, gen); lerr != nil {
			return classify(redact(fmt.Errorf("%w (logging in again: %w)", err, lerr), p.cfg.Password))
		}
		err = fn()
	}
	return classify(redact(err, p.cfg.Password))
}

// relogin logs in again unless another caller already did since gen.
func (p *Provider) relogin(ctx context.Context, gen int) error {
	p.loginMu.Lock()
	defer p.loginMu.Unlock()
	if p.sessionGen != gen {
		return nil
	}
	p.sessionGen++
	p.log.Warn("vcenter session lost, logging in again")
	// Only the session that died is renewed: a SOAP login on a live
	// session is refused.
	if us, err := p.sm.UserSession(ctx); err != nil || us == nil {
		if err := p.sm.Login(ctx, p.user); err != nil {
			return fmt.Errorf("logging in: %w", err)
		}
	}
	if s, err := p.rest.Session(ctx); err != nil || s == nil {
		if err := p.rest.Login(ctx, p.user); err != nil {
			return fmt.Errorf("logging in to the vapi endpoint: %w", err)
		}
	}
	return p.createViews(ctx)
}

// createViews makes the session's container views.
func (p *Provider) createViews(ctx context.Context) error {
	m := view.NewManager(p.vim)
	vms, err := m.CreateContainerView(ctx, p.vmFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return fmt.Errorf("creating vm view: %w", err)
	}
	nets, err := m.CreateContainerView(ctx, p.netFolder, nil, true)
	if err != nil {
		return fmt.Errorf("creating network view: %w", err)
	}
	p.mu.Lock()
	p.vmView, p.netView = vms, nets
	p.mu.Unlock()
	return nil
}

// views returns the current container views.
func (p *Provider) views() (vms, nets *view.ContainerView) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.vmView, p.netView
}

// changeVM runs one change of vm: under the VM's lock, in a session that
// is renewed once if vCenter lost it (change must be idempotent).
func (p *Provider) changeVM(ctx context.Context, vm string, change func() (bool, error)) (changed bool, err error) {
	defer p.lockVM(vm)()
	err = p.withSession(ctx, func() error {
		changed, err = change()
		return err
	})
	return changed, err
}

// lockVM serialises calls for one VM name so two isolations cannot
// interleave their read-record-reconfigure steps.
func (p *Provider) lockVM(vm string) func() {
	p.mu.Lock()
	l, ok := p.vmLocks[vm]
	if !ok {
		l = &sync.Mutex{}
		p.vmLocks[vm] = l
	}
	p.mu.Unlock()
	l.Lock()
	return l.Unlock
}

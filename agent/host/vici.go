package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/strongswan/govici/vici"

	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/charon"
)

// DefaultVICISocket is charon's default VICI socket.
const DefaultVICISocket = "/var/run/charon.vici"

// VICI terminates and re-initiates strongSwan SAs through charon's VICI
// socket. When the socket does not exist no IKE daemon runs, so there is
// nothing to terminate: List returns none.
type VICI struct {
	socket string
}

var _ agent.SAController = (*VICI)(nil)

// NewVICI talks to the VICI socket at path (DefaultVICISocket when empty).
func NewVICI(path string) *VICI {
	if path == "" {
		path = DefaultVICISocket
	}
	return &VICI{socket: path}
}

// errNoDaemon reports that the VICI socket does not exist.
var errNoDaemon = errors.New("no VICI socket: strongSwan is not running")

func (v *VICI) session(ctx context.Context) (*vici.Session, error) {
	if _, err := os.Stat(v.socket); errors.Is(err, fs.ErrNotExist) {
		return nil, errNoDaemon
	}
	s, err := charon.OpenSession(ctx, v.socket)
	if err != nil {
		return nil, fmt.Errorf("connecting to VICI socket %s: %w", v.socket, err)
	}
	return s, nil
}

// maxListedSAs bounds the list-sa events one List buffers, well above the
// largest hub.
const maxListedSAs = 16384

// List returns the IKE SAs charon holds, by connection name, with their
// child SA names.
func (v *VICI) List(ctx context.Context) ([]wire.SA, error) {
	s, err := v.session(ctx)
	if errors.Is(err, errNoDaemon) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.Close()
	_, events, err := charon.CallStreamed(ctx, s, "list-sas", nil, "list-sa", maxListedSAs)
	if err != nil {
		return nil, fmt.Errorf("listing IKE SAs: %w", err)
	}
	var out []wire.SA
	for _, ev := range events {
		out = addListedSA(out, ev)
	}
	if len(out) >= maxListedSAs {
		return out, fmt.Errorf("listing IKE SAs: more than %d", maxListedSAs)
	}
	return out, nil
}

// addListedSA adds the IKE SAs of one list-sa event to out, merging
// several SAs of the same connection.
func addListedSA(out []wire.SA, m *vici.Message) []wire.SA {
	for _, name := range m.Keys() {
		ike, ok := m.Get(name).(*vici.Message)
		if !ok {
			continue
		}
		i := slices.IndexFunc(out, func(o wire.SA) bool { return o.IKE == name })
		if i < 0 {
			out = append(out, wire.SA{IKE: name})
			i = len(out) - 1
		}
		children, ok := ike.Get("child-sas").(*vici.Message)
		if !ok {
			continue
		}
		for _, k := range children.Keys() {
			c, ok := children.Get(k).(*vici.Message)
			if !ok {
				continue
			}
			if n, ok := c.Get("name").(string); ok && !slices.Contains(out[i].Children, n) {
				out[i].Children = append(out[i].Children, n)
			}
		}
	}
	return out
}

// Terminate force-terminates every IKE SA of the connection (and so its
// children) without waiting for the peer. An SA already gone is success.
func (v *VICI) Terminate(ctx context.Context, sa wire.SA) error {
	s, err := v.session(ctx)
	if errors.Is(err, errNoDaemon) {
		return nil
	}
	if err != nil {
		return err
	}
	defer s.Close()
	msg := vici.NewMessage()
	if err := errors.Join(msg.Set("ike", sa.IKE), msg.Set("force", "yes")); err != nil {
		return fmt.Errorf("building terminate request: %w", err)
	}
	if _, err := s.Call(ctx, "terminate", msg); err != nil {
		if strings.Contains(err.Error(), "no matching") {
			return nil
		}
		return fmt.Errorf("terminating IKE SA %s: %w", sa.IKE, err)
	}
	return nil
}

// Initiate starts the connection's child SAs again (the IKE SA alone when
// it had none) and returns without waiting for the negotiation.
func (v *VICI) Initiate(ctx context.Context, sa wire.SA) error {
	s, err := v.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	children := sa.Children
	if len(children) == 0 {
		children = []string{""}
	}
	var errs []error
	for _, child := range children {
		msg := vici.NewMessage()
		err := errors.Join(msg.Set("ike", sa.IKE), msg.Set("timeout", "-1"))
		if child != "" {
			err = errors.Join(err, msg.Set("child", child))
		}
		if err != nil {
			return fmt.Errorf("building initiate request: %w", err)
		}
		if _, err := s.Call(ctx, "initiate", msg); err != nil {
			errs = append(errs, fmt.Errorf("initiating %s/%s: %w", sa.IKE, child, err))
		}
	}
	return errors.Join(errs...)
}

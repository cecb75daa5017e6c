package host

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/warden-ir/warden/agent"
)

// Links brings tunnel links down and up over rtnetlink.
type Links struct{ h *netlink.Handle }

var _ agent.LinkController = (*Links)(nil)

// NewLinks returns a link controller bound to the calling thread's network
// namespace: the netlink socket is opened there, so later calls from any
// goroutine act on that namespace.
func NewLinks() (*Links, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink: %w", err)
	}
	return &Links{h: h}, nil
}

// Close releases the netlink socket.
func (l *Links) Close() error {
	l.h.Close()
	return nil
}

// Links lists every link with its kind and administrative state.
func (l *Links) Links(ctx context.Context) ([]agent.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ls, err := l.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	out := make([]agent.Link, 0, len(ls))
	for _, k := range ls {
		a := k.Attrs()
		out = append(out, agent.Link{Name: a.Name, Type: k.Type(), Up: a.Flags&net.FlagUp != 0})
	}
	return out, nil
}

// SetDown sets the link administratively down; a link already down stays so.
func (l *Links) SetDown(ctx context.Context, name string) error {
	return l.set(ctx, name, "down", l.h.LinkSetDown)
}

// SetUp sets the link administratively up; a link already up stays so.
func (l *Links) SetUp(ctx context.Context, name string) error {
	return l.set(ctx, name, "up", l.h.LinkSetUp)
}

// set finds the link by name and applies set to it (LinkSetDown or
// LinkSetUp); state names the result in errors.
func (l *Links) set(ctx context.Context, name, state string, set func(netlink.Link) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := l.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding link %s: %w", name, err)
	}
	if err := set(k); err != nil {
		return fmt.Errorf("setting link %s %s: %w", name, state, err)
	}
	return nil
}

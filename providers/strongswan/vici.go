package strongswan

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/strongswan/govici/vici"
	"github.com/warden-ir/warden/internal/charon"
)

// SocketDialer dials each site's VICI unix socket, by site name.
type SocketDialer map[string]string

// maxStreamed bounds the events one Stream buffers: well above the SAs of
// the largest hub.
const maxStreamed = 16384

// Dial connects to the site's socket.
func (d SocketDialer) Dial(ctx context.Context, site string) (charon.Conn, error) {
	path, ok := d[site]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownSite, site)
	}
	s, err := vici.NewSession(
		vici.WithSocketPath(path),
		vici.WithDialContext(func(_ context.Context, network, addr string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, network, addr)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to charon of site %q at %s: %w", site, path, err)
	}
	return &session{s: s}, nil
}

type session struct{ s *vici.Session }

var (
	_ charon.Conn         = (*session)(nil)
	_ charon.EventWatcher = (*session)(nil)
	_ charon.Dialer       = SocketDialer(nil)
)

func (c *session) Call(ctx context.Context, cmd string, in *vici.Message) (*vici.Message, error) {
	return c.s.Call(ctx, cmd, in)
}

// Stream does not use govici's CallStreaming, which buffers 128 events and
// may lose some to a race with the command's response: it subscribes to
// the event with a large buffer instead. govici's reader dispatches every
// event before it reads the response that follows them, so once Call has
// returned, all events are in the buffer.
func (c *session) Stream(ctx context.Context, cmd, event string, in *vici.Message) ([]*vici.Message, error) {
	events := make(chan vici.Event, maxStreamed)
	c.s.NotifyEvents(events)
	defer c.s.StopEvents(events)
	// Subscribe takes no context: closing the session is what unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = c.s.Close() })
	defer stop()
	if err := c.s.Subscribe(event); err != nil {
		return nil, fmt.Errorf("subscribing to VICI %s events: %w", event, err)
	}
	defer func() { _ = c.s.Unsubscribe(event) }()
	if _, err := c.s.Call(ctx, cmd, in); err != nil {
		return nil, err
	}
	var out []*vici.Message
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return out, nil
			}
			if ev.Name == event && ev.Message != nil {
				out = append(out, ev.Message)
			}
		default:
			if len(out) == maxStreamed {
				return out, errors.New("too many VICI events: the list is incomplete")
			}
			return out, nil
		}
	}
}

// Watch subscribes the session to event. Events that arrive while the
// reader is slow are dropped rather than blocking govici's reader.
func (c *session) Watch(ctx context.Context, event string) (<-chan *vici.Message, error) {
	raw := make(chan vici.Event, 256)
	c.s.NotifyEvents(raw)
	if err := c.s.Subscribe(event); err != nil {
		c.s.StopEvents(raw)
		return nil, fmt.Errorf("subscribing to VICI %s events: %w", event, err)
	}
	out := make(chan *vici.Message, 256)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-raw:
				if !ok {
					return
				}
				if ev.Name != event || ev.Message == nil {
					continue
				}
				select {
				case out <- ev.Message:
				default:
				}
			}
		}
	}()
	return out, nil
}

func (c *session) Close() error { return c.s.Close() }

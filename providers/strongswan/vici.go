package strongswan

import (
	"context"
	"errors"
	"fmt"

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
	s, err := charon.OpenSession(ctx, path)
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

// Stream collects the events through charon.CallStreamed, which loses
// none of them (govici's CallStreaming may).
func (c *session) Stream(ctx context.Context, cmd, event string, in *vici.Message) ([]*vici.Message, error) {
	_, out, err := charon.CallStreamed(ctx, c.s, cmd, in, event, maxStreamed)
	if err != nil {
		return nil, err
	}
	if len(out) == maxStreamed {
		return out, errors.New("too many VICI events: the list is incomplete")
	}
	return out, nil
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

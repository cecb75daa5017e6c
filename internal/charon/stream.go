package charon

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/strongswan/govici/vici"
)

// CallStreamed calls cmd with in on the caller's session and, when event is
// not empty, collects the events of that name charon sends ahead of its
// reply, buffering up to limit of them (a caller that gets limit events
// back may have lost some). A failed call returns charon's reply, if there
// was one.
//
// govici's CallStreaming is not used: its reader may hand over the
// command's response before events queued ahead of it, losing them at
// random, and it buffers only 128 events. Instead the session subscribes to
// the event with a large buffer; govici's reader dispatches each event
// before it reads the response behind it, so when the call returns every
// event is buffered.
func CallStreamed(ctx context.Context, s *vici.Session, cmd string, in *vici.Message, event string, limit int) (*vici.Message, []*vici.Message, error) {
	// Subscribe takes no context: closing the session is what unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	var ch chan vici.Event
	if event != "" {
		ch = make(chan vici.Event, limit)
		s.NotifyEvents(ch)
		defer s.StopEvents(ch)
		if err := s.Subscribe(event); err != nil {
			return nil, nil, fmt.Errorf("subscribing to VICI %s events: %w", event, err)
		}
		defer func() { _ = s.Unsubscribe(event) }()
	}
	reply, err := s.Call(ctx, cmd, in)
	if err != nil || ch == nil {
		return reply, nil, err
	}
	var events []*vici.Message
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return reply, events, nil
			}
			if ev.Name == event && ev.Message != nil {
				events = append(events, ev.Message)
			}
		default:
			return reply, events, nil
		}
	}
}

// OpenSession opens a govici session on the VICI socket at path. The
// connection is dialled within ctx (and at most 5 seconds): govici itself
// dials with a background context. The caller closes the session.
func OpenSession(ctx context.Context, path string) (*vici.Session, error) {
	return vici.NewSession(vici.WithSocketPath(path), vici.WithDialContext(func(_ context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		return d.DialContext(ctx, network, addr)
	}))
}

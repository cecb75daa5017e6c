// Package charon is how Warden speaks to strongSwan's IKE daemon (charon)
// over VICI, on both sides of the agent: the connection seam the
// controller's strongSwan provider drives (Conn, Dialer and the optional
// EventWatcher), implemented by a local VICI socket
// (providers/strongswan.SocketDialer) or through a gateway's agent
// (providers/linux.AgentVICI); and the JSON form of VICI messages
// (ToWire, FromWire) that carries them through `warden agent`, values that
// are not UTF-8 included.
//
// It owns only these shapes, the lossless conversion between govici's
// messages and wire.VICIMessage, and the two steps every side takes on a
// govici session (OpenSession on a socket the caller names, CallStreamed).
// It must not choose a socket, hold state or log (a message may carry a
// pre-shared key), and must not import a provider or the agent's server,
// so that both sides can use it without knowing each other.
package charon

import (
	"context"

	"github.com/strongswan/govici/vici"
)

// Conn is one VICI connection to a site's charon. The provider opens one
// per operation and closes it.
type Conn interface {
	// Call runs a command and returns charon's reply; a reply with
	// success=no is an error.
	Call(ctx context.Context, cmd string, in *vici.Message) (*vici.Message, error)
	// Stream runs a streamed command (list-sas, list-conns) and returns the
	// events of the given name it produced, in order.
	Stream(ctx context.Context, cmd, event string, in *vici.Message) ([]*vici.Message, error)
	Close() error
}

// EventWatcher is an optional capability of a Conn: delivering charon's
// events of one type as they come, until ctx ends or the Conn is closed.
// With it, a failed reauthentication is seen at once (charon reports the
// new IKE SA going down); without it, only by a timeout.
type EventWatcher interface {
	Watch(ctx context.Context, event string) (<-chan *vici.Message, error)
}

// Dialer opens a VICI connection to a site's charon. Tests wrap a Dialer to
// inject faults; the controller's agent client proxies one.
type Dialer interface {
	Dial(ctx context.Context, site string) (Conn, error)
}

package notify

import (
	"context"

	"github.com/warden-ir/warden/actions"
)

// Sender is what the catalogue's notify action needs (actions.Notifier).
var _ actions.Notifier = (*Sender)(nil)

// Notify implements actions.Notifier with Send.
func (s *Sender) Notify(ctx context.Context, channel, key string, n actions.Notification) (actions.Delivery, error) {
	d, err := s.Send(ctx, channel, key, Message{Incident: n.Incident, Run: n.Run, Gateway: n.Gateway, Site: n.Site,
		Severity: n.Severity, Title: n.Title, Text: n.Text})
	return actions.Delivery(d), err
}

// Delivered implements actions.Notifier with Delivery.
func (s *Sender) Delivered(key string) (actions.Delivery, bool) {
	d, ok := s.Delivery(key)
	return actions.Delivery(d), ok
}

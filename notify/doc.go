// Package notify delivers notifications (incident opened, step done, run
// finished) to webhook channels over HTTP with retries; its Sender is the
// actions.Notifier behind the catalogue's "notify" action.
//
// It owns the outgoing message format, retry and idempotency policy
// (Idempotency-Key header, an in-memory record of deliveries, no second POST
// for a key already delivered), HMAC signing of bodies with the scheme that
// package intake verifies (intake.Sign; notify imports intake, never the
// reverse), and redaction: channel URLs may carry tokens in their user info,
// path or query, and secrets and header values are never logged, audited or
// put in errors. Every text field of a message passes through
// internal/textsafe before it is encoded, so a chat client never shows a
// raw control or bidi character from an alert, a runbook or a person.
//
// It must not decide when to notify (runbooks and the controller do), and a
// failure to notify must never block containment: with no channel
// configured, the action records that and succeeds.
package notify

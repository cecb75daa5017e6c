// Package agent is `warden agent`, the gateway-side half of Warden's OS
// view: a small HTTPS API, reachable only by the controller over mutual TLS,
// that quarantines the gateway (firewall, established flows, tunnels),
// releases it, reports its state and captures volatile evidence.
//
// It owns:
//   - authentication: TLS 1.3, a client certificate chaining to the
//     configured CA and naming the configured controller identity;
//   - replay protection: every command carries a random nonce and an expiry;
//     nonces are journalled in the state directory before the command
//     runs, on disk before it changes anything (fsync'd, or carried by the
//     quarantine record isolate and confirm commit), and remembered until
//     the command could no longer be accepted, so neither a repeat nor a
//     restart re-opens a replay;
//   - the quarantine record: persisted atomically before the kernel is
//     touched, re-applied at start (fail closed), repaired when the rules
//     drift, and reverted by the agent itself only when an isolate is not
//     confirmed within its commit-confirmed window — never because the
//     controller went quiet afterwards.
//
// It must not decide whether to act (the controller does), must not run a
// shell or anything built from request text, and must not touch the OS
// directly: the firewall, conntrack, tunnel links, strongSwan and evidence
// capture are seams (Deps) implemented elsewhere (package agent/host for a
// real gateway, over agent/netfilter and agent/capture; fakes in tests).
// Nothing under agent/ imports a provider or the controller: the two sides
// share the messages and data shapes of package agent/wire, and the VICI
// and mutual-TLS helpers of internal/charon and internal/mtls.
package agent

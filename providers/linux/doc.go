// Package linux is the controller's view of a Linux gateway: the
// mutual-TLS client of the gateway's `warden agent` (AgentClient, one per
// gateway from an AgentPool), what the catalogue's actions need from it
// (AgentPool implements actions.VolatileCapturer, OSQuarantine,
// BaselineVerifier, Patcher, PeerBlocker and IOCBlocker; the actions themselves live
// in package actions), and the adapters that let the tunnel providers
// reach each gateway's WireGuard devices and charon through its agent
// (AgentWireGuard, AgentVICI).
//
// It owns only the controller's side of the agent protocol (package
// agent/wire): minting a fresh command for every attempt, classifying the
// agent's answers as terminal or transient, verifying what the agent reads
// back, and keeping secrets out of errors. Everything that runs on the
// gateway — the netfilter rule sets, conntrack, evidence capture — lives
// under agent/ and is never imported here.
//
// It must not decide whether to act (the controller's gates do), must not
// import another provider or the controller, and must not trust the
// system's root CAs for agents: only the configured agent CA.
package linux

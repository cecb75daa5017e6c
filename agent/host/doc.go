// Package host connects `warden agent` to a real Linux gateway: the
// agent/netfilter quarantine (iptables or nftables) and conntrack flow
// killing, agent/capture's volatile evidence, tunnel links over netlink,
// WireGuard devices, strongSwan security associations and whitelisted
// commands over VICI (messages in the internal/charon wire form), the
// hardened baseline and apt patching, each behind the agent's seams.
//
// It owns only these adapters. It must not decide anything (package agent
// does), must not run a shell, must not import a provider or anything of
// the controller, and acts on the network namespace of the thread that
// built each adapter, like the firewall backends it wraps.
package host

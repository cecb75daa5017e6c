// Package host connects `warden agent` to a real Linux gateway: the
// providers/linux quarantine firewall (iptables or nftables), conntrack flow
// killing and volatile capture behind the agent's seams, tunnel links over
// netlink, and strongSwan security associations over VICI.
//
// It owns only these adapters. It must not decide anything (package agent
// does), must not run a shell, and acts on the network namespace of the
// thread that built each adapter, like the firewall backends it wraps.
package host

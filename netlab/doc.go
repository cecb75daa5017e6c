// Package netlab builds throw-away laboratories of Linux network namespaces:
// a small "internet" with several VPN sites, an attacker's C2 server and a
// management network, so that containment can be proven with real packets.
//
// It owns the namespaces, links, addresses and routes it creates (all named
// after a caller-chosen prefix), the in-process probes and echo servers it
// runs inside them, and their teardown. It must not touch the host's own
// network namespace (no links, routes or firewall rules there), must not send
// a packet to any address outside the namespaces it created, and must not
// remove namespaces it does not own: only names "<prefix>-..." are ever
// deleted.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and, on
// Debian, the packages iproute2 (ip) and iputils-ping (ping); tests call Skip
// first, which skips with the reason when any of that is missing.
package netlab

// Package netlab builds throw-away laboratories of Linux network namespaces:
// a small "internet" with several VPN sites, an attacker's C2 server and a
// management network, so that containment can be proven with real packets.
//
// It owns the namespaces, links, addresses and routes it creates (all named
// after a caller-chosen prefix), the in-process probes, echo servers and
// relays it runs inside them, and their teardown. It must not touch the
// host's own network namespace (no links, routes or firewall rules there;
// a Relay only listens on its loopback, for a process of this host), must
// not send a packet to any address outside the namespaces it created, and
// must not remove namespaces it does not own: only names "<prefix>-..." are
// ever deleted, and only processes inside a namespace being deleted are
// killed.
//
// Named namespaces live in /run/netns, shared with `ip netns`. Before
// mounting the first one, a process makes /run/netns a shared bind mount of
// itself, as iproute2 does, under a lock file so that parallel test
// binaries do not stack two binds. Tests must create and delete named
// namespaces only through this package (New, NewNamespace): `ip netns add`
// run while a lab exists, on a host where /run/netns was not yet a mount
// point, hid the lab's namespace mounts under its bind mount, and their
// removal failed. Deleting a namespace ends the processes inside it.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and, on
// Debian, the package iproute2 (ip, for Run); Available says what is
// missing, and tests call netlabtest.Skip first, which skips with that
// reason. This package must not import `testing`: the demo links it into
// the warden binary.
package netlab

// Package linux is the OS-side provider for a Linux gateway: the quarantine
// firewall (IPv4 and IPv6, with an iptables and an nftables backend behind
// one Firewall seam) and the killing of established flows through conntrack.
//
// It owns exactly the rules it creates — the WARDEN-QUARANTINE chain and the
// jumps to it in table filter (iptables), or the table "inet warden"
// (nftables); and for the peer blocklist that keeps a revoked gateway out
// (blocklist*.go), the WARDEN-BLOCK chain and its jumps in table raw, or the
// table "inet warden_block" — and never changes or removes any other rule,
// chain or table.
// Each backend acts on the network namespace of the thread that constructed
// it, whatever thread later calls it, so a stray goroutine can never change
// the wrong namespace's firewall.
//
// It must not decide whether to quarantine (that is the controller's gate),
// must not run anything through a shell (commands are argument arrays and
// rule sets are generated text fed on stdin), and must not lock responders
// out: a spec without a management network is rejected.
//
// It also owns the volatile evidence capture (capture*.go): connections and
// listening sockets, processes with executable hashes, routes, addresses,
// firewall rules, WireGuard and strongSwan state, logged-in users and log
// tails, each artefact hashed with SHA-256. Capture only reads; it never
// records a WireGuard private or preshared key. The controller-side client
// of `warden agent` lives here too (agentclient.go), with the adapters that
// let providers/wireguard and providers/strongswan reach each gateway's
// devices through its agent (agent_tunnels.go).
package linux

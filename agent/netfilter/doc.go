// Package netfilter is the gateway's kernel packet filter as `warden agent`
// uses it: three rule sets, each behind one small interface with an
// nftables and an iptables backend that pass the same conformance suite —
// the quarantine (Quarantine: IPv4 and IPv6, input, output and forward),
// the peer blocklist that keeps a revoked gateway out (NewBlocklist) and
// the IoC blocklist that keeps out the remote addresses threat
// intelligence names (NewIOCBlocklist; the same Blocklist code over its
// own names) — and the killing of established flows through conntrack
// (KillFlows).
//
// It owns exactly the rules it creates — the WARDEN-QUARANTINE chain and
// the jumps to it in table filter (iptables), or the table "inet warden"
// (nftables); for the blocklists, the WARDEN-BLOCK and WARDEN-IOC chains
// and their jumps in table raw, or the tables "inet warden_block" and
// "inet warden_ioc" — and never changes or removes any other rule, chain
// or table. The rule sets never read or write each other's, so each may
// run on either backend.
// Each backend acts on the network namespace of the thread that
// constructed it (package agent/netns), whatever thread later calls it, so
// a stray goroutine can never change the wrong namespace's firewall.
//
// The arithmetic of prefixes (merging, splitting ranges, the normal form
// a set is compared and digested in) is package wire's, shared with the
// controller.
//
// It must not decide whether to quarantine or block (the controller does,
// and the agent keeps the record), must not run anything through a shell
// (commands are argument arrays and rule sets are generated text fed on
// stdin), and must not lock responders out: a spec without a management
// network is refused, and so is a blocklist holding the host's own
// address. It runs only on the gateway: nothing of the controller, no
// provider, is imported here.
package netfilter

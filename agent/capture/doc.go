// Package capture collects a gateway's volatile evidence for `warden agent`
// (Collect): connections and listening sockets, processes with executable
// hashes, routes, addresses and neighbours, firewall rule sets, WireGuard
// and strongSwan state, logged-in users, login history, log tails and the
// kernel's identity — each artefact (wire.Artefact) hashed with SHA-256 when
// read, plus a manifest to check a copy against later (Manifest.Verify).
//
// It also investigates (Investigate): for a window of time it reads back
// what the gateway recorded — the journal of every unit, classic log
// files, wtmp, btmp and lastlog, the conntrack table and the connections a
// quarantine ended (RecordKilledFlows) with their byte counts, interface
// and tunnel counters, dpkg and apt history, the configuration watcher's
// history of changes with their redacted diffs, files differing from the
// integrity manifest, shell histories and processes — and normalises it
// into events that point at the artefact and line they were read from,
// naming every source it could not read as a gap.
//
// It owns only the reading. It must not change anything on the gateway (no
// kernel, firewall or tunnel state), must never record a WireGuard private
// or preshared key, must not run a shell (tools are exec'd with argument
// arrays), and must not store or send what it read: the agent returns it,
// and the controller's evidence ledger keeps it. It runs only on the
// gateway: nothing of the controller, no provider, is imported here.
package capture

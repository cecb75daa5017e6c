// Package agentd is the gateway agent's composition root: from Options
// (what an operator sets on the command line) to the host's seams (the
// firewall backend, conntrack, links, strongSwan, WireGuard, the baseline,
// apt, the peer blocklist) and a serving agent.Server. Both `warden-agent`
// and its alias `warden agent` run the agent through it, so the two cannot
// drift apart.
//
// It owns the wiring and nothing else: the agent's behaviour lives in
// agent, the OS seams in agent/host. It must not print (cmd/ does), must
// not read the controller's configuration, and must not import the
// controller, a provider's simulator, netlab or `testing`: it is linked
// into the binary that runs as root on every gateway.
package agentd

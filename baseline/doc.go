// Package baseline is Warden's hardened configuration as code: YAML
// baselines of named checks (sshd, sysctl, firewall, tunnels, packages,
// integrity), evaluated against a gateway's filesystem and kernel, each
// verdict carrying the evidence it rests on (the file and line, or the
// runtime value).
//
// It owns:
//   - the baseline format (strict YAML: unknown keys and parameters that do
//     not belong to a check's type are errors naming file and line) and the
//     shipped gateway baseline (default/gateway.yaml, embedded);
//   - faithful readers of what the gateway will really do: sshd's effective
//     configuration (Include, drop-ins, first value wins, Match blocks,
//     numeric values sshd would refuse), systemd-sysctl's boot-time
//     resolution (Debian 12) next to the runtime value,
//     default firewall policies from iptables-save/nft text, listening
//     sockets from /proc/net, strongSwan proposals, dpkg's version order;
//   - the integrity manifest (Record) and drift between two reports (Diff);
//   - the one remediation it may apply by itself: sysctl values marked safe
//     (runtime value plus a drop-in), re-evaluated afterwards.
//
// It must not decide what a failure means for a gateway (the controller
// turns Diff into indicators and gates release on Report.Passed), must not
// run a shell or exec anything built from configuration text, must not put
// secrets in evidence (private keys, PSKs and password fields are only ever
// reported as present or absent), and reaches the OS only through Env: a
// filesystem Root and the RuntimeReader, FirewallReader and TunnelReader
// seams, so that tests run on fixture trees, the agent on the real system
// and `warden baseline check` on an image that is not running (OfflineEnv).
// Under a Root other than "/" it must never read the host: symlinks are
// resolved inside Root (fs.go).
package baseline

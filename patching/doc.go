// Package patching is the engine of the `patch` action: it brings Debian
// packages on one gateway up to target versions (or applies every pending
// security update) with apt-get, reads the result back from dpkg's
// database, and runs a fleet of gateways through a patch in waves — one
// canary first, verified, then the rest in waves of a configurable size,
// stopping at the first failure.
//
// It owns:
//   - Apply: non-interactive apt-get and apt-mark runs built as argument
//     arrays (never a shell), pinned versions ("name=version"), and the
//     configuration that confines apt and dpkg to a root directory, so the
//     same code patches "/" on a gateway and a throw-away root in a test;
//   - Verify: installed version ≥ target from the dpkg status database under
//     the root, plus the hooks (services up, tunnels re-established,
//     baseline passes) the caller supplies;
//   - RunWaves: the canary-first wave plan, bounded concurrency inside a
//     wave, stop at the first failure, and a report naming the gateways
//     patched, failed and not touched;
//   - PlanManifestUpdate: which entries of the integrity manifest a
//     verified patch accounts for — files the upgraded packages own (dpkg's
//     file lists) that hold exactly what dpkg recorded it installed (its
//     MD5 sums) — and which differences it does not, as a plain value the
//     agent applies.
//
// It must not decide whether to patch (the controller's gate does, after
// evidence is preserved), must not know how to reach a gateway (RunWaves
// takes Apply and Verify as functions; the agent calls Apply with root "/"),
// must not pass anything from a request through a shell, and must not
// interrupt dpkg once it has started changing a root: a half-unpacked
// package is worse than a late answer.
//
// Isolated roots. For any root other than "/", apt-get is started with
// APT_CONFIG naming a file that sets Dir to the root, so apt takes its
// sources, lists, cache, logs, locks and extended states from the root,
// and that reads no apt.conf.d at all: the host's carries DPkg hooks that
// would run on the host, and a hook in the root's would too (apt runs hooks
// with the host's shell, unchrooted). dpkg is given --root=ROOT (database
// and files under ROOT, maintainer scripts chrooted into ROOT) and --log
// under ROOT, because apt passes neither by itself and dpkg 1.21 logs to
// the host's /var/log/dpkg.log even with --root. Maintainer scripts keep
// dpkg's chroot semantics: --force-script-chrootless would run them on the
// host. Locking stays on (Debug::NoLocking is not used): the locks live in
// the root, so roots patched in parallel do not contend.
package patching

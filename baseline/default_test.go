package baseline

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// shippedCase changes a known-good gateway and says what the check must
// conclude. setup runs before the integrity manifest is recorded (so it
// does not count as tampering), tamper after.
type shippedCase struct {
	check  string
	setup  func(f *gatewayFixture)
	tamper func(f *gatewayFixture)
	want   Status
	// evidence must appear in some evidence item (source, value or
	// expected) of the check's result.
	evidence []string
	// message must appear in the result's message.
	message []string
	// alsoChanges lists other checks the change legitimately affects; every
	// other check must still pass.
	alsoChanges []string
}

func shippedCases() map[string]shippedCase {
	const dropIn = "/etc/ssh/sshd_config.d/10-hardening.conf"
	const sshdConfig = "/etc/ssh/sshd_config"
	const gwSysctl = "/etc/sysctl.d/60-gateway.conf"
	return map[string]shippedCase{
		// ------------------------------------------------------ sshd
		"root login: hardened drop-in": {check: "ssh-permit-root-login", want: StatusPass,
			evidence: []string{"/etc/ssh/sshd_config.d/10-hardening.conf:2"}},
		"root login: lower-case keyword, =, quoted value, trailing comment": {check: "ssh-permit-root-login", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(dropIn, "PermitRootLogin no", `permitrootlogin="no" # hardened`)
			}},
		"root login: unset means OpenSSH default prohibit-password": {check: "ssh-permit-root-login", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.edit(dropIn, "PermitRootLogin no\n", "") },
			evidence: []string{"OpenSSH default", "prohibit-password"}},
		"root login: a commented line does not count": {check: "ssh-permit-root-login", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "PermitRootLogin no", "#PermitRootLogin no") }},
		"root login: set twice, the first value wins": {check: "ssh-permit-root-login", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(dropIn, "PermitRootLogin no", "PermitRootLogin yes\nPermitRootLogin no")
			},
			evidence: []string{"10-hardening.conf:2", "10-hardening.conf:3 (ignored: an earlier value wins)"}},
		"root login: an earlier drop-in overrides the main file and later drop-ins": {check: "ssh-permit-root-login", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/etc/ssh/sshd_config.d/05-cloud-init.conf", "PermitRootLogin yes\n")
				f.appendTo(sshdConfig, "PermitRootLogin no\n")
			},
			evidence: []string{"/etc/ssh/sshd_config.d/05-cloud-init.conf:1"}},
		"root login: a value in the main file after the Include is ignored": {check: "ssh-permit-root-login", want: StatusPass,
			setup:    func(f *gatewayFixture) { f.appendTo(sshdConfig, "PermitRootLogin yes\n") },
			evidence: []string{"/etc/ssh/sshd_config:18 (ignored: an earlier value wins)"}},
		"root login: Include with a relative path is read from /etc/ssh": {check: "ssh-permit-root-login", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(sshdConfig, "Include /etc/ssh/sshd_config.d/*.conf", "Include local/*.conf /etc/ssh/sshd_config.d/*.conf")
				f.write("/etc/ssh/local/root.conf", "PermitRootLogin yes\n")
			},
			evidence: []string{"/etc/ssh/local/root.conf:1"}},
		"root login: Match all weakens it for everyone": {check: "ssh-permit-root-login", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.appendTo(sshdConfig, "Match all\n    PermitRootLogin yes\n") },
			evidence: []string{"inside Match all", "10-hardening.conf:2 (overridden for every connection by Match all)"}},
		"root login: Match all can also harden it for everyone": {check: "ssh-permit-root-login", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(dropIn, "PermitRootLogin no", "PermitRootLogin yes")
				f.appendTo(sshdConfig, "Match all\n    PermitRootLogin no\n")
			}},
		"root login: Match User * with one exception still weakens it": {check: "ssh-permit-root-login", want: StatusFail,
			setup: func(f *gatewayFixture) { f.appendTo(sshdConfig, "Match User *,!admin\n    PermitRootLogin yes\n") }},
		"root login: a Match for the management network only is reported, not failed": {check: "ssh-permit-root-login", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.appendTo(sshdConfig, "Match Address 10.99.0.0/24\n    PermitRootLogin prohibit-password\n")
			},
			evidence: []string{"inside Match Address 10.99.0.0/24"}},
		"root login: an Include inside a Match block stays in that block": {check: "ssh-permit-root-login", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.appendTo(sshdConfig, "Match User backup\n    Include backup.conf\n")
				f.write("/etc/ssh/backup.conf", "PermitRootLogin yes\n")
			},
			evidence: []string{"/etc/ssh/backup.conf:1 (inside Match User backup"}},

		"password auth: hardened": {check: "ssh-password-authentication", want: StatusPass},
		"password auth: unset means OpenSSH default yes": {check: "ssh-password-authentication", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "PasswordAuthentication no\n", "") }},
		"password auth: set before the Include in the main file wins": {check: "ssh-password-authentication", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(sshdConfig, "Include /etc/ssh/sshd_config.d/*.conf", "PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf")
			}},
		"password auth: Match User * weakens it": {check: "ssh-password-authentication", want: StatusFail,
			setup: func(f *gatewayFixture) { f.appendTo(sshdConfig, "Match User *\n  PasswordAuthentication yes\n") }},
		"password auth: a Match in a drop-in ends with that file": {check: "ssh-password-authentication", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(dropIn, "PasswordAuthentication no\n", "")
				f.write("/etc/ssh/sshd_config.d/20-backup.conf", "Match User backup\n    PasswordAuthentication yes\n")
				f.appendTo(sshdConfig, "PasswordAuthentication no\n")
			},
			evidence: []string{"/etc/ssh/sshd_config:18", "20-backup.conf:2 (inside Match User backup"}},

		"kbd-interactive: disabled in the main file": {check: "ssh-kbd-interactive", want: StatusPass},
		"kbd-interactive: ChallengeResponseAuthentication is the same option, first wins": {check: "ssh-kbd-interactive", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/etc/ssh/sshd_config.d/01-legacy.conf", "ChallengeResponseAuthentication yes\n")
			},
			evidence: []string{"01-legacy.conf:1"}},
		"kbd-interactive: unset means OpenSSH default yes": {check: "ssh-kbd-interactive", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(sshdConfig, "KbdInteractiveAuthentication no\n", "") }},

		"empty passwords: refused": {check: "ssh-permit-empty-passwords", want: StatusPass},
		"empty passwords: unset means OpenSSH default no": {check: "ssh-permit-empty-passwords", want: StatusPass,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "PermitEmptyPasswords no\n", "") }},
		"empty passwords: allowed": {check: "ssh-permit-empty-passwords", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "PermitEmptyPasswords no", "PermitEmptyPasswords YES") }},

		"max auth tries: 3": {check: "ssh-max-auth-tries", want: StatusPass},
		"max auth tries: 4 is the limit": {check: "ssh-max-auth-tries", want: StatusPass,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3", "MaxAuthTries 4") }},
		"max auth tries: 6": {check: "ssh-max-auth-tries", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3", "MaxAuthTries 6") }},
		"max auth tries: unset means OpenSSH default 6": {check: "ssh-max-auth-tries", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3\n", "") }},
		"max auth tries: not a number is invalid (sshd refuses to start)": {check: "ssh-max-auth-tries", want: StatusFail,
			setup:   func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3", "MaxAuthTries many") },
			message: []string{`MaxAuthTries "many"`, "is invalid", "refuses to start"}},
		"max auth tries: 0 is below the maximum but invalid": {check: "ssh-max-auth-tries", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3", "MaxAuthTries 0") },
			evidence: []string{"10-hardening.conf:5"},
			message:  []string{`MaxAuthTries "0"`, "is invalid"}},
		"max auth tries: negative is invalid (sshd refuses to start)": {check: "ssh-max-auth-tries", want: StatusFail,
			setup:   func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3", "MaxAuthTries -1") },
			message: []string{"is invalid", "refuses to start"}},
		"max auth tries: beyond INT_MAX is invalid": {check: "ssh-max-auth-tries", want: StatusFail,
			setup:   func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3", "MaxAuthTries 2147483648") },
			message: []string{"too large"}},
		"max auth tries: 1 is the smallest valid value": {check: "ssh-max-auth-tries", want: StatusPass,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "MaxAuthTries 3", "MaxAuthTries 1") }},
		"max auth tries: first value wins over a later larger one": {check: "ssh-max-auth-tries", want: StatusPass,
			setup:    func(f *gatewayFixture) { f.appendTo(sshdConfig, "MaxAuthTries 10\n") },
			evidence: []string{"/etc/ssh/sshd_config:18 (ignored: an earlier value wins)"}},
		"max auth tries: first value wins over a later smaller one": {check: "ssh-max-auth-tries", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.write("/etc/ssh/sshd_config.d/01-early.conf", "MaxAuthTries 8\n") },
			evidence: []string{"/etc/ssh/sshd_config.d/01-early.conf:1", "10-hardening.conf:5 (ignored: an earlier value wins)"}},
		"max auth tries: an ignored later line that sshd cannot parse still stops sshd": {check: "ssh-max-auth-tries", want: StatusFail,
			setup:   func(f *gatewayFixture) { f.appendTo(sshdConfig, "MaxAuthTries -3\n") },
			message: []string{`"-3" at /etc/ssh/sshd_config:18 is invalid`, "refuses to start"}},
		"max auth tries: 0 in a Match for one user is noted, not failed": {check: "ssh-max-auth-tries", want: StatusPass,
			setup:   func(f *gatewayFixture) { f.appendTo(sshdConfig, "Match User backup\n    MaxAuthTries 0\n") },
			message: []string{"set only for some connections"}},
		"max auth tries: Match all with 0 locks everyone out": {check: "ssh-max-auth-tries", want: StatusFail,
			setup:   func(f *gatewayFixture) { f.appendTo(sshdConfig, "Match all\n    MaxAuthTries 0\n") },
			message: []string{"is invalid"}},

		"ciphers: OpenSSH defaults": {check: "ssh-ciphers", want: StatusPass},
		"ciphers: -pattern removes from the defaults": {check: "ssh-ciphers", want: StatusPass,
			setup: func(f *gatewayFixture) { f.appendTo(dropIn, "Ciphers -chacha20*,aes128*\n") }},
		"ciphers: + appends CBC to the defaults": {check: "ssh-ciphers", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.appendTo(dropIn, "Ciphers +aes128-cbc\n") },
			evidence: []string{`configured "+aes128-cbc"`}},
		"ciphers: ^ puts 3DES first": {check: "ssh-ciphers", want: StatusFail,
			setup: func(f *gatewayFixture) { f.appendTo(dropIn, "Ciphers ^3des-cbc\n") }},
		"ciphers: explicit list with CBC": {check: "ssh-ciphers", want: StatusFail,
			setup: func(f *gatewayFixture) { f.appendTo(dropIn, "Ciphers aes256-ctr,aes256-cbc\n") }},
		"ciphers: not allowed inside Match (sshd refuses to start)": {check: "ssh-ciphers", want: StatusError,
			setup: func(f *gatewayFixture) { f.appendTo(sshdConfig, "Match User backup\n  Ciphers aes256-ctr\n") }},

		"macs: explicit encrypt-then-MAC list": {check: "ssh-macs", want: StatusPass},
		"macs: OpenSSH defaults include SHA-1 and 64-bit tags": {check: "ssh-macs", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.edit(dropIn, "MACs ", "#MACs ") },
			evidence: []string{"OpenSSH 9.2 default"}},
		"macs: -patterns leave only the allowed ones": {check: "ssh-macs", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(dropIn, "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com",
					"MACs -umac-64*,*sha1*,hmac-sha2-256,hmac-sha2-512,umac-128@openssh.com")
			}},
		"macs: + adds MD5": {check: "ssh-macs", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(dropIn, "MACs hmac-sha2-512-etm@openssh.com", "MACs +hmac-md5,hmac-sha2-512-etm@openssh.com")
			}},

		"kex: hardened list": {check: "ssh-kex", want: StatusPass},
		"kex: OpenSSH defaults include NIST curves and group14": {check: "ssh-kex", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(dropIn, "KexAlgorithms ", "# KexAlgorithms ") }},
		"kex: + brings back group1-sha1": {check: "ssh-kex", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(dropIn, "KexAlgorithms ", "KexAlgorithms +diffie-hellman-group1-sha1,")
			}},

		// ---------------------------------------------------- sysctl
		"ip_forward: on at runtime and at boot": {check: "sysctl-ip-forward", want: StatusPass,
			evidence: []string{"runtime /proc/sys/net/ipv4/ip_forward", "/etc/sysctl.d/60-gateway.conf:2"}},
		"ip_forward: file right, runtime wrong": {check: "sysctl-ip-forward", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.setRuntime("net.ipv4.ip_forward", "0") },
			evidence: []string{"runtime /proc/sys/net/ipv4/ip_forward", "/etc/sysctl.d/60-gateway.conf:2"}},
		"ip_forward: runtime right, file wrong": {check: "sysctl-ip-forward", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.edit(gwSysctl, "net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0") },
			evidence: []string{"/etc/sysctl.d/60-gateway.conf:2"}},
		"ip_forward: runtime right, never persisted": {check: "sysctl-ip-forward", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "") },
			evidence: []string{"not set (the kernel default applies at boot)"}},
		"ip_forward: /etc masks a /usr/lib file of the same name": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) { f.write("/usr/lib/sysctl.d/60-gateway.conf", "net.ipv4.ip_forward = 0\n") }},
		"ip_forward: an /etc file of the same name hides the /usr/lib setting": {check: "sysctl-ip-forward", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.write("/usr/lib/sysctl.d/70-forward.conf", "net.ipv4.ip_forward = 1\n")
				f.write("/etc/sysctl.d/70-forward.conf", "# forwarding managed elsewhere\n")
			}},
		"ip_forward: a vendor file in /usr/lib is enough": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.write("/usr/lib/sysctl.d/70-forward.conf", "net.ipv4.ip_forward = 1\n")
			},
			evidence: []string{"/usr/lib/sysctl.d/70-forward.conf:1"}},
		"ip_forward: a symlink to /dev/null masks the name": {check: "sysctl-ip-forward", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.write("/usr/lib/sysctl.d/70-forward.conf", "net.ipv4.ip_forward = 1\n")
				f.symlink("/dev/null", "/etc/sysctl.d/70-forward.conf")
			}},
		"ip_forward: a later file name wins": {check: "sysctl-ip-forward", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.write("/run/sysctl.d/90-temp.conf", "-net.ipv4.ip_forward = 0\n") },
			evidence: []string{"/run/sysctl.d/90-temp.conf:1"}},
		"ip_forward: sysctl.conf is not read at boot when not linked from sysctl.d": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.remove("/etc/sysctl.d/99-sysctl.conf")
				f.appendTo("/etc/sysctl.conf", "net.ipv4.ip_forward=0\n")
			},
			evidence: []string{"/etc/sysctl.d/60-gateway.conf:2"}},
		"ip_forward: set only in an unlinked sysctl.conf is not persisted": {check: "sysctl-ip-forward", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.remove("/etc/sysctl.d/99-sysctl.conf")
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.appendTo("/etc/sysctl.conf", "net.ipv4.ip_forward=1\n")
			},
			evidence: []string{notSetAtBoot}},
		"ip_forward: set in sysctl.conf, read through the 99-sysctl.conf link": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.appendTo("/etc/sysctl.conf", "net.ipv4.ip_forward=1\n")
			},
			evidence: []string{"/etc/sysctl.conf:6 (through /etc/sysctl.d/99-sysctl.conf)"}},
		"ip_forward: sysctl.conf through the link comes after 60-gateway.conf": {check: "sysctl-ip-forward", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.appendTo("/etc/sysctl.conf", "net.ipv4.ip_forward=0\n") },
			evidence: []string{"/etc/sysctl.conf:6 (through /etc/sysctl.d/99-sysctl.conf)", "/etc/sysctl.d/60-gateway.conf:2 (replaced by /etc/sysctl.conf:6"}},
		"ip_forward: a 99-sysctl.conf link to a missing sysctl.conf is skipped": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) { f.remove("/etc/sysctl.conf") }},
		"ip_forward: an exclusion after the assignment leaves it unset at boot": {check: "sysctl-ip-forward", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.write("/usr/lib/sysctl.d/70-unset.conf", "-net.ipv4.ip_forward\n") },
			evidence: []string{"/usr/lib/sysctl.d/70-unset.conf:1 (excluded from globs; no value)"}},
		"ip_forward: an empty /etc file masks the vendor file": {check: "sysctl-ip-forward", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.write("/usr/lib/sysctl.d/70-forward.conf", "net.ipv4.ip_forward = 1\n")
				f.write("/etc/sysctl.d/70-forward.conf", "")
			}},
		"ip_forward: /run overrides /usr/local/lib and /usr/lib of the same name": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.write("/usr/lib/sysctl.d/70-forward.conf", "net.ipv4.ip_forward = 0\n")
				f.write("/usr/local/lib/sysctl.d/70-forward.conf", "net.ipv4.ip_forward = 0\n")
				f.write("/run/sysctl.d/70-forward.conf", "net.ipv4.ip_forward = 1\n")
			},
			evidence: []string{"/run/sysctl.d/70-forward.conf:1"}},
		"ip_forward: a vendor file in /lib (non-merged /usr) is read last of its name": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.write("/lib/sysctl.d/60-gateway.conf", "net.ipv4.ip_forward = 0\n")
				f.write("/lib/sysctl.d/80-forward.conf", "net.ipv4.ip_forward = 1\n")
			},
			evidence: []string{"/lib/sysctl.d/80-forward.conf:1"}},
		"ip_forward: a drop-in symlinked to a file inside the image is followed": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.ip_forward = 1\n", "")
				f.write("/usr/share/gateway/forward.conf", "net.ipv4.ip_forward = 1\n")
				f.symlink("/usr/share/gateway/forward.conf", "/etc/sysctl.d/70-forward.conf")
			},
			evidence: []string{"/usr/share/gateway/forward.conf:1 (through /etc/sysctl.d/70-forward.conf)"}},
		"ip_forward: sysctl.conf linked as 99-sysctl.conf is applied at that place": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.appendTo("/etc/sysctl.conf", "net.ipv4.ip_forward=0\n")
				f.write("/etc/sysctl.d/99-zz-router.conf", "net.ipv4.ip_forward=1\n")
			},
			evidence: []string{"/etc/sysctl.d/99-zz-router.conf:1"}},
		"ip_forward: slash-separated key": {check: "sysctl-ip-forward", want: StatusPass,
			setup: func(f *gatewayFixture) { f.edit(gwSysctl, "net.ipv4.ip_forward = 1", "net/ipv4/ip_forward=1") }},

		"rp_filter: loose": {check: "sysctl-rp-filter", want: StatusPass},
		"rp_filter: strict at runtime and boot": {check: "sysctl-rp-filter", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.conf.all.rp_filter = 2", "net.ipv4.conf.all.rp_filter = 1")
				f.setRuntime("net.ipv4.conf.all.rp_filter", "1")
			}},
		"rp_filter: off at runtime": {check: "sysctl-rp-filter", want: StatusFail,
			setup: func(f *gatewayFixture) { f.setRuntime("net.ipv4.conf.all.rp_filter", "0") }},
		"rp_filter: runtime strict differs from boot loose": {check: "sysctl-rp-filter", want: StatusFail,
			setup: func(f *gatewayFixture) { f.setRuntime("net.ipv4.conf.default.rp_filter", "1") }},
		"rp_filter: an explicit key beats a later glob": {check: "sysctl-rp-filter", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.write("/usr/lib/sysctl.d/99-zz-glob.conf", "net.ipv4.conf.*.rp_filter = 0\n")
			}},
		"rp_filter: a glob excluded for the all key leaves it unset": {check: "sysctl-rp-filter", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.conf.all.rp_filter = 2\nnet.ipv4.conf.default.rp_filter = 2\n", "")
				f.write("/usr/lib/sysctl.d/50-rp.conf", "net.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n")
			},
			evidence: []string{"/usr/lib/sysctl.d/50-rp.conf:2 (excluded from globs; no value)", "/usr/lib/sysctl.d/50-rp.conf:1 (glob net/ipv4/conf/*/rp_filter)"}},
		"rp_filter: a glob restated with the same value keeps its earlier place": {check: "sysctl-rp-filter", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.conf.all.rp_filter = 2\nnet.ipv4.conf.default.rp_filter = 2\n", "")
				f.write("/usr/lib/sysctl.d/10-a.conf", "net.ipv4.conf.*.rp_filter = 2\n")
				f.write("/usr/lib/sysctl.d/20-b.conf", "net.ipv4.conf.a*.rp_filter = 0\n")
				f.write("/etc/sysctl.d/30-c.conf", "net.ipv4.conf.*.rp_filter = 2\n")
			},
			evidence: []string{"/usr/lib/sysctl.d/20-b.conf:1 (glob net/ipv4/conf/a*/rp_filter)"}},
		"rp_filter: a leading slash makes the key literal, not net.ipv4...": {check: "sysctl-rp-filter", want: StatusPass,
			setup: func(f *gatewayFixture) { f.write("/etc/sysctl.d/90-x.conf", "/net.ipv4.conf.all.rp_filter = 0\n") }},
		"rp_filter: a slashed key keeps the dot of a VLAN interface": {check: "sysctl-rp-filter", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.write("/etc/sysctl.d/90-vlan.conf", "net/ipv4/conf/eth0.100/rp_filter = 0\nnet.ipv4.conf.eth0/100.rp_filter = 0\n")
			}},
		"rp_filter: a glob applies where nothing explicit is set": {check: "sysctl-rp-filter", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.conf.all.rp_filter = 2\nnet.ipv4.conf.default.rp_filter = 2\n", "")
				f.write("/usr/lib/sysctl.d/50-default.conf", "net.ipv4.conf.*.rp_filter = 0\n")
			},
			evidence: []string{"/usr/lib/sysctl.d/50-default.conf:1"}},

		"accept_redirects: off": {check: "sysctl-accept-redirects", want: StatusPass},
		"accept_redirects: IPv6 disabled, its keys are skipped": {check: "sysctl-accept-redirects", want: StatusPass,
			setup:    func(f *gatewayFixture) { f.remove("/proc/sys/net/ipv6") },
			evidence: []string{"absent (not supported by this kernel)"}},
		"accept_redirects: an unlinked sysctl.conf turning them on is not read": {check: "sysctl-accept-redirects", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.remove("/etc/sysctl.d/99-sysctl.conf")
				f.appendTo("/etc/sysctl.conf", "net.ipv6.conf.all.accept_redirects = 1\n")
			}},
		"accept_redirects: a vendor file masked by /dev/null no longer sets them": {check: "sysctl-accept-redirects", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv6.conf.all.accept_redirects = 0\nnet.ipv6.conf.default.accept_redirects = 0\n", "")
				f.write("/usr/lib/sysctl.d/10-ipv6.conf", "net.ipv6.conf.all.accept_redirects = 0\nnet.ipv6.conf.default.accept_redirects = 0\n")
				f.symlink("../../dev/null", "/etc/sysctl.d/10-ipv6.conf")
			},
			evidence: []string{notSetAtBoot}},
		"accept_redirects: IPv6 default accepts at runtime": {check: "sysctl-accept-redirects", want: StatusFail,
			setup: func(f *gatewayFixture) { f.setRuntime("net.ipv6.conf.default.accept_redirects", "1") }},

		"send_redirects: off": {check: "sysctl-send-redirects", want: StatusPass},
		"send_redirects: a later name in /usr/lib wins over an earlier name in /etc": {check: "sysctl-send-redirects", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/usr/lib/sysctl.d/99-zzz-vendor.conf", "net.ipv4.conf.default.send_redirects = 1\n")
			},
			evidence: []string{"/usr/lib/sysctl.d/99-zzz-vendor.conf:1"}},
		"send_redirects: ; comments are ignored; restating the same value keeps the first source": {check: "sysctl-send-redirects", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.write("/etc/sysctl.d/90-x.conf", "; net.ipv4.conf.all.send_redirects = 1\n  -net.ipv4.conf.all.send_redirects   =   0  \nnot an assignment\n")
			},
			evidence: []string{"/etc/sysctl.d/60-gateway.conf:9"}},
		"send_redirects: on at runtime": {check: "sysctl-send-redirects", want: StatusFail,
			setup: func(f *gatewayFixture) { f.setRuntime("net.ipv4.conf.all.send_redirects", "1") }},

		"accept_source_route: kernel default, not persisted, is fine": {check: "sysctl-accept-source-route", want: StatusPass},
		"accept_source_route: an unlinked sysctl.conf turning it on is not read": {check: "sysctl-accept-source-route", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.remove("/etc/sysctl.d/99-sysctl.conf")
				f.appendTo("/etc/sysctl.conf", "net.ipv4.conf.all.accept_source_route = 1\n")
			}},
		"accept_source_route: turned on by sysctl.conf through the link": {check: "sysctl-accept-source-route", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.appendTo("/etc/sysctl.conf", "net.ipv4.conf.all.accept_source_route = 1\n") },
			evidence: []string{"/etc/sysctl.conf:6 (through /etc/sysctl.d/99-sysctl.conf)"}},
		"accept_source_route: turned on at runtime": {check: "sysctl-accept-source-route", want: StatusFail,
			setup: func(f *gatewayFixture) { f.setRuntime("net.ipv4.conf.all.accept_source_route", "1") }},

		"syncookies: on": {check: "sysctl-tcp-syncookies", want: StatusPass},
		"syncookies: off at runtime": {check: "sysctl-tcp-syncookies", want: StatusFail,
			setup: func(f *gatewayFixture) { f.setRuntime("net.ipv4.tcp_syncookies", "0") }},
		"syncookies: an exclusion in a later file cancels an earlier assignment": {check: "sysctl-tcp-syncookies", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.write("/usr/lib/sysctl.d/10-vendor.conf", "net.ipv4.tcp_syncookies = 0\n")
				f.write("/etc/sysctl.d/20-local.conf", "-net.ipv4.tcp_syncookies\n")
			},
			evidence: []string{"/usr/lib/sysctl.d/10-vendor.conf:1 (replaced by /etc/sysctl.d/20-local.conf:1)"}},
		"syncookies: an ignore-errors assignment still sets the value": {check: "sysctl-tcp-syncookies", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.write("/etc/sysctl.d/20-local.conf", "-net.ipv4.tcp_syncookies = 0\n") },
			evidence: []string{"/etc/sysctl.d/20-local.conf:1"}},
		"syncookies: off in a boot file while on at runtime": {check: "sysctl-tcp-syncookies", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.appendTo(gwSysctl, "net.ipv4.tcp_syncookies = 0\n") },
			evidence: []string{"/etc/sysctl.d/60-gateway.conf:13"}},

		"log_martians: on": {check: "sysctl-log-martians", want: StatusPass},
		"log_martians: set by a glob only": {check: "sysctl-log-martians", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit(gwSysctl, "net.ipv4.conf.all.log_martians = 1\nnet.ipv4.conf.default.log_martians = 1\n", "")
				f.write("/etc/sysctl.d/70-martians.conf", "net.ipv4.conf.*.log_martians = 1\n")
			},
			evidence: []string{"/etc/sysctl.d/70-martians.conf:1 (glob net/ipv4/conf/*/log_martians)"}},
		"log_martians: the last assignment across files wins": {check: "sysctl-log-martians", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/usr/lib/sysctl.d/70-a.conf", "net.ipv4.conf.all.log_martians = 1\n")
				f.write("/run/sysctl.d/80-b.conf", "net.ipv4.conf.all.log_martians = 0\n")
			},
			evidence: []string{"/run/sysctl.d/80-b.conf:1"}},
		"log_martians: on at runtime only": {check: "sysctl-log-martians", want: StatusFail,
			setup: func(f *gatewayFixture) { f.edit(gwSysctl, "net.ipv4.conf.default.log_martians = 1\n", "") }},

		// -------------------------------------------------- firewall
		"policies: DROP for both families": {check: "fw-default-policy", want: StatusPass,
			evidence: []string{"iptables-save:3", "ip6tables-save:4"}},
		"policies: IPv4 INPUT ACCEPT": {check: "fw-default-policy", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.rulesets[0].Text = iptablesSave("ACCEPT", "DROP", "-A INPUT -i lo -j ACCEPT\n")
			},
			evidence: []string{"chain INPUT policy accept"}},
		"policies: IPv6 FORWARD left open": {check: "fw-default-policy", want: StatusFail,
			setup: func(f *gatewayFixture) { f.rulesets[1].Text = iptablesSave("DROP", "ACCEPT", "") }},
		"policies: ACCEPT with an unconditional final DROP rule": {check: "fw-default-policy", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.rulesets[0].Text = iptablesSave("ACCEPT", "ACCEPT", "-A INPUT -i lo -j ACCEPT\n-A INPUT -m comment --comment \"default deny\" -j DROP\n-A FORWARD -j REJECT --reject-with icmp-port-unreachable\n")
			},
			evidence: []string{"then a rule drops everything left (iptables-save:7)"}},
		"policies: a conditional DROP is not a default": {check: "fw-default-policy", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.rulesets[0].Text = iptablesSave("ACCEPT", "DROP", "-A INPUT -p tcp --dport 23 -j DROP\n")
			}},
		"policies: nftables inet table with drop policies": {check: "fw-default-policy", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.rulesets = StaticRulesets{{Format: FormatNFT, Source: "nft list ruleset", Text: nftRuleset("drop", "drop")}}
			},
			evidence: []string{"nft list ruleset:3"}},
		"policies: nftables input accepts": {check: "fw-default-policy", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.rulesets = StaticRulesets{{Format: FormatNFT, Source: "nft list ruleset", Text: nftRuleset("accept", "drop")}}
			}},
		"policies: a second nftables base chain that drops wins over accepting iptables-nft chains": {check: "fw-default-policy", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.rulesets = StaticRulesets{
					{Format: FormatIPTables, Source: "iptables-save", Text: iptablesSave("ACCEPT", "ACCEPT", "")},
					{Format: FormatIP6Tables, Source: "ip6tables-save", Text: iptablesSave("ACCEPT", "ACCEPT", "")},
					{Format: FormatNFT, Source: "nft list ruleset", Text: nftRuleset("accept", "accept") + nftWardenTable},
				}
			}},
		"policies: no IPv6 rule set read": {check: "fw-default-policy", want: StatusError,
			setup: func(f *gatewayFixture) { f.rulesets = f.rulesets[:1] }},

		"listeners: SSH on the management address": {check: "fw-listeners", want: StatusPass,
			evidence: []string{"tcp 10.99.0.5:22"}},
		"listeners: SSH on 0.0.0.0": {check: "fw-listeners", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.setSocket("tcp", "10.99.0.5:22", "0.0.0.0:22") },
			evidence: []string{"tcp 0.0.0.0:22"}},
		"listeners: SSH on the IPv6 wildcard": {check: "fw-listeners", want: StatusFail,
			setup: func(f *gatewayFixture) { f.sockets = append(f.sockets, socket{"tcp6", "[::]:22", "[::]:0", tcpListen}) }},
		"listeners: SSH on the public address": {check: "fw-listeners", want: StatusFail,
			setup: func(f *gatewayFixture) { f.setSocket("tcp", "10.99.0.5:22", "198.51.100.1:22") }},
		"listeners: an unexpected backdoor port": {check: "fw-listeners", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.sockets = append(f.sockets, socket{"tcp", "0.0.0.0:4444", "0.0.0.0:0", tcpListen})
			}},
		"listeners: loopback-only services are fine": {check: "fw-listeners", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.sockets = append(f.sockets, socket{"tcp6", "[::1]:631", "[::]:0", tcpListen})
			}},
		"listeners: no management network configured": {check: "fw-listeners", want: StatusFail,
			setup: func(f *gatewayFixture) { f.mgmt = nil }},

		// --------------------------------------------------- tunnels
		"proposals: AES-GCM with ECP-384": {check: "ipsec-proposals", want: StatusPass,
			evidence: []string{"/etc/swanctl/conf.d/site-b.conf:4", "/etc/swanctl/conf.d/site-b.conf:19"}},
		"proposals: aes128-sha1-modp1024": {check: "ipsec-proposals", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/etc/swanctl/conf.d/site-b.conf", "proposals = aes256gcm16-prfsha384-ecp384", "proposals = aes256gcm16-prfsha384-ecp384, aes128-sha1-modp1024")
			}},
		"proposals: 3DES in ESP": {check: "ipsec-proposals", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/etc/swanctl/conf.d/site-b.conf", "esp_proposals = aes256gcm16-ecp384", "esp_proposals = 3des-sha256-modp2048")
			}},
		"proposals: null encryption": {check: "ipsec-proposals", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/etc/swanctl/conf.d/site-b.conf", "esp_proposals = aes256gcm16-ecp384", `esp_proposals = "null-sha256"`)
			}},
		"proposals: strongSwan defaults": {check: "ipsec-proposals", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit("/etc/swanctl/conf.d/site-b.conf", "proposals = aes256gcm16-prfsha384-ecp384", "proposals = default")
			}},
		"proposals: a later file overrides a strong proposal with a weak one": {check: "ipsec-proposals", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/etc/swanctl/conf.d/zz-override.conf", "connections {\n  site-b {\n    proposals = aes128-sha256-modp1536\n  }\n}\n")
			},
			evidence: []string{"/etc/swanctl/conf.d/zz-override.conf:3"}},
		"proposals: legacy ipsec.conf with a strict weak proposal": {check: "ipsec-proposals", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/etc/ipsec.conf", "config setup\n\tcharondebug=\"ike 1\"\n\nconn site-c\n\tleft=%defaultroute\n\tright=203.0.113.3\n\tike=aes128-sha1-modp1024!\n\tesp=aes128gcm16!\n\tauto=start\n")
			},
			evidence: []string{"/etc/ipsec.conf:7"}},
		"proposals: legacy ipsec.conf inheriting a weak %default": {check: "ipsec-proposals", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/etc/ipsec.conf", "conn %default\n\tesp=aes128-md5\n\nconn site-c\n\tright=203.0.113.3\n\tauto=start\n")
			}},

		"aggressive: not set": {check: "ipsec-aggressive-mode", want: StatusPass},
		"aggressive: explicitly off": {check: "ipsec-aggressive-mode", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.edit("/etc/swanctl/conf.d/site-b.conf", "version = 2", "version = 1\n      aggressive = no")
			}},
		"aggressive: on": {check: "ipsec-aggressive-mode", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/etc/swanctl/conf.d/site-b.conf", "version = 2", "version = 1\n      aggressive = yes")
			},
			evidence: []string{"aggressive = yes"}},
		"aggressive: on in legacy ipsec.conf": {check: "ipsec-aggressive-mode", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.write("/etc/ipsec.conf", "conn site-c\n\tkeyexchange=ikev1\n\taggressive=yes\n")
			}},

		"wireguard key age: 10 days": {check: "wireguard-key-age", want: StatusPass,
			evidence: []string{"modification time of /etc/wireguard/wg0.conf"}},
		"wireguard key age: 200 days": {check: "wireguard-key-age", want: StatusFail,
			setup:    func(f *gatewayFixture) { f.setMtime("/etc/wireguard/wg0.conf", fixtureNow.Add(-200*24*time.Hour)) },
			evidence: []string{"age 200d"}},
		"wireguard key age: from rotation records": {check: "wireguard-key-age", want: StatusPass,
			setup: func(f *gatewayFixture) {
				f.tunnels = StaticWireGuard{{Name: "wg0", KeyCreated: fixtureNow.Add(-179 * 24 * time.Hour), KeySource: "rotation record", Peers: []WireGuardPeer{{PublicKey: "p", HasPresharedKey: true}}}}
			}},
		"wireguard key age: unknown": {check: "wireguard-key-age", want: StatusError,
			setup: func(f *gatewayFixture) {
				f.tunnels = StaticWireGuard{{Name: "wg0", Peers: []WireGuardPeer{{PublicKey: "p", HasPresharedKey: true}}}}
			}},

		"wireguard psk: present": {check: "wireguard-psk", want: StatusPass},
		"wireguard psk: a peer without one": {check: "wireguard-psk", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.appendTo("/etc/wireguard/wg0.conf", "\n[Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\nAllowedIPs = 10.4.0.0/16\n")
				f.setMtime("/etc/wireguard/wg0.conf", fixtureNow.Add(-10*24*time.Hour))
			},
			evidence: []string{"/etc/wireguard/wg0.conf:12"}},
		"wireguard psk: an all-zero key is no key": {check: "wireguard-psk", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/etc/wireguard/wg0.conf", "PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=", "PresharedKey = AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
				f.setMtime("/etc/wireguard/wg0.conf", fixtureNow.Add(-10*24*time.Hour))
			}},

		// -------------------------------------------------- packages
		"packages: patched, sudo removed (config files only)": {check: "packages-security-minimums", want: StatusPass,
			evidence: []string{"openssh-server:amd64 1:9.2p1-2+deb12u6", "sudo not installed", "libssl3:amd64 3.0.19-1~deb12u2"}},
		"packages: openssh-server one security update behind": {check: "packages-security-minimums", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/var/lib/dpkg/status", "Version: 1:9.2p1-2+deb12u6", "Version: 1:9.2p1-2+deb12u2")
			}},
		"packages: a higher upstream without the epoch is older": {check: "packages-security-minimums", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/var/lib/dpkg/status", "Version: 1:9.2p1-2+deb12u6", "Version: 9.9p1-1")
			}},
		"packages: a ~ backport revision sorts before the release": {check: "packages-security-minimums", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.edit("/var/lib/dpkg/status", "Version: 3.0.19-1~deb12u2", "Version: 3.0.15-1~deb11u1")
			}},
		"packages: a Multi-Arch instance left behind": {check: "packages-security-minimums", want: StatusFail,
			setup: func(f *gatewayFixture) {
				f.appendTo("/var/lib/dpkg/status", dpkgStanza("libssl3", "i386", "3.0.11-1~deb12u2", "install ok installed"))
			},
			evidence: []string{"libssl3:i386 3.0.11-1~deb12u2"}},

		// ------------------------------------------------- integrity
		"uid0: root only": {check: "integrity-uid0", want: StatusPass},
		"uid0: an extra UID-0 account": {check: "integrity-uid0", want: StatusFail,
			tamper: func(f *gatewayFixture) {
				f.appendTo("/etc/passwd", "toor:x:0:0::/root:/bin/bash\n")
			},
			evidence: []string{"/etc/passwd:7"}},

		"authorized_keys: unchanged": {check: "integrity-authorized-keys", want: StatusPass},
		"authorized_keys: a key added": {check: "integrity-authorized-keys", want: StatusFail,
			tamper: func(f *gatewayFixture) {
				f.appendTo("/root/.ssh/authorized_keys", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCattacker attacker@evil\n")
			},
			evidence: []string{"/root/.ssh/authorized_keys"}},
		"authorized_keys: an authorized_keys2 appeared": {check: "integrity-authorized-keys", want: StatusFail,
			tamper: func(f *gatewayFixture) {
				f.write("/root/.ssh/authorized_keys2", "ssh-ed25519 AAAAC3attacker\n")
			},
			evidence: []string{"absent (not present when recorded)"}},
		"authorized_keys: root's home moved to a directory with keys": {check: "integrity-authorized-keys", want: StatusFail,
			tamper: func(f *gatewayFixture) {
				f.edit("/etc/passwd", "root:x:0:0:root:/root:", "root:x:0:0:root:/var/tmp/.r:")
				f.write("/var/tmp/.r/.ssh/authorized_keys", "ssh-ed25519 AAAAC3attacker\n")
			},
			evidence: []string{"/var/tmp/.r/.ssh/authorized_keys"}},

		"binaries: unchanged": {check: "integrity-binaries", want: StatusPass},
		"binaries: sshd replaced": {check: "integrity-binaries", want: StatusFail,
			tamper:   func(f *gatewayFixture) { f.write("/usr/sbin/sshd", "ELF sshd with a backdoor") },
			evidence: []string{"sha256:" + sha256Hex("ELF sshd 9.2p1"), "sha256:" + sha256Hex("ELF sshd with a backdoor")}},
		"binaries: passwd became setuid": {check: "integrity-binaries", want: StatusFail,
			tamper:   func(f *gatewayFixture) { f.chmod("/usr/bin/passwd", 0o755|os.ModeSetuid) },
			evidence: []string{"mode 4755"}},
		"binaries: charon deleted": {check: "integrity-binaries", want: StatusFail,
			tamper: func(f *gatewayFixture) { f.remove("/usr/lib/ipsec/charon") }},
		"binaries: a PAM module appears under the glob": {check: "integrity-binaries", want: StatusFail,
			tamper: func(f *gatewayFixture) { f.write("/usr/lib/i386-linux-gnu/security/pam_unix.so", "ELF evil") }},

		"configs: unchanged": {check: "integrity-configs", want: StatusPass},
		"configs: /etc/ld.so.preload appears": {check: "integrity-configs", want: StatusFail,
			tamper:   func(f *gatewayFixture) { f.write("/etc/ld.so.preload", "/lib/libhide.so\n") },
			evidence: []string{"/etc/ld.so.preload"}},
		"configs: a new sudoers drop-in": {check: "integrity-configs", want: StatusFail,
			tamper: func(f *gatewayFixture) { f.write("/etc/sudoers.d/90-x", "x ALL=(ALL) NOPASSWD: ALL\n") }},
		"configs: sshd_config edited after recording": {check: "integrity-configs", want: StatusFail,
			tamper: func(f *gatewayFixture) { f.appendTo("/etc/ssh/sshd_config", "# harmless comment\n") }},
	}
}

const nftWardenTable = `table inet warden_baseline {
	chain input {
		type filter hook input priority filter + 10; policy accept;
		ct state established,related accept
		counter packets 12 bytes 3400 drop
	}
	chain forward {
		type filter hook forward priority filter + 10; policy drop;
	}
}
`

func nftRuleset(input, forward string) string {
	return `table inet filter {
	chain input {
		type filter hook input priority filter; policy ` + input + `;
		iif "lo" accept
		ct state established,related accept
		udp dport { 500, 4500, 51820 } accept
		ip saddr 10.99.0.0/24 tcp dport 22 accept comment "management ssh"
	}
	chain forward {
		type filter hook forward priority filter; policy ` + forward + `;
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
}
table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" masquerade
	}
}
`
}

func TestShippedBaselineGoodGateway(t *testing.T) {
	b, _, rep := evaluateGood(t)
	for _, r := range rep.Results {
		if r.Status != StatusPass {
			t.Errorf("%s: %s: %s %+v", r.ID, r.Status, r.Message, r.Evidence)
		}
		if len(r.Evidence) == 0 {
			t.Errorf("%s: a verdict without evidence", r.ID)
		}
	}
	if !rep.Passed || rep.Counts.Pass != len(b.Checks) {
		t.Errorf("Passed=%v counts=%+v, want all %d passing", rep.Passed, rep.Counts, len(b.Checks))
	}
	if !rep.Started.Equal(fixtureNow) || !rep.Finished.Equal(fixtureNow) {
		t.Errorf("report times %v..%v do not come from the injected clock", rep.Started, rep.Finished)
	}
}

// TestShippedChecks runs, for every check of the shipped baseline, passing
// and failing gateways including the tricky forms, and proves that the
// change affects only the check under test.
func TestShippedChecks(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range shippedCases() {
		t.Run(name, func(t *testing.T) {
			if _, ok := b.Check(tc.check); !ok {
				t.Fatalf("no shipped check %q", tc.check)
			}
			f := newGatewayFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			f.record(b)
			if tc.tamper != nil {
				tc.tamper(f)
			}
			rep, err := b.Evaluate(t.Context(), f.env())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				if r.ID == tc.check {
					if r.Status != tc.want {
						t.Errorf("%s = %s, want %s: %s\nevidence: %+v", r.ID, r.Status, tc.want, r.Message, r.Evidence)
					}
					if r.Message == "" {
						t.Errorf("%s: no message", r.ID)
					}
					for _, want := range tc.evidence {
						if !evidenceMentions(r.Evidence, want) {
							t.Errorf("%s: no evidence mentions %q: %+v", r.ID, want, r.Evidence)
						}
					}
					for _, want := range tc.message {
						if !strings.Contains(r.Message, want) {
							t.Errorf("%s: message %q does not say %q", r.ID, r.Message, want)
						}
					}
					continue
				}
				if r.Status != StatusPass && !slices.Contains(tc.alsoChanges, r.ID) {
					t.Errorf("side effect: %s = %s: %s", r.ID, r.Status, r.Message)
				}
			}
			if rep.Passed != (tc.want == StatusPass && len(tc.alsoChanges) == 0) {
				t.Errorf("report Passed = %v with %s %s", rep.Passed, tc.check, tc.want)
			}
		})
	}
}

// TestShippedChecksCovered is the acceptance rule: every shipped check has
// at least one passing and one failing case above.
func TestShippedChecksCovered(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[Status]int{}
	for _, tc := range shippedCases() {
		if seen[tc.check] == nil {
			seen[tc.check] = map[Status]int{}
		}
		seen[tc.check][tc.want]++
	}
	for _, c := range b.Checks {
		if seen[c.ID][StatusPass] == 0 || seen[c.ID][StatusFail] == 0 {
			t.Errorf("shipped check %s has %d passing and %d failing cases; want at least one of each", c.ID, seen[c.ID][StatusPass], seen[c.ID][StatusFail])
		}
	}
}

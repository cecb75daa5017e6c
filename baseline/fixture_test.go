package baseline

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/clock/clocktest"
)

// fixtureNow is the evaluation clock of every fixture.
var fixtureNow = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// socket is one row of a /proc/net table in a fixture.
type socket struct {
	table         string // tcp, tcp6, udp, udp6
	local, remote string // "10.99.0.5:22", "[::]:500"
	state         uint8
}

// gatewayFixture is a gateway's filesystem under a temporary root, plus
// the seams' inputs, that passes every check of the shipped baseline.
// Tests change one thing and evaluate.
type gatewayFixture struct {
	t        testing.TB
	root     string
	sockets  []socket
	rulesets StaticRulesets
	tunnels  TunnelReader
	mgmt     []netip.Prefix
	recorded *Manifest
}

const (
	goodSSHDConfig = `# This is the sshd server system-wide configuration file.  See
# sshd_config(5) for more information.

Include /etc/ssh/sshd_config.d/*.conf

#PermitRootLogin prohibit-password
#MaxAuthTries 6

# Change to yes to enable challenge-response passwords (beware issues with
# some PAM modules and threads)
KbdInteractiveAuthentication no

UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem	sftp	/usr/lib/openssh/sftp-server
`
	goodSSHDDropIn = `# Managed by the gateway build.
PermitRootLogin no
PasswordAuthentication no
PermitEmptyPasswords no
MaxAuthTries 3
ListenAddress 10.99.0.5
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com
KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group16-sha512
`
	goodSysctl = `# Gateway kernel settings.
net.ipv4.ip_forward = 1
net.ipv4.conf.all.rp_filter = 2
net.ipv4.conf.default.rp_filter = 2
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv6.conf.all.accept_redirects = 0
net.ipv6.conf.default.accept_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.default.send_redirects = 0
net.ipv4.conf.all.log_martians = 1
net.ipv4.conf.default.log_martians = 1
`
	debianSysctlConf = `#
# /etc/sysctl.conf - Configuration file for setting system variables
# See /etc/sysctl.d/ for additional system variables.
#net.ipv4.ip_forward=1
#net.ipv4.conf.all.accept_redirects = 0
`
	goodSwanctl = `# swanctl.conf: connections are in conf.d
include conf.d/*.conf
`
	goodSiteB = `connections {
   site-b {
      version = 2
      proposals = aes256gcm16-prfsha384-ecp384
      local_addrs = 198.51.100.1
      remote_addrs = 203.0.113.2
      local {
         auth = psk
         id = site-a
      }
      remote {
         auth = psk
         id = site-b
      }
      children {
         net {
            local_ts = 10.1.0.0/16
            remote_ts = 10.2.0.0/16
            esp_proposals = aes256gcm16-ecp384
            start_action = start
         }
      }
   }
}
secrets {
   ike-site-b {
      id = site-b
      secret = "0sdGhpcyBpcyBub3QgYSByZWFsIHNlY3JldA=="
   }
}
`
	goodWG = `[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
ListenPort = 51820

[Peer]
# site-c
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
PresharedKey = /UwcSPg38hW/D9Y3tcS1FOV0K1wuURMbS0sesJEP5ak=
AllowedIPs = 10.3.0.0/16
Endpoint = 203.0.113.3:51820
`
	goodPasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
admin:x:1000:1000:Gateway admin,,,:/home/admin:/bin/bash
`
)

// dpkgStanza renders one package of the dpkg status database.
func dpkgStanza(name, arch, version, status string) string {
	return fmt.Sprintf(`Package: %s
Status: %s
Priority: optional
Section: net
Installed-Size: 1234
Maintainer: Debian Maintainers <maint@example.org>
Architecture: %s
Version: %s
Depends: libc6 (>= 2.36)
Description: %s package
 A longer description that spans
 several continuation lines.

`, name, status, arch, version, name)
}

func goodDpkgStatus() string {
	var b strings.Builder
	b.WriteString(dpkgStanza("base-files", "amd64", "12.4+deb12u11", "install ok installed"))
	b.WriteString(dpkgStanza("openssh-server", "amd64", "1:9.2p1-2+deb12u6", "install ok installed"))
	b.WriteString(dpkgStanza("strongswan-charon", "amd64", "5.9.8-5+deb12u6", "install ok installed"))
	b.WriteString(dpkgStanza("libssl3", "amd64", "3.0.19-1~deb12u2", "install ok installed"))
	b.WriteString(dpkgStanza("sudo", "amd64", "1.9.13p3-1+deb12u1", "deinstall ok config-files"))
	b.WriteString(dpkgStanza("wireguard-tools", "amd64", "1.0.20210914-1+b1", "install ok installed"))
	return b.String()
}

// criticalFiles are the fixture's binaries and configs hashed by the
// integrity checks.
var criticalFiles = map[string]string{
	"/usr/sbin/sshd":              "ELF sshd 9.2p1",
	"/usr/lib/ipsec/charon":       "ELF charon 5.9.8",
	"/usr/sbin/swanctl":           "ELF swanctl 5.9.8",
	"/usr/bin/wg":                 "ELF wg",
	"/usr/sbin/nft":               "ELF nft",
	"/usr/sbin/xtables-nft-multi": "ELF xtables",
	"/usr/bin/su":                 "ELF su",
	"/usr/bin/login":              "ELF login",
	"/usr/bin/passwd":             "ELF passwd",
	"/usr/lib/x86_64-linux-gnu/security/pam_unix.so": "ELF pam_unix",
	"/etc/pam.d/sshd":            "@include common-auth\naccount required pam_nologin.so\n",
	"/etc/pam.d/common-auth":     "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\n",
	"/etc/pam.d/common-account":  "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\n",
	"/etc/sudoers":               "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
	"/etc/sudoers.d/README":      "# files in this directory are included by sudoers\n",
	"/root/.ssh/authorized_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBreakGlassKeyForTheGatewayTeamOnly0000 breakglass@ops\n",
}

// newGatewayFixture builds a gateway that passes the whole shipped baseline.
// The integrity manifest is recorded by record(), after any setup changes.
func newGatewayFixture(t testing.TB) *gatewayFixture {
	t.Helper()
	f := &gatewayFixture{
		t:    t,
		root: t.TempDir(),
		mgmt: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")},
	}
	f.write("/etc/ssh/sshd_config", goodSSHDConfig)
	f.write("/etc/ssh/sshd_config.d/10-hardening.conf", goodSSHDDropIn)

	f.write("/etc/sysctl.conf", debianSysctlConf)
	f.symlink("../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf")
	f.write("/etc/sysctl.d/60-gateway.conf", goodSysctl)
	f.write("/usr/lib/sysctl.d/50-pid-max.conf", "kernel.pid_max = 4194304\n")
	for k, v := range map[string]string{
		"net.ipv4.ip_forward":                       "1",
		"net.ipv4.conf.all.rp_filter":               "2",
		"net.ipv4.conf.default.rp_filter":           "2",
		"net.ipv4.conf.all.accept_redirects":        "0",
		"net.ipv4.conf.default.accept_redirects":    "0",
		"net.ipv6.conf.all.accept_redirects":        "0",
		"net.ipv6.conf.default.accept_redirects":    "0",
		"net.ipv4.conf.all.send_redirects":          "0",
		"net.ipv4.conf.default.send_redirects":      "0",
		"net.ipv4.conf.all.accept_source_route":     "0",
		"net.ipv4.conf.default.accept_source_route": "0",
		"net.ipv6.conf.all.accept_source_route":     "0",
		"net.ipv6.conf.default.accept_source_route": "0",
		"net.ipv4.tcp_syncookies":                   "1",
		"net.ipv4.conf.all.log_martians":            "1",
		"net.ipv4.conf.default.log_martians":        "1",
		"kernel.pid_max":                            "4194304",
	} {
		f.setRuntime(k, v)
	}

	f.sockets = []socket{
		{"tcp", "10.99.0.5:22", "0.0.0.0:0", tcpListen},
		{"tcp", "0.0.0.0:8443", "0.0.0.0:0", tcpListen},
		{"tcp", "127.0.0.1:25", "0.0.0.0:0", tcpListen},
		{"tcp", "10.99.0.5:22", "10.99.0.9:50022", 0x01}, // an SSH session, not a listener
		{"tcp6", "[::1]:25", "[::]:0", tcpListen},
		{"udp", "0.0.0.0:500", "0.0.0.0:0", udpUnconn},
		{"udp", "0.0.0.0:4500", "0.0.0.0:0", udpUnconn},
		{"udp", "0.0.0.0:51820", "0.0.0.0:0", udpUnconn},
		{"udp", "127.0.0.53:53", "0.0.0.0:0", udpUnconn},
		{"udp", "10.99.0.5:40000", "10.99.0.1:53", 0x01}, // a connected resolver socket
		{"udp6", "[::]:500", "[::]:0", udpUnconn},
		{"udp6", "[::]:4500", "[::]:0", udpUnconn},
	}
	f.rulesets = StaticRulesets{
		{Format: FormatIPTables, Source: "iptables-save", Text: iptablesSave("DROP", "DROP", "-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p udp -m multiport --dports 500,4500,51820 -j ACCEPT\n-A INPUT -s 10.99.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT\n")},
		{Format: FormatIP6Tables, Source: "ip6tables-save", Text: iptablesSave("DROP", "DROP", "-A INPUT -i lo -j ACCEPT\n")},
	}

	f.write("/etc/swanctl/swanctl.conf", goodSwanctl)
	f.write("/etc/swanctl/conf.d/site-b.conf", goodSiteB)
	f.write("/etc/wireguard/wg0.conf", goodWG)
	f.setMtime("/etc/wireguard/wg0.conf", fixtureNow.Add(-10*24*time.Hour))

	f.write("/var/lib/dpkg/status", goodDpkgStatus())
	f.write("/etc/passwd", goodPasswd)
	for p, content := range criticalFiles {
		f.write(p, content)
	}
	f.chmod("/usr/bin/passwd", 0o755)
	return f
}

func iptablesSave(input, forward, rules string) string {
	return fmt.Sprintf(`# Generated by iptables-save v1.8.9 (nf_tables) on Sun Jun  1 00:00:00 2025
*filter
:INPUT %s [0:0]
:FORWARD %s [0:0]
:OUTPUT ACCEPT [0:0]
%sCOMMIT
# Completed on Sun Jun  1 00:00:00 2025
`, input, forward, rules)
}

func (f *gatewayFixture) host(p string) string { return filepath.Join(f.root, filepath.FromSlash(p)) }

func (f *gatewayFixture) write(p, content string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(f.host(p)), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(f.host(p), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gatewayFixture) read(p string) string {
	f.t.Helper()
	b, err := os.ReadFile(f.host(p))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// edit replaces old by new in a file; old must occur.
func (f *gatewayFixture) edit(p, old, new string) {
	f.t.Helper()
	s := f.read(p)
	if !strings.Contains(s, old) {
		f.t.Fatalf("%s does not contain %q", p, old)
	}
	f.write(p, strings.Replace(s, old, new, 1))
}

func (f *gatewayFixture) appendTo(p, text string) { f.write(p, f.read(p)+text) }

func (f *gatewayFixture) remove(p string) {
	f.t.Helper()
	if err := os.RemoveAll(f.host(p)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gatewayFixture) symlink(target, p string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(f.host(p)), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(target, f.host(p)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gatewayFixture) chmod(p string, mode os.FileMode) {
	f.t.Helper()
	if err := os.Chmod(f.host(p), mode); err != nil {
		f.t.Fatal(err)
	}
}

func (f *gatewayFixture) setMtime(p string, at time.Time) {
	f.t.Helper()
	if err := os.Chtimes(f.host(p), at, at); err != nil {
		f.t.Fatal(err)
	}
}

// setRuntime writes a runtime sysctl value (dotted name).
func (f *gatewayFixture) setRuntime(key, value string) {
	f.write("/proc/sys/"+normaliseSysctlKey(key), value+"\n")
}

// setSocket replaces the local address of the first socket of a table
// bound to old.
func (f *gatewayFixture) setSocket(table, old, new string) {
	f.t.Helper()
	for i, s := range f.sockets {
		if s.table == table && s.local == old {
			f.sockets[i].local = new
			return
		}
	}
	f.t.Fatalf("no %s socket on %s", table, old)
}

// record takes the integrity manifest of the current tree.
func (f *gatewayFixture) record(b *Baseline) {
	f.t.Helper()
	m, err := b.Record(f.root)
	if err != nil {
		f.t.Fatal(err)
	}
	f.recorded = &m
}

// env writes the socket tables and returns the environment to evaluate.
func (f *gatewayFixture) env() Env {
	f.t.Helper()
	tables := map[string]*strings.Builder{}
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		tables[table] = &strings.Builder{}
		tables[table].WriteString("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	}
	for i, s := range f.sockets {
		local, remote := netip.MustParseAddrPort(s.local), netip.MustParseAddrPort(s.remote)
		fmt.Fprintf(tables[s.table], "%4d: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n",
			i, procNetAddr(local), procNetAddr(remote), s.state, 20000+i)
	}
	for table, b := range tables {
		f.write("/proc/net/"+table, b.String())
	}
	return Env{
		Root:               f.root,
		Firewall:           f.rulesets,
		Tunnels:            f.tunnels,
		Recorded:           f.recorded,
		ManagementNetworks: f.mgmt,
		Clock:              clocktest.NewFake(fixtureNow),
	}
}

// procNetAddr encodes an address the way /proc/net/{tcp,udp}[6] print it.
func procNetAddr(ap netip.AddrPort) string {
	raw := ap.Addr().AsSlice()
	var b strings.Builder
	for i := 0; i < len(raw); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(raw[i:i+4]))
	}
	return fmt.Sprintf("%s:%04X", b.String(), ap.Port())
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

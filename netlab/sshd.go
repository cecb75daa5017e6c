package netlab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// SSHDPath is where Debian's openssh-server installs the daemon (sshd must
// be started by its absolute path: it re-executes itself per connection).
const SSHDPath = "/usr/sbin/sshd"

// SSHDAvailable is Available plus sshd (Debian: openssh-server).
func SSHDAvailable() error {
	if err := Available(); err != nil {
		return err
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		return unavailable("netlab: %s missing; on Debian: apt-get install --no-install-recommends openssh-server", SSHDPath)
	}
	return nil
}

// SSHDOptions describe a gateway's sshd.
type SSHDOptions struct {
	// Dir holds the daemon's configuration, host key, authorized keys and
	// the auth log (in tests: t.TempDir()). Required.
	Dir string
	// Port is where sshd listens on the gateway's WAN addresses (default
	// 22).
	Port uint16
	// AuthorizedKeys may log in as root (public keys only: root never
	// logs in with a password, yet password attempts are answered and
	// logged as on a real gateway).
	AuthorizedKeys []ssh.PublicKey
}

// SSHD is a real OpenSSH daemon on a site's gateway, as an administrator
// reaches it. It runs in the gateway's namespace with a mount namespace of
// its own: a private /run (its privilege-separation directory and pid
// file) and an overlay on /dev whose only addition is /dev/log, a syslog
// socket the lab serves. What sshd logs there is written to AuthLog as
// rsyslog writes /var/log/auth.log ("Dec  6 03:00:01 gw-hq sshd[812]: …"),
// so a log follower reads exactly the lines a Debian gateway would have.
type SSHD struct {
	// Site is the gateway's site; Addr where sshd listens (the gateway's
	// IPv4 WAN address).
	Site string
	Addr netip.AddrPort
	// AuthLog is the file the lab's syslog appends sshd's messages to.
	AuthLog string
	// HostKey is the daemon's public host key, for a client to verify.
	HostKey ssh.PublicKey

	d      *daemon
	sock   *net.UnixConn
	done   chan struct{}
	closed sync.Once
	err    error
}

// StartSSHD starts sshd on site's gateway and returns once it listens. The
// lab's Close stops it.
func (l *Lab) StartSSHD(ctx context.Context, site string, opt SSHDOptions) (*SSHD, error) {
	s, ok := l.Site(site)
	if !ok {
		return nil, fmt.Errorf("starting sshd: unknown site %q", site)
	}
	if opt.Dir == "" {
		return nil, errors.New("starting sshd: options need a Dir")
	}
	if opt.Port == 0 {
		opt.Port = 22
	}
	dir := filepath.Join(opt.Dir, "sshd-"+site)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("starting sshd: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("starting sshd: host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, fmt.Errorf("starting sshd: host key: %w", err)
	}
	hostKey, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("starting sshd: host key: %w", err)
	}
	var keys bytes.Buffer
	for _, k := range opt.AuthorizedKeys {
		keys.Write(ssh.MarshalAuthorizedKey(k))
	}
	conf := sshdConfig(dir, opt.Port, s.Gateway)
	files := map[string][]byte{
		"ssh_host_ed25519_key": pem.EncodeToMemory(block),
		"authorized_keys":      keys.Bytes(),
		"sshd_config":          []byte(conf),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("starting sshd: %w", err)
		}
	}
	d := &SSHD{Site: site, Addr: netip.AddrPortFrom(s.Gateway.V4, opt.Port), AuthLog: filepath.Join(dir, "auth.log"),
		HostKey: hostKey, done: make(chan struct{})}
	logFile, err := os.OpenFile(d.AuthLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("starting sshd: %w", err)
	}
	out := &syncBuffer{}
	d.d, err = startDaemon(daemonSpec{
		name:       "sshd " + site,
		ns:         s.Gateway.NS,
		argv:       []string{SSHDPath, "-D", "-f", filepath.Join(dir, "sshd_config")},
		env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		privateRun: true,
		prepare: func() (err error) {
			d.sock, err = syslogSocket()
			return err
		},
		output: out,
	})
	if err != nil {
		_ = logFile.Close()
		if d.sock != nil {
			_ = d.sock.Close()
		}
		return nil, err
	}
	go d.relay(logFile, "gw-"+site)
	l.onClose(d.Close)
	if err := d.waitListening(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("%w; output: %s", err, out.String()), d.Close())
	}
	return d, nil
}

// sshdConfig is the daemon's whole configuration: nothing is read from
// /etc/ssh. Passwords are asked for (and fail, as they do on a gateway
// whose administrators use keys); root logs in with a key only.
func sshdConfig(dir string, port uint16, gw Node) string {
	return fmt.Sprintf(`Port %d
ListenAddress %s
ListenAddress %s
HostKey %s
PidFile /run/sshd.pid
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
SyslogFacility AUTH
LogLevel INFO
`, port, gw.V4, gw.V6, filepath.Join(dir, "ssh_host_ed25519_key"), filepath.Join(dir, "authorized_keys"))
}

// syslogSocket runs on the daemon's thread, inside its private mount
// namespace: it creates sshd's privilege-separation directory in the
// private /run, lays an overlay on /dev (backed by that /run) so that
// /dev/log can be created without touching the host's /dev, and binds the
// syslog socket there. The socket works from any thread afterwards.
func syslogSocket() (*net.UnixConn, error) {
	for _, d := range []string{"/run/sshd", "/run/dev-upper", "/run/dev-work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := unix.Mount("overlay", "/dev", "overlay", 0, "lowerdir=/dev,upperdir=/run/dev-upper,workdir=/run/dev-work"); err != nil {
		return nil, fmt.Errorf("an overlay on /dev: %w", err)
	}
	_ = os.Remove("/dev/log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "/dev/log", Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("the syslog socket: %w", err)
	}
	if err := os.Chmod("/dev/log", 0o666); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// reSyslogMsg is what glibc's syslog(3) sends: "<PRI>Mmm dd hh:mm:ss
// ident[pid]: message".
var reSyslogMsg = regexp.MustCompile(`^<\d{1,3}>([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) (.*)$`)

// relay writes every message of the syslog socket to f as rsyslog's
// traditional file format does: timestamp, host name, the rest.
func (d *SSHD) relay(f *os.File, host string) {
	defer close(d.done)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := d.sock.Read(buf)
		if err != nil {
			return
		}
		msg := strings.TrimRight(string(buf[:n]), "\x00\r\n")
		var line string
		if m := reSyslogMsg.FindStringSubmatch(msg); m != nil {
			line = m[1] + " " + host + " " + m[2]
		} else {
			line = time.Now().Format(time.Stamp) + " " + host + " " + strings.TrimLeft(msg, "<>0123456789")
		}
		if _, err := f.WriteString(line + "\n"); err != nil {
			d.err = err
			return
		}
	}
}

// waitListening waits for sshd's "Server listening" in the auth log.
func (d *SSHD) waitListening(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if b, err := os.ReadFile(d.AuthLog); err == nil && bytes.Contains(b, []byte("Server listening on "+d.Addr.Addr().String())) {
			return nil
		}
		select {
		case <-d.d.done:
			return fmt.Errorf("sshd on %s exited before listening: %v", d.Site, d.d.err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for sshd on %s to listen: %w", d.Site, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops sshd and the lab's syslog. It is idempotent.
func (d *SSHD) Close() error {
	var err error
	d.closed.Do(func() {
		err = d.d.stop(5 * time.Second)
		_ = d.sock.Close()
		<-d.done
		err = errors.Join(err, d.err)
	})
	return err
}

// SSHLogin logs in to addr over SSH from namespace ns as user, with auth,
// checking the server's host key, and runs command (none when empty). It
// returns the error of the first step that failed: a refused
// authentication is an error wrapping the ssh package's.
func SSHLogin(ctx context.Context, ns string, addr netip.AddrPort, hostKey ssh.PublicKey, user string, auth ssh.AuthMethod, command string) error {
	conn, err := dialTCP(ctx, ns, addr.String(), okDialTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr.String(), &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: ssh.FixedHostKey(hostKey),
	})
	if err != nil {
		return fmt.Errorf("ssh %s@%s: %w", user, addr, err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	if command == "" {
		return nil
	}
	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s@%s: a session: %w", user, addr, err)
	}
	defer sess.Close()
	if out, err := sess.CombinedOutput(command); err != nil {
		return fmt.Errorf("ssh %s@%s %q: %w: %s", user, addr, command, err, out)
	}
	return nil
}

// okDialTimeout bounds an SSH client's TCP connect.
const okDialTimeout = 5 * time.Second

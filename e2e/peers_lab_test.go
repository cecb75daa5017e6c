package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/internal/peerbench"
	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/policies"
)

// The peer comparison's lab (BenchmarkPeers, make bench-peers, and its
// small-scale check TestPeersWardenDropsTheAttack): one site whose gateway
// runs a real sshd, Warden's agent with its sensors reading the sshd's
// auth.log, and the controller in the management namespace. The attacker
// is the C2 namespace, with a fresh address on the internet bridge for
// every trial: fail2ban and CrowdSec keep what they learned about an
// address (bans, CrowdSec's one-minute blackhole after an overflow), and a
// fresh address makes every trial a first attack for every system.

// peersLab is the lab, Warden running.
type peersLab struct {
	*socLab
	sshd     *netlab.SSHD
	attacker netlab.Node
	gw       netlab.Site
	iface    string          // the attacker's interface on the internet bridge
	next     int             // the next attacker address's last octet
	released map[string]bool // containing runs whose gateway was released
	// crossing and dropped are the last trial's (Warden's breakdown).
	crossing, dropped time.Time
	log               *logWatch
}

// peersPolicy is added to the embedded default policies: auth_failure_burst
// from the internet, which the defaults only tell people about
// (brute-force-from-outside, notify-only), contains the gateway with the
// default evidence-first runbook. Warden has no runbook step that blocks one
// remote address at a gateway (blocks are the block unit's, fleet-wide, not
// a policy's), so the same attack is answered by quarantining the gateway:
// the attacker's packets are dropped, as fail2ban's and CrowdSec's bans drop
// them.
const peersPolicy = `policies:
  - name: bench-peers-contain-ssh-guessing
    description: >-
      SSH password guessing from the internet contains the gateway (the peer
      comparison: the attacker's packets must be dropped).
    priority: 70
    match: 'indicator.kind == "auth_failure_burst"'
    runbook: contain-compromised-gateway
    approval: auto
    guards:
      budget: false
`

// newPeersLab builds the lab with prefix (≤ 6 characters, unique).
func newPeersLab(tb testing.TB, prefix string) *peersLab {
	tb.Helper()
	if err := netlab.SSHDAvailable(); err != nil {
		tb.Skip(err.Error())
	}
	pl := &peersLab{next: 100, released: map[string]bool{}}
	var agentListen string
	polDir := tb.TempDir()
	if err := os.CopyFS(polDir, mustSub(tb, policies.DefaultFS(), ".")); err != nil {
		tb.Fatal(err)
	}
	_ = os.RemoveAll(filepath.Join(polDir, "tests"))
	if err := os.WriteFile(filepath.Join(polDir, "bench-peers.yaml"), []byte(peersPolicy), 0o600); err != nil {
		tb.Fatal(err)
	}
	pl.socLab = newAgentsLab(tb, agentsLabOptions{
		Prefix: prefix, Sites: []string{"hq"},
		Configure: func(cfg *config.Config) {
			mgmt, _ := netip.ParseAddrPort(cfg.Server.Listen)
			agentListen = netip.AddrPortFrom(mgmt.Addr(), 8782).String()
			cfg.Server.AgentListen = agentListen
			cfg.Agents.ServerCertFile, cfg.Agents.ServerKeyFile = cfg.Agents.CertFile, cfg.Agents.KeyFile
			cfg.Policies.Dir = polDir
			// Every trial contains the same gateway again: no budget or
			// breaker may stop the twelfth.
			cfg.Guards.MaxAutoIsolationsPerSite, cfg.Guards.MaxAutoIsolationsFleet = 1<<30, 1<<30
			cfg.Guards.BreakerMinGateways = 1 << 30
			if cfg.Store.Sync != "full" {
				tb.Fatalf("store.sync is %q; the comparison is of a durable intake", cfg.Store.Sync)
			}
		},
		BeforeAgents: func(l *socLab) {
			var err error
			if pl.sshd, err = l.lab.StartSSHD(tb.Context(), "hq", netlab.SSHDOptions{Dir: l.dir}); err != nil {
				tb.Fatalf("sshd on hq: %v", err)
			}
			var mgmt []string
			for _, p := range l.lab.ManagementPrefixes() {
				mgmt = append(mgmt, fmt.Sprintf("%q", p.String()))
			}
			// The auth sensor alone, with its defaults (threshold 10
			// failures a minute, inotify plus a 250 ms poll).
			body := fmt.Sprintf("auth:\n  enabled: true\n  source: files\n  files: [%q]\n  management_networks: [%s]\n",
				pl.sshd.AuthLog, strings.Join(mgmt, ", "))
			if err := os.WriteFile(filepath.Join(l.dir, "sensors-hq.yaml"), []byte(body), 0o600); err != nil {
				tb.Fatal(err)
			}
		},
		AgentArgs: func(l *socLab, s netlab.Site) []string {
			return []string{"--sensors", filepath.Join(l.dir, "sensors-hq.yaml"), "--controller-url", "https://" + agentListen,
				"--log-level", "info"}
		},
	})
	pl.attacker, pl.gw = pl.lab.C2(), pl.site("hq")
	out, err := pl.lab.Run(tb.Context(), pl.attacker.NS, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		tb.Fatalf("the attacker's interfaces: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 3 && strings.HasPrefix(f[3], pl.attacker.V4.String()+"/") {
			pl.iface = f[1]
		}
	}
	if pl.iface == "" {
		tb.Fatalf("no interface holds the attacker's %s:\n%s", pl.attacker.V4, out)
	}
	if pl.log, err = watchLog(pl.sshd.AuthLog); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pl.log.close)
	return pl
}

func mustSub(tb testing.TB, fsys fs.FS, dir string) fs.FS {
	tb.Helper()
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		tb.Fatal(err)
	}
	return sub
}

// newAttacker gives the attacker namespace a fresh address on the internet
// bridge (198.18.0.100 and up; the gateways are .10 and up, the C2 .200).
func (l *peersLab) newAttacker(tb testing.TB) netip.Addr {
	tb.Helper()
	if l.next >= 200 {
		tb.Fatal("out of attacker addresses")
	}
	a := netip.AddrFrom4([4]byte{198, 18, 0, byte(l.next)})
	l.next++
	if out, err := l.lab.Run(tb.Context(), l.attacker.NS, "ip", "addr", "add", a.String()+"/24", "dev", l.iface); err != nil {
		tb.Fatalf("adding %s to the attacker: %v: %s", a, err, out)
	}
	return a
}

// attackSystem is how one system counts an SSH password-guessing burst.
type attackSystem struct {
	name string
	// counts says whether an auth.log line counts towards the system's
	// threshold; the threshold-th counted line about the attacker is the
	// crossing.
	counts    func(line string) bool
	threshold int
	// attempts is how many failed logins the attacker makes; the last one
	// is the one whose lines cross the threshold.
	attempts int
	// wait bounds the time from the crossing to the drop.
	wait time.Duration
	// phase is the upper bound of the random delay before each trial, so
	// that the attack starts at any point of a poll interval.
	phase time.Duration
	// after runs after each trial (Warden: the gateway is released).
	after func(tb testing.TB, attacker netip.Addr)
}

var (
	// reSSHFailed is the line every system counts: OpenSSH's "Failed
	// password for root from A port P ssh2".
	reSSHFailed = regexp.MustCompile(`sshd\[\d+\]: Failed \S+ for `)
	// reSSHClosedAuth is the line CrowdSec's sshd parser also counts
	// (crowdsecurity/sshd-logs: SSHD_PREAUTH_AUTHENTICATING_USER and _ALT).
	reSSHClosedAuth = regexp.MustCompile(`sshd\[\d+\]: (?:Connection closed by|Disconnected from) (?:authenticating|invalid) user `)
)

func countsFailed(line string) bool { return reSSHFailed.MatchString(line) }

func countsCrowdSec(line string) bool {
	return reSSHFailed.MatchString(line) || reSSHClosedAuth.MatchString(line)
}

// probe settings: a fresh TCP connection every peerProbeEvery; one without an
// answer within peerProbeTimeout timed out; the drop holds when peerProbeConfirm
// probes after the first failed one failed too.
const (
	peerProbeEvery   = time.Millisecond
	peerProbeTimeout = 300 * time.Millisecond
	peerProbeConfirm = 20
)

// trial makes one attack from a fresh address and returns the time from
// the crossing line's arrival in auth.log to the first probe that found the
// attacker dropped.
func (l *peersLab) trial(tb testing.TB, sys attackSystem) (time.Duration, error) {
	tb.Helper()
	ctx := tb.Context()
	src := l.newAttacker(tb)
	if sys.after != nil {
		defer sys.after(tb, src)
	}
	if sys.phase > 0 {
		time.Sleep(rand.N(sys.phase))
	}
	mark := l.log.mark()
	var p *prober
	// The last attempt is the one whose lines cross the threshold: the
	// system may cut it off before the client has heard its answer (a
	// drop of the established flow), so it runs beside the wait for the
	// drop, and only a successful login is an error there.
	attackCtx, stopAttack := context.WithCancel(ctx)
	last := make(chan error, 1)
	defer func() {
		stopAttack()
		if p != nil {
			p.close()
		}
	}()
	for i := range sys.attempts {
		password := fmt.Sprintf("guess-%d", i)
		if i < sys.attempts-1 {
			if err := sshGuess(attackCtx, l.attacker.NS, src, l.sshd.Addr, l.sshd.HostKey, password); err != nil {
				return 0, fmt.Errorf("%s: attempt %d from %s: %w; auth.log since the trial began:\n%s", sys.name, i+1, src, err, linesText(l.log.since(mark)))
			}
			continue
		}
		var err error
		if p, err = startProbe(l.attacker.NS, src, l.sshd.Addr); err != nil {
			return 0, err
		}
		go func() { last <- sshGuess(attackCtx, l.attacker.NS, src, l.sshd.Addr, l.sshd.HostKey, password) }()
	}
	lastLoggedIn := func() bool {
		select {
		case err := <-last:
			if errors.Is(err, errLoggedIn) {
				return true
			}
			last <- err
		default:
		}
		return false
	}
	about := func(line string) bool { return strings.Contains(line, " "+src.String()+" port ") }
	var crossing time.Time
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		lines := l.log.since(mark)
		if crossing, ok = peerbench.Crossing(lines, func(s string) bool { return about(s) && sys.counts(s) }, sys.threshold); ok {
			break
		}
		if lastLoggedIn() {
			return 0, fmt.Errorf("%s: the last attempt from %s: %w", sys.name, src, errLoggedIn)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: %d attempts from %s logged no crossing of %d counted lines:\n%s", sys.name, sys.attempts, src, sys.threshold, linesText(lines))
		}
		time.Sleep(time.Millisecond)
	}
	deadline = time.Now().Add(sys.wait)
	for {
		res := p.results()
		at, ok, err := peerbench.FirstDrop(res, crossing, peerProbeConfirm)
		if err != nil {
			return 0, fmt.Errorf("%s from %s: %w (crossing at %s; probes: %s); auth.log since the trial began:\n%s", sys.name, src, err,
				crossing.Format("15:04:05.000000"), probeSummary(res), linesText(l.log.since(mark)))
		}
		if ok {
			if lastLoggedIn() {
				return 0, fmt.Errorf("%s: the last attempt from %s: %w", sys.name, src, errLoggedIn)
			}
			l.crossing, l.dropped = crossing, at
			return at.Sub(crossing), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: %s not dropped within %s of the crossing", sys.name, src, sys.wait)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// trials runs a warm-up trial (not counted: the first ban of a process
// creates its tables) and then n, and returns the times to drop and the
// failed trials' errors.
func (l *peersLab) trials(tb testing.TB, sys attackSystem, n int) ([]time.Duration, []error) {
	tb.Helper()
	var ds []time.Duration
	var errs []error
	for i := range n + 1 {
		d, err := l.trial(tb, sys)
		switch {
		case err != nil:
			tb.Logf("%s trial %d: %v", sys.name, i, err)
			errs = append(errs, err)
		case i == 0:
			tb.Logf("%s warm-up: dropped %v after the crossing", sys.name, d)
		default:
			tb.Logf("%s trial %d: dropped %v after the crossing", sys.name, i, d)
			ds = append(ds, d)
		}
	}
	return ds, errs
}

// probeSummary is the probes as runs of the same outcome.
func probeSummary(res []peerbench.ProbeResult) string {
	var b strings.Builder
	for i := 0; i < len(res); {
		j := i
		for j < len(res) && res[j].Connected == res[i].Connected {
			j++
		}
		fmt.Fprintf(&b, "%s %d×%v; ", res[i].Sent.Format("15:04:05.000000"), j-i, res[i].Connected)
		i = j
	}
	return b.String()
}

func linesText(lines []peerbench.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

// errLoggedIn is a guess that worked: the attack must fail.
var errLoggedIn = errors.New("the password login succeeded")

// sshGuess is one failed password login as root from src (an address of
// namespace ns): nil when the server refused the password, as it must.
func sshGuess(ctx context.Context, ns string, src netip.Addr, addr netip.AddrPort, hostKey ssh.PublicKey, password string) error {
	var conn net.Conn
	err := netlab.Do(ns, func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		conn, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { _ = conn.Close() })()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(conn, addr.String(), &ssh.ClientConfig{
		User: "root", Auth: []ssh.AuthMethod{ssh.Password(password)}, HostKeyCallback: ssh.FixedHostKey(hostKey),
	})
	if err == nil {
		_ = ssh.NewClient(c, chans, reqs).Close()
		return errLoggedIn
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return nil
	}
	return err
}

// logWatch records when each line of a file arrives (polled every 250 µs
// from the end the file had when the watch started).
type logWatch struct {
	mu    sync.Mutex
	lines []peerbench.LogLine
	stop  chan struct{}
	done  chan struct{}
}

func watchLog(path string) (*logWatch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	w := &logWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer f.Close()
		r := bufio.NewReader(f)
		var partial string
		for {
			s, err := r.ReadString('\n')
			if err == nil {
				w.mu.Lock()
				w.lines = append(w.lines, peerbench.LogLine{At: time.Now(), Text: partial + strings.TrimSuffix(s, "\n")})
				w.mu.Unlock()
				partial = ""
				continue
			}
			partial += s
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Microsecond):
			}
		}
	}()
	return w, nil
}

// mark is where the lines from now on start.
func (w *logWatch) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

func (w *logWatch) since(mark int) []peerbench.LogLine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]peerbench.LogLine(nil), w.lines[mark:]...)
}

func (w *logWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// prober starts a fresh TCP connection from src to dst every
// peerProbeEvery, inside the attacker's namespace, and records whether the
// gateway answered its SYN within peerProbeTimeout. It is a half-open
// probe: the SYN is written on a raw socket bound to the attacker's
// address, so no socket of the attacker's kernel owns the connection, the
// kernel answers the gateway's SYN-ACK with a reset and the connection
// never reaches sshd's accept queue; the same raw socket sees the SYN-ACK
// (connected) or a reset (refused). A firewall's drop or
// reject acts on the SYN all the same, and the thousand probes a second
// cost sshd nothing: completed connections would make it fork a thousand
// children a second, fill its listen backlog and delay the very systems
// being measured (and a full backlog would look like a drop).
type prober struct {
	mu      sync.Mutex
	res     []peerbench.ProbeResult
	stop    chan struct{}
	sending chan struct{}
	done    chan struct{}
	raw     int
	answers map[uint16]probeAnswer // by the probe's source port
}

type probeAnswer struct {
	at        time.Time
	connected bool
}

// probePorts are the probes' source ports, used in turn (one each
// millisecond: a port comes back after 40 s, long after its answer).
const probePortFirst, probePorts = 20000, 40000

func startProbe(ns string, src netip.Addr, dst netip.AddrPort) (*prober, error) {
	p := &prober{stop: make(chan struct{}), sending: make(chan struct{}), done: make(chan struct{}), answers: map[uint16]probeAnswer{}}
	if err := netlab.Do(ns, func() (err error) {
		if p.raw, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
			return err
		}
		if err = unix.Bind(p.raw, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			_ = unix.Close(p.raw)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("the probe's raw socket: %w", err)
	}
	_ = unix.SetsockoptTimeval(p.raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		p.readAnswers(src, dst)
	}()
	type pending struct {
		port uint16
		sent time.Time
	}
	q := make(chan pending, 1<<16)
	go func() {
		defer close(p.sending)
		defer close(q)
		tick := time.NewTicker(peerProbeEvery)
		defer tick.Stop()
		for next := 0; ; next++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			port := uint16(probePortFirst + next%probePorts)
			if sent, ok := p.sendSYN(src, port, dst); ok {
				q <- pending{port, sent}
			}
		}
	}()
	go func() {
		defer close(p.done)
		defer func() { <-readerDone; _ = unix.Close(p.raw) }()
		for pd := range q {
			connected := false
			for deadline := pd.sent.Add(peerProbeTimeout); ; {
				p.mu.Lock()
				a, ok := p.answers[pd.port]
				if ok && a.at.After(pd.sent) {
					delete(p.answers, pd.port)
				}
				p.mu.Unlock()
				if ok && a.at.After(pd.sent) {
					connected = a.connected
					break
				}
				if time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
			p.mu.Lock()
			p.res = append(p.res, peerbench.ProbeResult{Sent: pd.sent, Connected: connected})
			p.mu.Unlock()
		}
	}()
	return p, nil
}

// sendSYN sends a TCP SYN from src:port to dst on the raw socket and
// returns when it left. ok is false when it could not be sent.
func (p *prober) sendSYN(src netip.Addr, port uint16, dst netip.AddrPort) (time.Time, bool) {
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], port)
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], rand.Uint32())
	seg[12] = 5 << 4 // header length: 5 words
	seg[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(seg[14:], 64240)
	// The checksum covers the pseudo-header (addresses, protocol, length).
	s4, d4 := src.As4(), dst.Addr().As4()
	sum := uint32(0)
	for _, w := range [][]byte{s4[:], d4[:], {0, unix.IPPROTO_TCP, 0, byte(len(seg))}, seg} {
		for i := 0; i < len(w); i += 2 {
			sum += uint32(w[i])<<8 | uint32(w[i+1])
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(seg[16:], ^uint16(sum))
	sent := time.Now()
	if err := unix.Sendto(p.raw, seg, 0, &unix.SockaddrInet4{Addr: d4}); err != nil {
		return sent, false
	}
	return sent, true
}

// readAnswers reads the TCP segments arriving in the namespace and records,
// for each of the probe's ports, a SYN-ACK from dst (connected) or a reset
// (refused).
func (p *prober) readAnswers(src netip.Addr, dst netip.AddrPort) {
	buf := make([]byte, 1500)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(p.raw, buf, 0)
		if err != nil || n < 20 {
			continue
		}
		at := time.Now()
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+14 || netip.AddrFrom4([4]byte(buf[12:16])) != dst.Addr() || netip.AddrFrom4([4]byte(buf[16:20])) != src {
			continue
		}
		tcp := buf[ihl:n]
		if uint16(tcp[0])<<8|uint16(tcp[1]) != dst.Port() {
			continue
		}
		port := uint16(tcp[2])<<8 | uint16(tcp[3])
		const syn, rst, ack = 0x02, 0x04, 0x10
		flags := tcp[13]
		switch {
		case flags&(syn|ack) == syn|ack:
			p.record(port, at, true)
		case flags&rst != 0:
			p.record(port, at, false)
		}
	}
}

func (p *prober) record(port uint16, at time.Time, connected bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[port] = probeAnswer{at: at, connected: connected}
}

// results are the probes answered so far, in the order they were sent.
func (p *prober) results() []peerbench.ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]peerbench.ProbeResult(nil), p.res...)
}

func (p *prober) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.sending
	<-p.done
}

// wardenSystem is Warden's side: the auth sensor's default threshold of 10
// failures ("Failed password" lines; the "Connection closed by
// authenticating user" line after one is the same failure), its finding
// delivered to the controller, the policy's run isolating the gateway
// through the agent. After each trial a responder asks for the gateway's
// release and an approver approves it (four eyes), and the probe's port
// answers again before the next trial.
func (l *peersLab) wardenSystem() attackSystem {
	return attackSystem{
		name: "Warden", counts: countsFailed, threshold: 10, attempts: 10,
		wait: 30 * time.Second, phase: time.Second,
		after: func(tb testing.TB, attacker netip.Addr) { l.release(tb, attacker) },
	}
}

// release releases gw-hq when a run contained it, and waits until the
// gateway's sshd answers a fresh attacker address again.
func (l *peersLab) release(tb testing.TB, attacker netip.Addr) {
	tb.Helper()
	ctx := tb.Context()
	var run v1.Run
	waitUntil(tb, "the trial's containing run finished", 60*time.Second, func() bool {
		runs, err := l.api.client(tb).Runs(ctx, client.RunFilter{Gateway: "gw-hq"})
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range runs {
			if r.Policy == "bench-peers-contain-ssh-guessing" && !l.released[r.ID] {
				run = r
				return r.Terminal()
			}
		}
		return false
	})
	l.released[run.ID] = true
	if run.State != "succeeded" {
		tb.Logf("the containing run %s: %s (%s)", run.ID, run.State, run.Error)
	}
	l.logBreakdown(tb, run, attacker)
	rel, err := l.api.as(v1.RoleResponder).client(tb).Release(ctx, v1.StartRunbookRequest{Gateway: "gw-hq", Incident: run.Incident,
		OverrideReason: "bench-peers: released between trials"})
	if err != nil {
		tb.Fatalf("asking for the release: %v", err)
	}
	if _, err := l.api.as(v1.RoleApprover).client(tb).Approve(ctx, rel.ID, v1.ApproveRequest{}); err != nil {
		tb.Fatalf("approving the release: %v", err)
	}
	waitUntil(tb, "the release finished", 60*time.Second, func() bool {
		l.api.call(tb, http.MethodGet, "/v1/runs/"+rel.ID, nil, http.StatusOK, &rel)
		return rel.Terminal()
	})
	if rel.State != "succeeded" {
		tb.Fatalf("release %s: %s", rel.State, rel.Error)
	}
	l.waitOpen(tb)
}

// logBreakdown logs where the last trial's time went, from the run's and
// the indicator's own times (same host clock): the crossing line → the
// sensor's finding observed → the controller received it → the isolate
// step started → the probe found the attacker dropped → the step finished.
func (l *peersLab) logBreakdown(tb testing.TB, run v1.Run, attacker netip.Addr) {
	tb.Helper()
	if l.crossing.IsZero() {
		return
	}
	defer func() { l.crossing, l.dropped = time.Time{}, time.Time{} }()
	c := l.api.client(tb)
	full, err := c.Run(tb.Context(), run.ID)
	if err != nil {
		tb.Logf("breakdown: %v", err)
		return
	}
	inc, err := c.Incident(tb.Context(), run.Incident)
	if err != nil {
		tb.Logf("breakdown: %v", err)
		return
	}
	var observed, received time.Time
	for _, r := range inc.Indicators {
		if r.Indicator.Kind == "auth_failure_burst" && strings.Contains(r.Indicator.Summary, attacker.String()) {
			observed, received = r.Indicator.ObservedAt, r.ReceivedAt
		}
	}
	var isoStart, isoEnd time.Time
	for _, st := range full.Steps {
		if st.Action == "isolate" {
			isoStart, isoEnd = st.StartedAt, st.FinishedAt
		}
	}
	ms := func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return "?"
		}
		return fmt.Sprintf("%.1f ms", float64(b.Sub(a).Microseconds())/1000)
	}
	tb.Logf("Warden breakdown from the crossing: finding observed +%s, received +%s, run created +%s, isolate started +%s, dropped +%s, isolate finished +%s",
		ms(l.crossing, observed), ms(l.crossing, received), ms(l.crossing, full.CreatedAt), ms(l.crossing, isoStart), ms(l.crossing, l.dropped), ms(l.crossing, isoEnd))
}

// waitOpen waits until a fresh TCP connection from the attacker's own
// address reaches the gateway's sshd.
func (l *peersLab) waitOpen(tb testing.TB) {
	tb.Helper()
	waitUntil(tb, "the gateway's sshd answering the internet", 30*time.Second, func() bool {
		return netlab.TCPConnect(tb.Context(), l.attacker.NS, l.sshd.Addr, time.Second) == nil
	})
}

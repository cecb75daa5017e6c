package sensors

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// Directions of a flow the connection watcher judges.
const (
	// ConnOriginated is a flow the gateway itself opened (its source is
	// one of the gateway's addresses).
	ConnOriginated = "originated"
	// ConnForwarded is a flow routed through the gateway.
	ConnForwarded = "forwarded"
)

// Defaults of the connection watcher (sensors.conn).
const (
	DefaultUnknownDestinationConfidence = 0.6
	DefaultConnRepeatAfter              = time.Hour
	DefaultConnMaxFindingsPerMinute     = 60
	DefaultConnAddressRefresh           = 30 * time.Second
	DefaultConnReceiveBuffer            = 8 << 20
	// ConnEventCoalesce is how long, on a busy gateway, the connection
	// watcher lets conntrack events gather before it reads them in one
	// batch (netlinkConnHost.follow): the most it adds to a finding's
	// delay, and so at most 1/ConnEventCoalesce wakeups a second however
	// many connections the gateway opens.
	ConnEventCoalesce = 10 * time.Millisecond
	// DenyConfidence is the confidence of a flow to a deny-listed network:
	// an operator named it, so it is not a guess.
	DenyConfidence = 0.95
)

// ConnConfig configures the connection watcher (sensors.conn): conntrack
// NEW events, judged against the destinations learned in the learning
// period.
type ConnConfig struct {
	Enabled bool `yaml:"enabled"`
	// Directions are the flows judged: originated (the gateway itself)
	// and forwarded (through it). Default both. Flows to the gateway are
	// never judged here: the authentication watcher sees who logs in.
	Directions []string `yaml:"directions"`
	// ManagementNetworks (CIDRs) are never reported as destinations: the
	// controller, monitoring and the admins' hosts.
	ManagementNetworks []string `yaml:"management_networks"`
	// Ignore lists destinations never reported nor learned: "CIDR",
	// "CIDR proto" or "CIDR proto/port" ("0.0.0.0/0 udp/123").
	Ignore []string `yaml:"ignore"`
	// Deny lists networks whose every new flow is reported critical with
	// DenyConfidence, also during learning, and never learned.
	Deny []string `yaml:"deny"`
	// UnknownDestinationConfidence is the confidence of a finding about a
	// destination never seen (default 0.6). Raise it to 0.9 or more, with
	// OriginatedSeverity critical, to have the default policy
	// c2-like-destination-isolate contain a gateway that opens a
	// connection to a destination it never used ("C2-like").
	UnknownDestinationConfidence float64 `yaml:"unknown_destination_confidence"`
	// OriginatedSeverity and ForwardedSeverity are the severities of
	// unknown destinations by direction (default medium).
	OriginatedSeverity string `yaml:"originated_severity"`
	ForwardedSeverity  string `yaml:"forwarded_severity"`
	// RepeatAfter is how long a destination, once reported, stays quiet
	// (default 1h).
	RepeatAfter time.Duration `yaml:"repeat_after"`
	// MaxFindingsPerMinute bounds findings over all destinations (default
	// 60): a scan of the internet must not flood the queue. Suppressed
	// findings are counted in the next one's labels.
	MaxFindingsPerMinute int `yaml:"max_findings_per_minute"`
	// AddressRefresh is how often the gateway's own addresses are read
	// again (default 30s).
	AddressRefresh time.Duration `yaml:"address_refresh"`
	// ReceiveBuffer is the event socket's buffer in bytes (default 8 MiB):
	// what absorbs a burst of new connections while the watcher catches up.
	ReceiveBuffer int `yaml:"receive_buffer_bytes"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c ConnConfig) WithDefaults() ConnConfig {
	if len(c.Directions) == 0 {
		c.Directions = []string{ConnOriginated, ConnForwarded}
	}
	if c.UnknownDestinationConfidence == 0 {
		c.UnknownDestinationConfidence = DefaultUnknownDestinationConfidence
	}
	if c.OriginatedSeverity == "" {
		c.OriginatedSeverity = SeverityMedium
	}
	if c.ForwardedSeverity == "" {
		c.ForwardedSeverity = SeverityMedium
	}
	if c.RepeatAfter == 0 {
		c.RepeatAfter = DefaultConnRepeatAfter
	}
	if c.MaxFindingsPerMinute == 0 {
		c.MaxFindingsPerMinute = DefaultConnMaxFindingsPerMinute
	}
	if c.AddressRefresh == 0 {
		c.AddressRefresh = DefaultConnAddressRefresh
	}
	if c.ReceiveBuffer == 0 {
		c.ReceiveBuffer = DefaultConnReceiveBuffer
	}
	return c
}

// Validate checks c after WithDefaults.
func (c ConnConfig) Validate() error {
	_, err := c.compile()
	return err
}

// connRules is a validated ConnConfig in the form the watcher judges with.
type connRules struct {
	originated, forwarded bool
	management, deny      []netip.Prefix
	ignore                []destinationRule
	confidence            float64
	severity              map[string]string // by direction
	repeatAfter           time.Duration
	perMinute             int
}

func (c ConnConfig) compile() (connRules, error) {
	var errs []error
	r := connRules{
		confidence:  c.UnknownDestinationConfidence,
		severity:    map[string]string{ConnOriginated: c.OriginatedSeverity, ConnForwarded: c.ForwardedSeverity},
		repeatAfter: c.RepeatAfter,
		perMinute:   c.MaxFindingsPerMinute,
	}
	for i, d := range c.Directions {
		switch d {
		case ConnOriginated:
			r.originated = true
		case ConnForwarded:
			r.forwarded = true
		default:
			errs = append(errs, fmt.Errorf("sensors.conn.directions[%d]: %q is neither %s nor %s", i, d, ConnOriginated, ConnForwarded))
		}
	}
	var err error
	if r.management, err = ParsePrefixes("sensors.conn.management_networks", c.ManagementNetworks); err != nil {
		errs = append(errs, err)
	}
	if r.deny, err = ParsePrefixes("sensors.conn.deny", c.Deny); err != nil {
		errs = append(errs, err)
	}
	for i, s := range c.Ignore {
		rule, err := parseDestinationRule(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("sensors.conn.ignore[%d]: %w", i, err))
			continue
		}
		r.ignore = append(r.ignore, rule)
	}
	if c.UnknownDestinationConfidence < 0 || c.UnknownDestinationConfidence > 1 {
		errs = append(errs, fmt.Errorf("sensors.conn.unknown_destination_confidence: %g is outside [0, 1]", c.UnknownDestinationConfidence))
	}
	for field, s := range map[string]string{"originated_severity": c.OriginatedSeverity, "forwarded_severity": c.ForwardedSeverity} {
		if err := checkSeverity("sensors.conn."+field, s); err != nil {
			errs = append(errs, err)
		}
	}
	if c.RepeatAfter < 0 {
		errs = append(errs, fmt.Errorf("sensors.conn.repeat_after: %s is negative", c.RepeatAfter))
	}
	if c.MaxFindingsPerMinute < 0 {
		errs = append(errs, fmt.Errorf("sensors.conn.max_findings_per_minute: %d is negative", c.MaxFindingsPerMinute))
	}
	if c.AddressRefresh < time.Second {
		errs = append(errs, fmt.Errorf("sensors.conn.address_refresh: %s is shorter than 1s", c.AddressRefresh))
	}
	if c.ReceiveBuffer < 0 {
		errs = append(errs, fmt.Errorf("sensors.conn.receive_buffer_bytes: %d is negative", c.ReceiveBuffer))
	}
	return r, errors.Join(errs...)
}

// destinationRule matches destinations: a network and optionally a
// protocol and a port.
type destinationRule struct {
	prefix netip.Prefix
	proto  string // "" for any
	port   uint16 // 0 for any
}

// parseDestinationRule parses "CIDR", "CIDR proto" or "CIDR proto/port".
func parseDestinationRule(s string) (destinationRule, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 || len(fields) > 2 {
		return destinationRule{}, fmt.Errorf("%q is not \"CIDR [proto[/port]]\"", s)
	}
	p, err := parsePrefix(fields[0])
	if err != nil {
		return destinationRule{}, fmt.Errorf("%q: %q is not a CIDR or address: %w", s, fields[0], err)
	}
	r := destinationRule{prefix: p}
	if len(fields) == 1 {
		return r, nil
	}
	proto, port, hasPort := strings.Cut(strings.ToLower(fields[1]), "/")
	if !slices.Contains(protoNames[:], proto) {
		return destinationRule{}, fmt.Errorf("%q: protocol %q is not one of %s", s, proto, strings.Join(knownProtoNames(), ", "))
	}
	r.proto = proto
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return destinationRule{}, fmt.Errorf("%q: port %q is not 1..65535", s, port)
		}
		r.port = uint16(n)
	}
	return r, nil
}

func (r destinationRule) matches(d Destination) bool {
	return r.prefix.Contains(d.Addr) && (r.proto == "" || r.proto == d.Proto) && (r.port == 0 || r.port == d.Port)
}

// protoNames names the IP protocols of destinations and ignore rules; any
// other protocol is named by its number (and cannot be named in a rule).
var protoNames = [256]string{
	unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp",
	unix.IPPROTO_DCCP: "dccp", unix.IPPROTO_GRE: "gre", unix.IPPROTO_ESP: "esp",
	unix.IPPROTO_AH: "ah", unix.IPPROTO_ICMPV6: "icmpv6", unix.IPPROTO_SCTP: "sctp",
	unix.IPPROTO_UDPLITE: "udplite",
}

func knownProtoNames() []string {
	var out []string
	for _, n := range protoNames {
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func protoName(p uint8) string {
	if n := protoNames[p]; n != "" {
		return n
	}
	return strconv.Itoa(int(p))
}

// connFlow is one new conntrack entry: its original and reply tuples and
// its counters when the kernel accounts them (nf_conntrack_acct).
type connFlow struct {
	proto              uint8
	origSrc, origDst   netip.AddrPort
	replySrc, replyDst netip.AddrPort
	packets, bytes     uint64
	accounted          bool
}

// destination is where the flow really goes: the reply's source, which is
// the original destination translated by any DNAT on the way.
func (f connFlow) destination() Destination {
	to := f.replySrc
	if !to.Addr().IsValid() {
		to = f.origDst
	}
	return Destination{Addr: to.Addr().Unmap(), Port: to.Port(), Proto: protoName(f.proto)}
}

// String renders the flow in the manner of `conntrack -E`, for evidence.
func (f connFlow) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[NEW] %s src=%s dst=%s sport=%d dport=%d", protoName(f.proto),
		f.origSrc.Addr(), f.origDst.Addr(), f.origSrc.Port(), f.origDst.Port())
	if f.replySrc.Addr().IsValid() {
		fmt.Fprintf(&b, " reply src=%s dst=%s sport=%d dport=%d",
			f.replySrc.Addr(), f.replyDst.Addr(), f.replySrc.Port(), f.replyDst.Port())
	}
	if f.accounted {
		fmt.Fprintf(&b, " packets=%d bytes=%d", f.packets, f.bytes)
	}
	return b.String()
}

// connHost is what the watcher reads from the kernel: new flows and the
// gateway's own addresses. Production is conntrack and rtnetlink sockets
// (netlinkConnHost); tests may feed flows by hand.
type connHost interface {
	// follow calls each for every new flow, from one goroutine, until ctx
	// ends (returning ctx.Err()) or the event socket fails.
	follow(ctx context.Context, each func(connFlow)) error
	// localAddrs lists the addresses of the gateway's interfaces.
	localAddrs() ([]netip.Addr, error)
	Close() error
}

// connWatcher is the connection Sensor.
type connWatcher struct {
	rules   connRules
	learned *Learned
	clk     clock.Clock
	log     *slog.Logger
	open    func() (connHost, error)
	refresh time.Duration

	local atomic.Pointer[[]netip.Addr]
	gate  *repeatGate
	// listening, when set (tests), is called once the watcher receives
	// events.
	listening func()
}

// ConnDeps are what the connection watcher needs besides its config.
type ConnDeps struct {
	// Learned holds the destinations; required.
	Learned *Learned
	// Clock is the time flows are judged at; nil is clock.Real.
	Clock clock.Clock
	// Log defaults to discarding.
	Log *slog.Logger
}

// NewConn returns the connection watcher for cfg (defaults applied here).
// It binds the network namespace of the calling thread: Run subscribes to
// conntrack events there, whatever goroutine calls it, and releases the
// binding when it returns, so a watcher runs once.
//
// The kernel only tracks connections in a namespace whose firewall uses
// conntrack (a stateful or NAT rule); on a gateway without one the
// watcher sees nothing.
func NewConn(cfg ConnConfig, deps ConnDeps) (Sensor, error) {
	ns, err := netns.Current()
	if err != nil {
		return nil, fmt.Errorf("binding the connection watcher's namespace: %w", err)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	rcvbuf := cfg.WithDefaults().ReceiveBuffer
	w, err := newConnWatcher(cfg, deps, func() (connHost, error) { return openNetlinkConnHost(ns, rcvbuf, deps.Log) })
	if err != nil {
		_ = ns.Close()
		return nil, err
	}
	return w, nil
}

func newConnWatcher(cfg ConnConfig, deps ConnDeps, open func() (connHost, error)) (*connWatcher, error) {
	cfg = cfg.WithDefaults()
	rules, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	if deps.Learned == nil {
		return nil, errors.New("creating the connection watcher: no learned state")
	}
	clk, log := deps.Clock, deps.Log
	if clk == nil {
		clk = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &connWatcher{
		rules: rules, learned: deps.Learned, clk: clk, log: log, open: open,
		refresh: cfg.AddressRefresh,
		gate:    newRepeatGate(rules.repeatAfter, rules.perMinute, clk.Now()),
	}, nil
}

var _ Sensor = (*connWatcher)(nil)

// Name implements Sensor.
func (w *connWatcher) Name() string { return "conn" }

// Run implements Sensor: it subscribes to conntrack NEW events and judges
// each flow until ctx ends.
func (w *connWatcher) Run(ctx context.Context, emit func(wire.Finding)) error {
	host, err := w.open()
	if err != nil {
		return err
	}
	defer host.Close()
	if err := w.readLocal(host); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { w.refreshLocal(ctx, host) })
	if w.listening != nil {
		w.listening()
	}
	return host.follow(ctx, func(f connFlow) {
		if fd, ok := w.judge(f, w.clk.Now()); ok {
			emit(fd)
		}
	})
}

func (w *connWatcher) readLocal(host connHost) error {
	addrs, err := host.localAddrs()
	if err != nil {
		return fmt.Errorf("listing the gateway's addresses: %w", err)
	}
	w.local.Store(&addrs)
	return nil
}

// refreshLocal reads the gateway's addresses again every refresh interval:
// an address that came later (DHCP, a tunnel) must not make the gateway's
// own flows look forwarded, nor flows to it look outgoing.
func (w *connWatcher) refreshLocal(ctx context.Context, host connHost) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.clk.After(w.refresh):
		}
		if err := w.readLocal(host); err != nil {
			w.log.Warn("keeping the previous addresses", "sensor", "conn", "err", err)
		}
	}
}

func (w *connWatcher) isLocal(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	if p := w.local.Load(); p != nil {
		return slices.Contains(*p, a)
	}
	return false
}

// judge decides what one new flow means at now: nothing, a destination
// learned, or a finding. It records what it learns in w.learned and what
// it reports in w.gate, and touches nothing else. Called from one
// goroutine.
func (w *connWatcher) judge(f connFlow, now time.Time) (wire.Finding, bool) {
	dir, dest, ok := w.route(f)
	if !ok {
		return wire.Finding{}, false
	}
	if deny, ok := firstContaining(w.rules.deny, dest.Addr); ok {
		return w.report(f, dir, dest, now, &deny)
	}
	if InPrefixes(w.rules.management, dest.Addr) || slices.ContainsFunc(w.rules.ignore, func(r destinationRule) bool { return r.matches(dest) }) {
		return wire.Finding{}, false
	}
	dests := w.learned.Destinations()
	if w.learned.Learning(now) {
		dests.Observe(dest, now)
		return wire.Finding{}, false
	}
	if dests.Known(dest, now) {
		return wire.Finding{}, false
	}
	return w.report(f, dir, dest, now, nil)
}

// route says which way f goes and where to; ok is false for flows this
// watcher does not judge: to the gateway itself, to loopback, multicast or
// broadcast, or in a direction not configured.
func (w *connWatcher) route(f connFlow) (dir string, dest Destination, ok bool) {
	dest = f.destination()
	a := dest.Addr
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || w.isLocal(a) {
		return "", Destination{}, false
	}
	if w.isLocal(f.origSrc.Addr().Unmap()) {
		return ConnOriginated, dest, w.rules.originated
	}
	return ConnForwarded, dest, w.rules.forwarded
}

func firstContaining(prefixes []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range prefixes {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// report builds the finding for f unless the gate holds it back; deny is
// the deny-listed network it falls in, if any.
func (w *connWatcher) report(f connFlow, dir string, dest Destination, now time.Time, deny *netip.Prefix) (wire.Finding, bool) {
	key := KindUnknownDestination + "/" + dest.Proto + "/" + dest.Addr.String() + "/" + strconv.Itoa(int(dest.Port))
	ok, suppressed := w.gate.allow(key, now)
	if !ok {
		return wire.Finding{}, false
	}
	labels := map[string]string{
		"direction": dir,
		"proto":     dest.Proto,
		"port":      strconv.Itoa(int(dest.Port)),
		"source":    f.origSrc.Addr().Unmap().String(),
	}
	if f.accounted {
		labels["bytes"] = strconv.FormatUint(f.bytes, 10)
		labels["packets"] = strconv.FormatUint(f.packets, 10)
	}
	if suppressed > 0 {
		labels["suppressed_before"] = strconv.Itoa(suppressed)
	}
	who := "The gateway opened a connection to "
	if dir == ConnForwarded {
		who = "The gateway forwarded a connection from " + labels["source"] + " to "
	}
	fd := wire.Finding{
		Kind:       KindUnknownDestination,
		Severity:   w.rules.severity[dir],
		Confidence: w.rules.confidence,
		Summary:    who + dest.String() + ", a destination never seen in the learning period",
		IPs:        []string{dest.Addr.String()},
		Labels:     labels,
		Evidence:   []string{f.String()},
		ObservedAt: now,
		Key:        key,
		Sensor:     "conn",
	}
	if deny != nil {
		labels["deny"] = deny.String()
		if w.learned.Learning(now) {
			labels["learning"] = "true"
		}
		fd.Severity, fd.Confidence = SeverityCritical, DenyConfidence
		fd.Summary = who + dest.String() + ", in the deny list (" + deny.String() + ")"
	}
	return fd, true
}

// repeatGate holds back findings: one per key per repeat interval, and at
// most perMinute over all keys. It remembers at most maxRepeatKeys keys;
// beyond that it forgets the ones whose interval ran out, then all, and
// the per-minute budget still bounds what gets through. Not safe for
// concurrent use.
type repeatGate struct {
	every      time.Duration
	last       map[string]time.Time
	budget     *rate.Limiter // nil: no global bound
	suppressed int
}

const maxRepeatKeys = 16384

func newRepeatGate(every time.Duration, perMinute int, now time.Time) *repeatGate {
	g := &repeatGate{every: every, last: map[string]time.Time{}}
	if perMinute > 0 {
		g.budget = rate.NewLimiter(rate.Every(time.Minute/time.Duration(perMinute)), perMinute)
		// The limiter starts full at its first use; anchor it at now so
		// that a fake clock far from the wall clock behaves the same.
		g.budget.AllowN(now, 0)
	}
	return g
}

// allow reports whether a finding keyed key may go out at now, and how
// many findings the per-minute budget suppressed since the last one that
// went out.
func (g *repeatGate) allow(key string, now time.Time) (ok bool, suppressed int) {
	if at, seen := g.last[key]; seen && now.Sub(at) < g.every {
		return false, 0
	}
	if g.budget != nil && !g.budget.AllowN(now, 1) {
		g.suppressed++
		return false, 0
	}
	if len(g.last) >= maxRepeatKeys {
		g.forget(now)
	}
	g.last[key] = now
	suppressed, g.suppressed = g.suppressed, 0
	return true, suppressed
}

func (g *repeatGate) forget(now time.Time) {
	for k, at := range g.last {
		if now.Sub(at) >= g.every {
			delete(g.last, k)
		}
	}
	if len(g.last) >= maxRepeatKeys {
		clear(g.last)
	}
}

// netlinkConnHost reads conntrack NEW events and the gateway's addresses
// over netlink sockets opened in one network namespace.
type netlinkConnHost struct {
	events *eventSocket
	rt     *vnl.Handle
	ns     netns.Namespace
	log    *slog.Logger
	// pace spaces the reads of a busy event socket.
	pace coalescer
}

// openNetlinkConnHost opens, inside ns, a netfilter socket subscribed to
// conntrack NEW events and an rtnetlink handle. The sockets stay in ns for
// their whole life, whatever thread uses them later.
func openNetlinkConnHost(ns netns.Namespace, rcvbuf int, log *slog.Logger) (connHost, error) {
	h := &netlinkConnHost{ns: ns, log: log, pace: coalescer{every: ConnEventCoalesce, clk: clock.Real}}
	err := ns.Do(func() error {
		var err error
		if h.events, err = openEventSocket(rcvbuf); err != nil {
			return err
		}
		if h.rt, err = vnl.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return fmt.Errorf("opening rtnetlink: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return h, nil
}

// eventSocket is the conntrack event socket. It is read with blocking
// system calls (poll, then recvmsg until the socket is empty) on the
// reading goroutine's thread, not through Go's network poller: the poller
// wakes the runtime for every datagram that arrives, even while the
// watcher lets events gather (coalescer), and on a busy gateway those
// wakeups, not the events, are what watching costs.
type eventSocket struct {
	fd int
	// stopFD is an eventfd: stop makes it readable, which ends a wait.
	stopFD    int
	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
}

// openEventSocket opens, in the calling thread's network namespace, a
// NETLINK_NETFILTER socket subscribed to conntrack NEW events with a
// receive buffer of rcvbuf bytes (0: the system's default).
//
// The socket is connected to the kernel (port 0), so that the kernel
// refuses unicast messages from any other socket: an unprivileged process
// could otherwise send the watcher forged events of a deny-listed
// destination and have the gateway isolated. Multicast events from the
// kernel still arrive.
func openEventSocket(rcvbuf int) (*eventSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening a conntrack event socket: %w", err)
	}
	s := &eventSocket{fd: fd, stopFD: -1}
	fail := func(what string, err error) (*eventSocket, error) {
		return nil, errors.Join(fmt.Errorf("%s: %w", what, err), s.close())
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("binding the conntrack event socket", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("connecting the conntrack event socket to the kernel", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_CONNTRACK_NEW); err != nil {
		return fail("subscribing to conntrack NEW events", err)
	}
	if rcvbuf > 0 {
		// Past net.core.rmem_max when the agent may (CAP_NET_ADMIN),
		// within it otherwise.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
				return fail("sizing the conntrack event socket", err)
			}
		}
	}
	if s.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("opening the conntrack event socket's stop signal", err)
	}
	return s, nil
}

// wait blocks until the socket has something to read (or an error to
// report, such as an overrun), or until stop; then it returns
// net.ErrClosed.
func (s *eventSocket) wait() error {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(s.stopFD), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		case fds[1].Revents != 0:
			return net.ErrClosed
		case fds[0].Revents&unix.POLLNVAL != 0:
			return net.ErrClosed
		case fds[0].Revents != 0:
			return nil
		}
	}
}

// stop ends a wait in progress, and every later one. Safe from any
// goroutine, and more than once.
func (s *eventSocket) stop() {
	s.stopOnce.Do(func() {
		if s.stopFD >= 0 {
			_, _ = unix.Write(s.stopFD, binary.NativeEndian.AppendUint64(nil, 1))
		}
	})
}

// close stops the socket and releases it; no read may be in progress.
func (s *eventSocket) close() error {
	s.stop()
	s.closeOnce.Do(func() {
		s.closeErr = unix.Close(s.fd)
		if s.stopFD >= 0 {
			s.closeErr = errors.Join(s.closeErr, unix.Close(s.stopFD))
		}
	})
	return s.closeErr
}

// follow implements connHost. Each wakeup reads every event the socket
// holds, one recvmsg each into one buffer, and the coalescer spaces the
// wakeups of a busy gateway (see coalescer): a wakeup per event costs the
// agent far more than the event itself (the Go scheduler parking and
// waking threads, which a virtual machine makes dear), so that, read one
// event a wakeup, ten thousand connections a second would take most of a
// core.
//
// A receive buffer overrun (ENOBUFS: the kernel dropped events because
// the watcher fell behind) is logged with the count so far and the watcher
// goes on: the socket stays usable, and stopping would blind it for good.
func (h *netlinkConnHost) follow(ctx context.Context, each func(connFlow)) error {
	stop := context.AfterFunc(ctx, h.events.stop)
	defer stop()
	r := eventReader{buf: make([]byte, 64<<10), each: each}
	var overruns, undecodable int
	for {
		if err := h.events.wait(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("waiting for conntrack events: %w", err)
		}
		r.got, r.overruns, r.undecodable, r.err = 0, 0, 0, nil
		r.read(h.events.fd)
		if r.overruns > 0 {
			overruns += r.overruns
			h.log.Warn("conntrack events lost: the receive buffer overran", "sensor", "conn", "overruns", overruns)
		}
		if r.undecodable > 0 {
			undecodable += r.undecodable
			h.log.Warn("skipping undecodable conntrack events", "sensor", "conn", "count", undecodable)
		}
		if r.err != nil {
			return fmt.Errorf("receiving conntrack events: %w", r.err)
		}
		if err := h.pace.wait(ctx); err != nil {
			return err
		}
	}
}

// maxEventBatch bounds the events one wakeup reads, so that a flood still
// lets follow look at its context.
const maxEventBatch = 4096

// eventReader reads every datagram the event socket holds, without
// blocking, and decodes each at once (the next read reuses the buffer),
// up to maxEventBatch of them.
type eventReader struct {
	buf  []byte
	each func(connFlow)

	got, overruns, undecodable int
	err                        error
}

func (r *eventReader) read(fd int) {
	for r.got < maxEventBatch {
		n, _, flags, _, err := unix.Recvmsg(fd, r.buf, nil, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.ENOBUFS):
			r.overruns++
			continue
		case err != nil:
			r.err = err
			return
		}
		r.got++
		if flags&unix.MSG_TRUNC != 0 {
			r.undecodable++
			continue
		}
		msgs, err := parseNetlinkMessages(r.buf[:n])
		if err != nil {
			r.undecodable++
			continue
		}
		r.undecodable += decodeNewFlows(msgs, r.each)
	}
}

// parseNetlinkMessages splits one datagram into its netlink messages, whose
// data stays in b.
func parseNetlinkMessages(b []byte) ([]netlink.Message, error) {
	ms, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, err
	}
	out := make([]netlink.Message, len(ms))
	for i, m := range ms {
		out[i] = netlink.Message{
			Header: netlink.Header{Length: m.Header.Len, Type: netlink.HeaderType(m.Header.Type), Flags: netlink.HeaderFlags(m.Header.Flags),
				Sequence: m.Header.Seq, PID: m.Header.Pid},
			Data: m.Data,
		}
	}
	return out, nil
}

// coalescer spaces the reads of an event socket: a wakeup that comes less
// than every after the one before means the events come thick and fast,
// and the next read then waits until every has passed, to take what
// gathered meanwhile in one batch. On a busy gateway the watcher so wakes
// at most 1/every times a second, each event waiting at most every more; a
// quiet gateway's event, the first after a pause of every, is read at
// once.
type coalescer struct {
	every time.Duration
	clk   clock.Clock
	// last is when the last read began (after its wait, if any).
	last time.Time
}

// wait is called after a batch was read; it returns when the next read
// may begin, or ctx's error once ctx ends.
func (c *coalescer) wait(ctx context.Context) error {
	now := c.clk.Now()
	since := now.Sub(c.last)
	if c.last.IsZero() || since >= c.every {
		c.last = now
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.clk.After(c.every - since):
	}
	c.last = c.clk.Now()
	return nil
}

// decodeNewFlows calls each for every conntrack NEW event in msgs and
// returns how many messages it could not decode. Other events (updates,
// destroys, expectations) are skipped.
func decodeNewFlows(msgs []netlink.Message, each func(connFlow)) (undecodable int) {
	for _, m := range msgs {
		var ev conntrack.Event
		if err := ev.Unmarshal(m); err != nil {
			undecodable++
			continue
		}
		if ev.Type == conntrack.EventNew && ev.Flow != nil {
			each(flowFromConntrack(ev.Flow))
		}
	}
	return undecodable
}

func flowFromConntrack(f *conntrack.Flow) connFlow {
	tuple := func(t conntrack.Tuple) (src, dst netip.AddrPort) {
		return netip.AddrPortFrom(t.IP.SourceAddress.Unmap(), t.Proto.SourcePort),
			netip.AddrPortFrom(t.IP.DestinationAddress.Unmap(), t.Proto.DestinationPort)
	}
	out := connFlow{proto: f.TupleOrig.Proto.Protocol}
	out.origSrc, out.origDst = tuple(f.TupleOrig)
	out.replySrc, out.replyDst = tuple(f.TupleReply)
	if f.CountersOrig.Packets > 0 || f.CountersReply.Packets > 0 {
		out.accounted = true
		out.packets = f.CountersOrig.Packets + f.CountersReply.Packets
		out.bytes = f.CountersOrig.Bytes + f.CountersReply.Bytes
	}
	return out
}

// localAddrs implements connHost.
func (h *netlinkConnHost) localAddrs() ([]netip.Addr, error) {
	addrs, err := h.rt.AddrList(nil, vnl.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := addrFromIP(a.IP); ok {
			out = append(out, ip)
		}
	}
	return out, nil
}

func addrFromIP(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

// Close implements connHost; it also releases the namespace binding, so a
// watcher runs once.
func (h *netlinkConnHost) Close() error {
	var errs []error
	if h.events != nil {
		errs = append(errs, h.events.close())
	}
	if h.rt != nil {
		h.rt.Close()
	}
	errs = append(errs, h.ns.Close())
	return errors.Join(errs...)
}

package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"time"

	vnl "github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"

	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// Counter sources of the volume watcher (sensors.volume.sources).
const (
	// VolumeInterfaces are the byte counters of the gateway's links
	// (WireGuard devices and route-based IPsec interfaces included).
	VolumeInterfaces = "interfaces"
	// VolumeIPsec are the counters of the kernel's IPsec SAs, summed per
	// peer ("ipsec/<peer address>"): policy-based tunnels have no link.
	VolumeIPsec = "ipsec"
	// VolumeWireGuardPeers are WireGuard's per-peer transfer counters
	// ("wg0/peer=<public key>").
	VolumeWireGuardPeers = "wireguard_peers"
)

// Defaults of the volume watcher (sensors.volume).
const (
	DefaultVolumeInterval    = 5 * time.Second
	DefaultVolumeHalfLife    = 30 * time.Minute
	DefaultVolumeFactor      = 5
	DefaultVolumeDeviations  = 4
	DefaultVolumeMinRate     = 128 << 10 // bytes per second
	DefaultVolumeMinSamples  = 60
	DefaultVolumeHighFactor  = 20
	DefaultVolumeConfidence  = 0.6
	DefaultVolumeRepeatAfter = 15 * time.Minute
)

// VolumeConfig configures the volume watcher (sensors.volume): byte
// counters sampled every Interval, each rate compared with the learned
// profile of its hour of the week.
//
// A rate is a spike when it is above max(Factor × mean, mean + Deviations
// × deviation) and at least MinRate, and the profile's cell has at least
// MinSamples samples.
type VolumeConfig struct {
	Enabled bool `yaml:"enabled"`
	// Interval between samples (default 5s).
	Interval time.Duration `yaml:"interval"`
	// Sources are the counters read: interfaces, ipsec, wireguard_peers
	// (default interfaces and ipsec).
	Sources []string `yaml:"sources"`
	// Interfaces, when set, are the only links watched (shell patterns,
	// "wg*"); Exclude links are never watched. Loopback never is. Both
	// apply to the device of WireGuard peers too.
	Interfaces []string `yaml:"interfaces"`
	Exclude    []string `yaml:"exclude"`
	// TimeZone is the site's IANA time zone, which hours of the week are
	// counted in (default UTC).
	TimeZone string `yaml:"time_zone"`
	// HalfLife is how long it takes a sample's weight in the profile to
	// halve, counted in sampled time of its hour of the week (default
	// 30m): the profile of Tuesday 10:00 is mostly the last one or two
	// Tuesdays at 10:00.
	HalfLife time.Duration `yaml:"half_life"`
	// Factor and Deviations set the threshold (defaults 5 and 4).
	Factor     float64 `yaml:"factor"`
	Deviations float64 `yaml:"deviations"`
	// MinRate is the smallest rate, in bytes per second, ever reported
	// (default 128 KiB/s): a quiet link going from 1 to 50 kB/s is no news.
	MinRate float64 `yaml:"min_rate_bytes_per_second"`
	// MinSamples a profile cell needs before it is judged against
	// (default 60).
	MinSamples int `yaml:"min_samples"`
	// HighFactor is the factor over the mean from which a spike is high
	// severity rather than medium (default 20).
	HighFactor float64 `yaml:"high_factor"`
	// Confidence of a traffic_spike (default 0.6).
	Confidence float64 `yaml:"confidence"`
	// RepeatAfter is how long a link and direction, once reported, stay
	// quiet (default 15m).
	RepeatAfter time.Duration `yaml:"repeat_after"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c VolumeConfig) WithDefaults() VolumeConfig {
	if c.Interval == 0 {
		c.Interval = DefaultVolumeInterval
	}
	if len(c.Sources) == 0 {
		c.Sources = []string{VolumeInterfaces, VolumeIPsec}
	}
	if c.TimeZone == "" {
		c.TimeZone = "UTC"
	}
	if c.HalfLife == 0 {
		c.HalfLife = DefaultVolumeHalfLife
	}
	if c.Factor == 0 {
		c.Factor = DefaultVolumeFactor
	}
	if c.Deviations == 0 {
		c.Deviations = DefaultVolumeDeviations
	}
	if c.MinRate == 0 {
		c.MinRate = DefaultVolumeMinRate
	}
	if c.MinSamples == 0 {
		c.MinSamples = DefaultVolumeMinSamples
	}
	if c.HighFactor == 0 {
		c.HighFactor = DefaultVolumeHighFactor
	}
	if c.Confidence == 0 {
		c.Confidence = DefaultVolumeConfidence
	}
	if c.RepeatAfter == 0 {
		c.RepeatAfter = DefaultVolumeRepeatAfter
	}
	return c
}

// Validate checks c after WithDefaults.
func (c VolumeConfig) Validate() error {
	_, err := c.compile()
	return err
}

// volumeRules is a validated VolumeConfig.
type volumeRules struct {
	VolumeConfig
	loc     *time.Location
	sources map[string]bool
}

func (c VolumeConfig) compile() (volumeRules, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	r := volumeRules{VolumeConfig: c, sources: map[string]bool{}}
	if c.Interval < time.Second {
		bad("sensors.volume.interval: %s is shorter than 1s", c.Interval)
	}
	for i, s := range c.Sources {
		if !slices.Contains([]string{VolumeInterfaces, VolumeIPsec, VolumeWireGuardPeers}, s) {
			bad("sensors.volume.sources[%d]: %q is not %s, %s or %s", i, s, VolumeInterfaces, VolumeIPsec, VolumeWireGuardPeers)
		}
		r.sources[s] = true
	}
	for field, patterns := range map[string][]string{"interfaces": c.Interfaces, "exclude": c.Exclude} {
		for i, p := range patterns {
			if _, err := path.Match(p, ""); err != nil {
				bad("sensors.volume.%s[%d]: %q is not a pattern: %w", field, i, p, err)
			}
		}
	}
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		bad("sensors.volume.time_zone: unknown time zone %q: %w", c.TimeZone, err)
	}
	r.loc = loc
	if c.HalfLife < c.Interval {
		bad("sensors.volume.half_life: %s is shorter than the interval %s", c.HalfLife, c.Interval)
	}
	if c.Factor <= 1 {
		bad("sensors.volume.factor: %g is not above 1", c.Factor)
	}
	if c.Deviations < 0 {
		bad("sensors.volume.deviations: %g is negative", c.Deviations)
	}
	if c.MinRate < 0 {
		bad("sensors.volume.min_rate_bytes_per_second: %g is negative", c.MinRate)
	}
	if c.MinSamples < 1 {
		bad("sensors.volume.min_samples: %d is below 1", c.MinSamples)
	}
	if c.HighFactor < c.Factor {
		bad("sensors.volume.high_factor: %g is below the factor %g", c.HighFactor, c.Factor)
	}
	if c.Confidence < 0 || c.Confidence > 1 {
		bad("sensors.volume.confidence: %g is outside [0, 1]", c.Confidence)
	}
	if c.RepeatAfter < 0 {
		bad("sensors.volume.repeat_after: %s is negative", c.RepeatAfter)
	}
	return r, errors.Join(errs...)
}

// watchesDevice reports whether the link named dev is watched.
func (r volumeRules) watchesDevice(dev string) bool {
	match := func(patterns []string) bool {
		return slices.ContainsFunc(patterns, func(p string) bool { ok, _ := path.Match(p, dev); return ok })
	}
	return (len(r.Interfaces) == 0 || match(r.Interfaces)) && !match(r.Exclude)
}

// volumeCounter is one series' cumulative byte counters.
type volumeCounter struct {
	// series names the profile's interface: a link, "ipsec/<peer>" or
	// "wg0/peer=<public key>".
	series string
	// device is the link the include and exclude patterns apply to; ""
	// for IPsec SAs.
	device string
	rx, tx uint64
}

// counterReader reads the gateway's byte counters. Production reads them
// over netlink (netlinkCounters); tests may count by hand.
type counterReader interface {
	// readCounters returns what it could read, and an error naming what it
	// could not (a partial read is still used).
	readCounters() ([]volumeCounter, error)
	Close() error
}

// VolumeDeps are what the volume watcher needs besides its config.
type VolumeDeps struct {
	// Learned holds the traffic profile; required.
	Learned *Learned
	// Clock paces the samples and dates them; nil is clock.Real.
	Clock clock.Clock
	// Log defaults to discarding.
	Log *slog.Logger
}

// volumeWatcher is the volume Sensor.
type volumeWatcher struct {
	rules   volumeRules
	learned *Learned
	clk     clock.Clock
	log     *slog.Logger
	open    func() (counterReader, error)

	// prev is the last sample of each series; only Run's goroutine
	// touches it.
	prev map[string]volumeSample
	gate *repeatGate
	// sampled, when set (tests), is called after each sample.
	sampled func()
}

type volumeSample struct {
	at time.Time
	volumeCounter
}

// NewVolume returns the volume watcher for cfg (defaults applied here). It
// binds the network namespace of the calling thread: Run reads the
// counters of that namespace, whatever goroutine calls it, and releases
// the binding when it returns, so a watcher runs once.
func NewVolume(cfg VolumeConfig, deps VolumeDeps) (Sensor, error) {
	ns, err := netns.Current()
	if err != nil {
		return nil, fmt.Errorf("binding the volume watcher's namespace: %w", err)
	}
	sources := cfg.WithDefaults().Sources
	w, err := newVolumeWatcher(cfg, deps, func() (counterReader, error) { return openNetlinkCounters(ns, sources) })
	if err != nil {
		_ = ns.Close()
		return nil, err
	}
	return w, nil
}

func newVolumeWatcher(cfg VolumeConfig, deps VolumeDeps, open func() (counterReader, error)) (*volumeWatcher, error) {
	rules, err := cfg.WithDefaults().compile()
	if err != nil {
		return nil, err
	}
	if deps.Learned == nil {
		return nil, errors.New("creating the volume watcher: no learned state")
	}
	clk, log := deps.Clock, deps.Log
	if clk == nil {
		clk = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &volumeWatcher{
		rules: rules, learned: deps.Learned, clk: clk, log: log, open: open,
		prev: map[string]volumeSample{},
		gate: newRepeatGate(rules.RepeatAfter, 0, clk.Now()),
	}, nil
}

var _ Sensor = (*volumeWatcher)(nil)

// Name implements Sensor.
func (w *volumeWatcher) Name() string { return "volume" }

// Run implements Sensor: it samples the counters every interval (the first
// sample at once, as the base of the next) until ctx ends. A failed read is
// logged when the reader starts failing and when it recovers, not every
// interval.
func (w *volumeWatcher) Run(ctx context.Context, emit func(wire.Finding)) error {
	r, err := w.open()
	if err != nil {
		return err
	}
	defer r.Close()
	failing := false
	for {
		// Armed before sampling, so that a test advancing the fake clock
		// right after a sample always fires it.
		tick := w.clk.After(w.rules.Interval)
		counters, err := r.readCounters()
		switch {
		case err != nil && !failing:
			w.log.Warn("reading byte counters", "sensor", "volume", "err", err)
		case err == nil && failing:
			w.log.Info("reading byte counters again", "sensor", "volume")
		}
		failing = err != nil
		for _, f := range w.observe(w.clk.Now(), counters) {
			emit(f)
		}
		if w.sampled != nil {
			w.sampled()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
		}
	}
}

// observe takes one sample of every series at now: each rate since the
// series' previous sample is judged against its profile cell, then
// learned. It returns the findings to emit.
func (w *volumeWatcher) observe(now time.Time, counters []volumeCounter) []wire.Finding {
	var out []wire.Finding
	next := make(map[string]volumeSample, len(counters))
	for _, c := range counters {
		if c.device != "" && !w.rules.watchesDevice(c.device) {
			continue
		}
		next[c.series] = volumeSample{at: now, volumeCounter: c}
		p, ok := w.prev[c.series]
		if !ok || !now.After(p.at) {
			continue
		}
		for _, d := range []struct {
			dir      string
			from, to uint64
		}{{DirectionRX, p.rx, c.rx}, {DirectionTX, p.tx, c.tx}} {
			// A counter that went back was reset (the link was created
			// again, an SA rekeyed): there is no rate this time.
			if d.to < d.from {
				continue
			}
			s := volumeStep{series: c.series, dir: d.dir, from: d.from, to: d.to, elapsed: now.Sub(p.at), at: now}
			if f, ok := w.judgeStep(s); ok {
				out = append(out, f)
			}
		}
	}
	w.prev = next
	return out
}

// volumeStep is one series and direction between two samples.
type volumeStep struct {
	series, dir string
	from, to    uint64
	elapsed     time.Duration
	at          time.Time
}

func (s volumeStep) rate() float64 { return float64(s.to-s.from) / s.elapsed.Seconds() }

// judgeStep compares s with its profile cell and learns from it. A spike
// is learned only up to the threshold, so that an exfiltration lasting
// hours does not teach the profile that it is normal.
func (w *volumeWatcher) judgeStep(s volumeStep) (wire.Finding, bool) {
	key := ProfileKey{Interface: s.series, Direction: s.dir, Hour: HourOfWeek(s.at.In(w.rules.loc))}
	traffic := w.learned.Traffic()
	cell, _ := traffic.Get(key)
	rate := s.rate()
	v := judgeRate(rate, cell, w.rules)
	learn := rate
	if v.spike {
		learn = v.threshold
	}
	alpha := 1 - math.Exp2(-s.elapsed.Seconds()/w.rules.HalfLife.Seconds())
	traffic.Update(key, learn, alpha, s.at)
	if !v.spike || w.learned.Learning(s.at) {
		return wire.Finding{}, false
	}
	findingKey := KindTrafficSpike + "/" + s.series + "/" + s.dir
	if ok, _ := w.gate.allow(findingKey, s.at); !ok {
		return wire.Finding{}, false
	}
	return w.spikeFinding(s, key, cell, v, findingKey), true
}

// rateVerdict is what judgeRate decided about one rate.
type rateVerdict struct {
	spike bool
	// threshold is the rate above which the sample is a spike; factor is
	// the rate over the profile's mean (the mean taken as at least 1 B/s).
	threshold, factor float64
}

// judgeRate decides whether rate is a spike against the profile cell p.
func judgeRate(rate float64, p ProfileStats, r volumeRules) rateVerdict {
	v := rateVerdict{
		threshold: max(r.Factor*p.Mean, p.Mean+r.Deviations*p.Dev),
		factor:    rate / max(p.Mean, 1),
	}
	v.spike = p.Samples >= int64(r.MinSamples) && rate > v.threshold && rate >= r.MinRate
	return v
}

func (w *volumeWatcher) spikeFinding(s volumeStep, key ProfileKey, cell ProfileStats, v rateVerdict, findingKey string) wire.Finding {
	rate := s.rate()
	severity := SeverityMedium
	if v.factor >= w.rules.HighFactor {
		severity = SeverityHigh
	}
	local := s.at.In(w.rules.loc)
	when := fmt.Sprintf("%s %02d:00 %s", local.Weekday().String()[:3], local.Hour(), w.rules.loc)
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }
	return wire.Finding{
		Kind:       KindTrafficSpike,
		Severity:   severity,
		Confidence: w.rules.Confidence,
		Summary: fmt.Sprintf("%s %s at %s, %.1f× the learned %s for %s", s.series, s.dir,
			humanRate(rate), v.factor, humanRate(cell.Mean), when),
		Labels: map[string]string{
			"interface":                  s.series,
			"direction":                  s.dir,
			"factor":                     strconv.FormatFloat(v.factor, 'f', 1, 64),
			"rate_bytes_per_second":      f(rate),
			"mean_bytes_per_second":      f(cell.Mean),
			"dev_bytes_per_second":       f(cell.Dev),
			"threshold_bytes_per_second": f(v.threshold),
			"hour_of_week":               strconv.Itoa(key.Hour),
		},
		Evidence: []string{
			fmt.Sprintf("%s %s_bytes %d -> %d in %s: %s B/s", s.series, s.dir, s.from, s.to, s.elapsed, f(rate)),
			fmt.Sprintf("profile %s %s %s (hour %d): mean %s B/s, deviation %s B/s, %d samples; threshold %s B/s",
				s.series, s.dir, when, key.Hour, f(cell.Mean), f(cell.Dev), cell.Samples, f(v.threshold)),
		},
		ObservedAt: s.at,
		Key:        findingKey,
		Sensor:     "volume",
	}
}

// humanRate writes a rate in decimal units, as people read link speeds.
func humanRate(bps float64) string {
	units := []string{"B/s", "kB/s", "MB/s", "GB/s", "TB/s"}
	i := 0
	for bps >= 1000 && i < len(units)-1 {
		bps /= 1000
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(bps, 'f', 0, 64) + " " + units[i]
	}
	return strconv.FormatFloat(bps, 'f', 1, 64) + " " + units[i]
}

// netlinkCounters reads counters over netlink sockets opened in one network
// namespace: link statistics and IPsec SAs over rtnetlink and xfrm,
// WireGuard peers over generic netlink (wgctrl).
type netlinkCounters struct {
	sources map[string]bool
	rt      *vnl.Handle
	wg      *wgctrl.Client
	ns      netns.Namespace
}

// openNetlinkCounters opens, inside ns, the sockets the sources need.
func openNetlinkCounters(ns netns.Namespace, sources []string) (counterReader, error) {
	c := &netlinkCounters{sources: map[string]bool{}, ns: ns}
	for _, s := range sources {
		c.sources[s] = true
	}
	err := ns.Do(func() error {
		var err error
		if c.rt, err = vnl.NewHandle(); err != nil {
			return fmt.Errorf("opening rtnetlink: %w", err)
		}
		if c.sources[VolumeWireGuardPeers] {
			if c.wg, err = wgctrl.New(); err != nil {
				return fmt.Errorf("opening wgctrl: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// readCounters implements counterReader.
func (c *netlinkCounters) readCounters() ([]volumeCounter, error) {
	var out []volumeCounter
	var errs []error
	if c.sources[VolumeInterfaces] {
		links, err := c.rt.LinkList()
		if err != nil {
			errs = append(errs, fmt.Errorf("listing links: %w", err))
		}
		out = append(out, linkCounters(links)...)
	}
	if c.sources[VolumeIPsec] {
		states, err := c.rt.XfrmStateList(vnl.FAMILY_ALL)
		var addrs []vnl.Addr
		if err == nil {
			addrs, err = c.rt.AddrList(nil, vnl.FAMILY_ALL)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listing IPsec SAs: %w", err))
		} else {
			out = append(out, ipsecCounters(states, localAddrs(addrs))...)
		}
	}
	if c.wg != nil {
		devs, err := c.wg.Devices()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading WireGuard devices: %w", err))
		}
		for _, d := range devs {
			for _, p := range d.Peers {
				out = append(out, volumeCounter{
					series: d.Name + "/peer=" + p.PublicKey.String(), device: d.Name,
					rx: uint64(max(p.ReceiveBytes, 0)), tx: uint64(max(p.TransmitBytes, 0)),
				})
			}
		}
	}
	return out, errors.Join(errs...)
}

// linkCounters returns the byte counters of every link but loopback.
func linkCounters(links []vnl.Link) []volumeCounter {
	out := make([]volumeCounter, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		if a == nil || a.Statistics == nil || a.Flags&net.FlagLoopback != 0 {
			continue
		}
		out = append(out, volumeCounter{series: a.Name, device: a.Name, rx: a.Statistics.RxBytes, tx: a.Statistics.TxBytes})
	}
	return out
}

func localAddrs(addrs []vnl.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := addrFromIP(a.IP); ok {
			out = append(out, ip)
		}
	}
	return out
}

// ipsecCounters sums the bytes of the SAs to and from each peer: an SA
// from a local address counts as sent to its destination, one to a local
// address as received from its source. SAs between two other hosts (a
// gateway in the middle of someone else's transport) are not the
// gateway's tunnels and are left out.
func ipsecCounters(states []vnl.XfrmState, local []netip.Addr) []volumeCounter {
	byPeer := map[string]*volumeCounter{}
	var order []string
	add := func(peer netip.Addr) *volumeCounter {
		name := "ipsec/" + peer.String()
		c, ok := byPeer[name]
		if !ok {
			c = &volumeCounter{series: name}
			byPeer[name] = c
			order = append(order, name)
		}
		return c
	}
	for _, s := range states {
		src, okS := addrFromIP(s.Src)
		dst, okD := addrFromIP(s.Dst)
		if !okS || !okD {
			continue
		}
		switch {
		case slices.Contains(local, src):
			add(dst).tx += s.Statistics.Bytes
		case slices.Contains(local, dst):
			add(src).rx += s.Statistics.Bytes
		}
	}
	out := make([]volumeCounter, 0, len(order))
	for _, n := range order {
		out = append(out, *byPeer[n])
	}
	return out
}

// Close implements counterReader; it also releases the namespace binding.
func (c *netlinkCounters) Close() error {
	var errs []error
	if c.rt != nil {
		c.rt.Close()
	}
	if c.wg != nil {
		errs = append(errs, c.wg.Close())
	}
	errs = append(errs, c.ns.Close())
	return errors.Join(errs...)
}

package sensors

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/warden-ir/warden/internal/clock"
)

// LearnedFile is the name of the learned state in the agent's state dir.
const LearnedFile = "sensors-learned.json"

// Defaults of the learning period and the destination store's bound.
const (
	DefaultLearningPeriod  = 7 * 24 * time.Hour
	DefaultMaxDestinations = 100_000
	DefaultSaveInterval    = time.Minute
)

const learnedVersion = 1

// LearningConfig configures the learned state (sensors.learning).
type LearningConfig struct {
	// Period is how long after the first start the watchers learn what is
	// normal instead of reporting it (default 7 days).
	Period time.Duration `yaml:"period"`
	// SeedFile, when set, is a learned-state file (the same JSON as
	// LearnedFile, for example one exported from a gateway of the same
	// role) whose entries are merged in when the agent has no learned
	// state yet.
	SeedFile string `yaml:"seed_file"`
	// SeedEndsLearning ends the learning period as soon as a seed was
	// loaded: the seed is taken as the complete picture of normal.
	SeedEndsLearning bool `yaml:"seed_ends_learning"`
	// MaxDestinations bounds the destination store; beyond it the least
	// recently seen are forgotten (default 100,000).
	MaxDestinations int `yaml:"max_destinations"`
	// SaveInterval is how often Persist writes changes (default 1 minute).
	SaveInterval time.Duration `yaml:"save_interval"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c LearningConfig) WithDefaults() LearningConfig {
	if c.Period == 0 {
		c.Period = DefaultLearningPeriod
	}
	if c.MaxDestinations == 0 {
		c.MaxDestinations = DefaultMaxDestinations
	}
	if c.SaveInterval == 0 {
		c.SaveInterval = DefaultSaveInterval
	}
	return c
}

// Validate checks c after WithDefaults.
func (c LearningConfig) Validate() error {
	var errs []error
	if c.Period < 0 {
		errs = append(errs, fmt.Errorf("sensors.learning.period: %s is negative", c.Period))
	}
	if c.MaxDestinations < 0 {
		errs = append(errs, fmt.Errorf("sensors.learning.max_destinations: %d is negative", c.MaxDestinations))
	}
	if c.SaveInterval < 0 {
		errs = append(errs, fmt.Errorf("sensors.learning.save_interval: %s is negative", c.SaveInterval))
	}
	return errors.Join(errs...)
}

// Learned is what the watchers learned about a normal gateway: the
// sources admins log in from, the destinations its flows go to and its
// traffic profile, plus when learning started. It is kept as JSON in the
// agent's state dir (0600, written atomically) and is safe for concurrent
// use; its sub-stores share its lock.
//
// Changes are kept in memory until Save (or Persist, which saves every
// SaveInterval and when its context ends): losing a minute of learning in
// a crash is cheaper than a write per conntrack event.
type Learned struct {
	dir string
	cfg LearningConfig

	mu    sync.Mutex
	st    learnedState
	dirty bool
}

// learnedState is the state in memory; storedState is its JSON form.
type learnedState struct {
	Started time.Time
	// Ended, when set, ends learning before Started+Period (a seed that
	// ends learning, or an operator).
	Ended        time.Time
	AdminSources map[netip.Addr]*adminSource
	Destinations map[Destination]*seenSpan
	Traffic      map[ProfileKey]ProfileStats
}

// OpenLearned loads the learned state from dir (the agent's state dir) or,
// when there is none, starts learning at clk.Now(), merging cfg.SeedFile
// when set. A missing seed file is an error: an operator who named one
// expects it to be used. A nil clk is clock.Real.
func OpenLearned(dir string, cfg LearningConfig, clk clock.Clock) (*Learned, error) {
	if clk == nil {
		clk = clock.Real
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Learned{dir: dir, cfg: cfg}
	st, err := readLearned(filepath.Join(dir, LearnedFile))
	if err == nil {
		l.st = st
		return l, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("loading learned state: %w", err)
	}
	l.st = newLearnedState(clk.Now())
	l.dirty = true
	if cfg.SeedFile != "" {
		seed, err := readLearned(cfg.SeedFile)
		if err != nil {
			return nil, fmt.Errorf("loading sensors.learning.seed_file: %w", err)
		}
		l.st.merge(seed)
		if cfg.SeedEndsLearning {
			l.st.Ended = l.st.Started
		}
	}
	return l, nil
}

func newLearnedState(now time.Time) learnedState {
	return learnedState{
		Started:      now.UTC(),
		AdminSources: map[netip.Addr]*adminSource{},
		Destinations: map[Destination]*seenSpan{},
		Traffic:      map[ProfileKey]ProfileStats{},
	}
}

// merge adds seed's entries to s; s keeps its own entries where both have
// one, and its own learning times.
func (s *learnedState) merge(seed learnedState) {
	for a, src := range seed.AdminSources {
		if _, ok := s.AdminSources[a]; !ok {
			s.AdminSources[a] = src
		}
	}
	for d, span := range seed.Destinations {
		if _, ok := s.Destinations[d]; !ok {
			s.Destinations[d] = span
		}
	}
	for k, p := range seed.Traffic {
		if _, ok := s.Traffic[k]; !ok {
			s.Traffic[k] = p
		}
	}
}

// Learning reports whether the learning period is still running at now.
func (l *Learned) Learning(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.st.Ended.IsZero() {
		return false
	}
	return now.Before(l.st.Started.Add(l.cfg.Period))
}

// LearningStarted returns when learning started.
func (l *Learned) LearningStarted() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Started
}

// EndLearning ends the learning period at now (an operator who knows the
// gateway is clean and wants findings at once). Idempotent.
func (l *Learned) EndLearning(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Ended.IsZero() {
		l.st.Ended = now.UTC()
		l.dirty = true
	}
}

// Export returns the state as the JSON of LearnedFile, whatever Save
// last wrote: for showing what a gateway learned, and as a seed file for
// another gateway of the same role.
func (l *Learned) Export() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	data, err := json.MarshalIndent(l.st.stored(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding learned state: %w", err)
	}
	return append(data, '\n'), nil
}

// Save writes the state if it changed since the last Save: a temporary
// file (0600), fsync, rename, directory fsync.
func (l *Learned) Save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dirty {
		return nil
	}
	data, err := json.MarshalIndent(l.st.stored(), "", "  ")
	if err != nil {
		return fmt.Errorf("encoding learned state: %w", err)
	}
	if err := WriteFileAtomic(l.dir, LearnedFile, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving learned state: %w", err)
	}
	l.dirty = false
	return nil
}

// Persist saves every SaveInterval until ctx ends, then saves once more.
// A failed save is retried at the next tick; Persist returns the last
// save's error joined with ctx.Err().
func (l *Learned) Persist(ctx context.Context, clk clock.Clock) error {
	if clk == nil {
		clk = clock.Real
	}
	for {
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), l.Save())
		case <-clk.After(l.cfg.SaveInterval):
			_ = l.Save() // retried next tick; the final save reports
		}
	}
}

// AdminSources is the store of addresses admins logged in from.
func (l *Learned) AdminSources() AdminSources { return AdminSources{l} }

// Destinations is the store of destinations flows went to.
func (l *Learned) Destinations() Destinations { return Destinations{l} }

// Traffic is the traffic profile.
func (l *Learned) Traffic() Traffic { return Traffic{l} }

// ---- admin login sources ----

// AdminSources remembers the source addresses of successful admin logins.
type AdminSources struct{ l *Learned }

type adminSource struct {
	Users []string  `json:"users"`
	First time.Time `json:"first_seen"`
	Last  time.Time `json:"last_seen"`
	Count int64     `json:"count"`
}

// Known reports whether addr was seen before.
func (s AdminSources) Known(addr netip.Addr) bool {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	_, ok := s.l.st.AdminSources[addr.Unmap()]
	return ok
}

// Observe records a login of user from addr at at and reports whether addr
// was new (never seen before this call): seeing and remembering in one
// step, so two logins racing from a new address make one finding.
func (s AdminSources) Observe(addr netip.Addr, user string, at time.Time) (isNew bool) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	addr = addr.Unmap()
	src, ok := s.l.st.AdminSources[addr]
	if !ok {
		src = &adminSource{First: at.UTC()}
		s.l.st.AdminSources[addr] = src
	}
	if !slices.Contains(src.Users, user) {
		src.Users = append(src.Users, user)
		slices.Sort(src.Users)
	}
	src.Last = at.UTC()
	src.Count++
	s.l.dirty = true
	return !ok
}

// ---- destinations ----

// Destination is where a flow went.
type Destination struct {
	Addr netip.Addr
	Port uint16
	// Proto is "tcp", "udp", "icmp", … as the sensor names it.
	Proto string
}

// String is "proto addr:port" ("tcp [2001:db8::1]:443").
func (d Destination) String() string {
	return d.Proto + " " + netip.AddrPortFrom(d.Addr, d.Port).String()
}

type seenSpan struct {
	First time.Time `json:"first_seen"`
	Last  time.Time `json:"last_seen"`
}

// Destinations remembers the destinations flows went to, at most
// MaxDestinations of them (the least recently seen are forgotten first).
type Destinations struct{ l *Learned }

// Known reports whether d was seen before, and if so marks it seen at at.
func (s Destinations) Known(d Destination, at time.Time) bool {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	span, ok := s.l.st.Destinations[d.normal()]
	if ok && at.After(span.Last) {
		span.Last = at.UTC()
		s.l.dirty = true
	}
	return ok
}

// Observe remembers d as seen at at and reports whether it was new.
func (s Destinations) Observe(d Destination, at time.Time) (isNew bool) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	d = d.normal()
	span, ok := s.l.st.Destinations[d]
	if !ok {
		span = &seenSpan{First: at.UTC()}
		s.l.st.Destinations[d] = span
	}
	if at.After(span.Last) {
		span.Last = at.UTC()
	}
	s.l.dirty = true
	if !ok {
		s.l.evictDestinations()
	}
	return !ok
}

// Len is how many destinations are remembered.
func (s Destinations) Len() int {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	return len(s.l.st.Destinations)
}

func (d Destination) normal() Destination {
	d.Addr = d.Addr.Unmap()
	return d
}

// evictDestinations forgets the least recently seen tenth when over the
// bound, so that a full store is not sorted on every new flow. Called with
// l.mu held.
func (l *Learned) evictDestinations() {
	bound := l.cfg.MaxDestinations
	if len(l.st.Destinations) <= bound {
		return
	}
	keep := bound - bound/10
	all := make([]Destination, 0, len(l.st.Destinations))
	for d := range l.st.Destinations {
		all = append(all, d)
	}
	slices.SortFunc(all, func(a, b Destination) int {
		return l.st.Destinations[a].Last.Compare(l.st.Destinations[b].Last)
	})
	for _, d := range all[:len(all)-keep] {
		delete(l.st.Destinations, d)
	}
}

// ---- traffic profile ----

// Directions of a traffic profile.
const (
	DirectionRX = "rx"
	DirectionTX = "tx"
)

// ProfileKey names one cell of the traffic profile: an interface (or
// tunnel / WireGuard peer), a direction and an hour of the week.
type ProfileKey struct {
	// Interface is an interface name, or any name the volume watcher gives
	// a tunnel or peer ("wg0/peer=<public key>").
	Interface string
	// Direction is DirectionRX or DirectionTX.
	Direction string
	// Hour is the hour of the week, 0 (Sunday 00:00) .. 167; see HourOfWeek.
	Hour int
}

// HourOfWeek returns t's hour of the week in t's location: 0 is Sunday
// 00:00–00:59, 167 Saturday 23:00–23:59.
func HourOfWeek(t time.Time) int {
	return int(t.Weekday())*24 + t.Hour()
}

// ProfileStats is one cell of the profile: an exponentially weighted
// moving average of the rate and of its absolute deviation from that
// average (the estimator TCP uses for round-trip times).
type ProfileStats struct {
	Mean    float64   `json:"mean"`
	Dev     float64   `json:"dev"`
	Samples int64     `json:"samples"`
	Updated time.Time `json:"updated"`
}

// Next returns the stats after one more sample x with weight alpha
// (0 < alpha ≤ 1): the first sample sets the mean and a zero deviation;
// after that dev moves towards |x - mean| (taken before the mean moves)
// and the mean towards x.
func (p ProfileStats) Next(x, alpha float64, at time.Time) ProfileStats {
	if p.Samples == 0 {
		return ProfileStats{Mean: x, Samples: 1, Updated: at.UTC()}
	}
	p.Dev += alpha * (math.Abs(x-p.Mean) - p.Dev)
	p.Mean += alpha * (x - p.Mean)
	p.Samples++
	p.Updated = at.UTC()
	return p
}

// Traffic is the learned traffic profile.
type Traffic struct{ l *Learned }

// Get returns the stats of k and whether there are any.
func (t Traffic) Get(k ProfileKey) (ProfileStats, bool) {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	p, ok := t.l.st.Traffic[k]
	return p, ok
}

// Update adds the sample x (a rate) to k with weight alpha and returns the
// stats before the sample, so that a caller compares the sample with the
// profile and learns from it in one step.
func (t Traffic) Update(k ProfileKey, x, alpha float64, at time.Time) (before ProfileStats) {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	before = t.l.st.Traffic[k]
	t.l.st.Traffic[k] = before.Next(x, alpha, at)
	t.l.dirty = true
	return before
}

// ---- storage ----

// storedState is the JSON form of learnedState: lists instead of maps, so
// that keys never need escaping and a seed file is easy to write by hand.
type storedState struct {
	Version      int             `json:"version"`
	Started      time.Time       `json:"learning_started"`
	Ended        time.Time       `json:"learning_ended,omitzero"`
	AdminSources []storedAdmin   `json:"admin_sources"`
	Destinations []storedDest    `json:"destinations"`
	Traffic      []storedProfile `json:"traffic"`
}

type storedAdmin struct {
	Addr netip.Addr `json:"addr"`
	adminSource
}

type storedDest struct {
	Proto string     `json:"proto"`
	Addr  netip.Addr `json:"addr"`
	Port  uint16     `json:"port"`
	seenSpan
}

type storedProfile struct {
	Interface string `json:"interface"`
	Direction string `json:"direction"`
	Hour      int    `json:"hour"`
	ProfileStats
}

// stored returns s in its stored form, sorted so that saves are stable.
func (s learnedState) stored() storedState {
	out := storedState{Version: learnedVersion, Started: s.Started, Ended: s.Ended,
		AdminSources: []storedAdmin{}, Destinations: []storedDest{}, Traffic: []storedProfile{}}
	for a, src := range s.AdminSources {
		out.AdminSources = append(out.AdminSources, storedAdmin{Addr: a, adminSource: *src})
	}
	slices.SortFunc(out.AdminSources, func(a, b storedAdmin) int { return a.Addr.Compare(b.Addr) })
	for d, span := range s.Destinations {
		out.Destinations = append(out.Destinations, storedDest{Proto: d.Proto, Addr: d.Addr, Port: d.Port, seenSpan: *span})
	}
	slices.SortFunc(out.Destinations, func(a, b storedDest) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
	})
	for k, p := range s.Traffic {
		out.Traffic = append(out.Traffic, storedProfile{Interface: k.Interface, Direction: k.Direction, Hour: k.Hour, ProfileStats: p})
	}
	slices.SortFunc(out.Traffic, func(a, b storedProfile) int {
		return cmp.Or(cmp.Compare(a.Interface, b.Interface), cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Hour, b.Hour))
	})
	return out
}

// readLearned reads and checks a stored state file.
func readLearned(path string) (learnedState, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return learnedState{}, err
	}
	var in storedState
	if err := json.Unmarshal(data, &in); err != nil {
		return learnedState{}, fmt.Errorf("decoding %s: %w", path, err)
	}
	if in.Version != learnedVersion {
		return learnedState{}, fmt.Errorf("decoding %s: version %d, want %d", path, in.Version, learnedVersion)
	}
	return in.state(path)
}

// state checks in and returns it in memory form.
func (in storedState) state(path string) (learnedState, error) {
	st := newLearnedState(in.Started)
	st.Ended = in.Ended
	for i, a := range in.AdminSources {
		if !a.Addr.IsValid() {
			return learnedState{}, fmt.Errorf("decoding %s: admin_sources[%d]: no address", path, i)
		}
		src := a.adminSource
		st.AdminSources[a.Addr.Unmap()] = &src
	}
	for i, d := range in.Destinations {
		if !d.Addr.IsValid() || d.Proto == "" {
			return learnedState{}, fmt.Errorf("decoding %s: destinations[%d]: no address or proto", path, i)
		}
		span := d.seenSpan
		st.Destinations[Destination{Addr: d.Addr.Unmap(), Port: d.Port, Proto: d.Proto}] = &span
	}
	for i, p := range in.Traffic {
		if p.Hour < 0 || p.Hour > 167 || (p.Direction != DirectionRX && p.Direction != DirectionTX) {
			return learnedState{}, fmt.Errorf("decoding %s: traffic[%d]: hour %d or direction %q out of range", path, i, p.Hour, p.Direction)
		}
		st.Traffic[ProfileKey{Interface: p.Interface, Direction: p.Direction, Hour: p.Hour}] = p.ProfileStats
	}
	return st, nil
}

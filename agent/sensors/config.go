package sensors

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// Config is the agent's sensors file (warden agent --sensors FILE): the
// learning period and each watcher, each turned on by its own enabled.
type Config struct {
	Learning LearningConfig    `yaml:"learning"`
	Auth     AuthConfig        `yaml:"auth"`
	Conn     ConnConfig        `yaml:"conn"`
	Volume   VolumeConfig      `yaml:"volume"`
	Health   HealthConfig      `yaml:"health"`
	Config   ConfigWatchConfig `yaml:"config"`
}

// LoadConfig reads a sensors file strictly (an unknown key is an error
// naming it), fills every section's defaults and validates it.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading the sensors file: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // an empty file turns every sensor off
		return Config{}, fmt.Errorf("parsing the sensors file %s: %w", path, err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("the sensors file %s: %w", path, err)
	}
	return c, nil
}

// WithDefaults fills every section's defaults.
func (c Config) WithDefaults() Config {
	c.Learning = c.Learning.WithDefaults()
	c.Auth = c.Auth.WithDefaults()
	c.Conn = c.Conn.WithDefaults()
	c.Volume = c.Volume.WithDefaults()
	c.Health = c.Health.WithDefaults()
	c.Config = c.Config.WithDefaults()
	return c
}

// Validate checks every section, naming sensors.<section>.<field>.
func (c Config) Validate() error {
	return errors.Join(c.Learning.Validate(), c.Auth.Validate(), c.Conn.Validate(), c.Volume.Validate(), c.Health.Validate(), c.Config.Validate())
}

// Enabled names the watchers the file turns on.
func (c Config) Enabled() []string {
	var out []string
	for _, s := range []struct {
		name string
		on   bool
	}{{"auth", c.Auth.Enabled}, {"conn", c.Conn.Enabled}, {"volume", c.Volume.Enabled}, {"health", c.Health.Enabled}, {"config", c.Config.Enabled}} {
		if s.on {
			out = append(out, s.name)
		}
	}
	return out
}

// Built is a sensors file made into running parts.
type Built struct {
	Sensors []Sensor
	Learned *Learned
	Enabled []string
}

// StateDir is where the sensors keep their state in the agent's state
// directory.
func StateDir(agentStateDir string) string { return filepath.Join(agentStateDir, "sensors") }

// Build opens the learned state under stateDir and makes every enabled
// watcher. It must run on the thread of the gateway's network namespace
// (the connection watcher binds it).
func Build(c Config, stateDir string, clk clock.Clock, log *slog.Logger) (Built, error) {
	if clk == nil {
		clk = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := StateDir(stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Built{}, fmt.Errorf("sensors state: %w", err)
	}
	learned, err := OpenLearned(dir, c.Learning, clk)
	if err != nil {
		return Built{}, err
	}
	b := Built{Learned: learned, Enabled: c.Enabled()}
	add := func(s Sensor, err error) error {
		if err == nil {
			b.Sensors = append(b.Sensors, s)
		}
		return err
	}
	var errs []error
	if c.Auth.Enabled {
		errs = append(errs, add(NewAuth(c.Auth, AuthDeps{Learned: learned, Clock: clk, Log: log})))
	}
	if c.Conn.Enabled {
		errs = append(errs, add(NewConn(c.Conn, ConnDeps{Learned: learned, Clock: clk, Log: log})))
	}
	if c.Volume.Enabled {
		errs = append(errs, add(NewVolume(c.Volume, VolumeDeps{Learned: learned, Clock: clk, Log: log})))
	}
	if c.Health.Enabled {
		errs = append(errs, add(NewHealth(c.Health, HealthDeps{StateDir: dir, Clock: clk, Log: log})))
	}
	if c.Config.Enabled {
		errs = append(errs, add(NewConfigWatch(c.Config, ConfigWatchDeps{StateDir: dir, Clock: clk, Log: log})))
	}
	if err := errors.Join(errs...); err != nil {
		return Built{}, fmt.Errorf("building the sensors: %w", err)
	}
	return b, nil
}

// Summary is what the gateway has learned, for `warden sensors show`.
func (l *Learned) Summary(now time.Time, enabled []string, sample int) wire.SensorsSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	learning := l.st.Ended.IsZero() && now.Before(l.st.Started.Add(l.cfg.Period))
	s := wire.SensorsSummary{Enabled: enabled, Learning: learning, LearningStarted: l.st.Started,
		LearningEnds: l.st.Started.Add(l.cfg.Period), Destinations: len(l.st.Destinations), Profiles: len(l.st.Traffic)}
	if !l.st.Ended.IsZero() && l.st.Ended.Before(s.LearningEnds) {
		s.LearningEnds = l.st.Ended
	}
	for a, src := range l.st.AdminSources {
		s.AdminSources = append(s.AdminSources, wire.LearnedSource{Address: a.String(), Users: src.Users, FirstSeen: src.First, LastSeen: src.Last, Count: src.Count})
	}
	slices.SortFunc(s.AdminSources, func(a, b wire.LearnedSource) int { return a.FirstSeen.Compare(b.FirstSeen) })
	for d := range l.st.Destinations {
		if len(s.DestinationSample) == sample {
			break
		}
		s.DestinationSample = append(s.DestinationSample, d.String())
	}
	slices.Sort(s.DestinationSample)
	return s
}

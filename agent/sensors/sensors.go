// Package sensors owns the gateway agent's watchers: small loops that read
// what the gateway itself can see (authentication logs, conntrack events,
// interface counters, processes, configuration files) and turn signs of
// trouble into wire.Findings, which the agent queues and delivers to the
// controller.
//
// Each watcher is one Sensor in its own file with its own config struct
// (YAML tags, an enabled flag, thresholds, Validate naming fields as
// sensors.<watcher>.<field>) and a constructor NewXxx(cfg, deps...). What
// the watchers learn about a normal gateway (admin login sources,
// destinations, the traffic profile) lives in one *Learned.
//
// A sensor decides and emits; it never blocks traffic, changes the host or
// talks to the controller itself. The package is linked into the
// warden-agent binary: it must not import testing, actions, controller,
// store, api or a provider.
package sensors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/warden-ir/warden/agent/wire"
)

// Sensor is one watcher. Run blocks until ctx ends, calling emit for every
// finding; it returns ctx.Err() or the error that stopped it. emit never
// blocks for long (it queues), and may be called from any goroutine the
// sensor starts, but never after Run has returned.
type Sensor interface {
	Name() string
	Run(ctx context.Context, emit func(wire.Finding)) error
}

// Finding kinds (wire.Finding.Kind), each the indicator kind the controller
// files the finding under.
const (
	KindAuthFailureBurst   = "auth_failure_burst"
	KindOffHoursAdminLogin = "off_hours_admin_login"
	KindNewAdminSource     = "new_admin_source"
	KindUnknownDestination = "unknown_destination"
	KindTrafficSpike       = "traffic_spike"
	KindCrash              = "crash"
	KindConfigChange       = "config_change"
)

// Severities (wire.Finding.Severity).
const (
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// RunAll runs every sensor in its own goroutine until ctx ends, passing
// emit to each after stamping the finding's Sensor with the sensor's name
// when the sensor left it empty. A sensor that stops early with an error is
// logged and does not stop the others: one broken watcher should not blind
// the rest. RunAll returns once all have returned, with the errors of
// those that stopped for a reason other than ctx ending, each naming its
// sensor.
func RunAll(ctx context.Context, log *slog.Logger, emit func(wire.Finding), sensors ...Sensor) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, s := range sensors {
		name := s.Name()
		wg.Go(func() {
			err := s.Run(ctx, stamped(name, emit))
			if err == nil || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
				return
			}
			log.Error("sensor stopped", "sensor", name, "err", err)
			mu.Lock()
			errs = append(errs, fmt.Errorf("running sensor %s: %w", name, err))
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stamped returns emit with f.Sensor defaulted to name.
func stamped(name string, emit func(wire.Finding)) func(wire.Finding) {
	return func(f wire.Finding) {
		if f.Sensor == "" {
			f.Sensor = name
		}
		emit(f)
	}
}

// ParsePrefixes parses CIDRs (or bare addresses, taken as /32 or /128) from
// config, naming field (sensors.auth.management) and the bad entry in its
// error. Prefixes are masked, so 10.1.2.3/8 is 10.0.0.0/8.
func ParsePrefixes(field string, cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for i, s := range cidrs {
		p, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q is not a CIDR or address: %w", field, i, s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// InPrefixes reports whether addr (IPv4-mapped IPv6 taken as IPv4) is in
// any of prefixes.
func InPrefixes(prefixes []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// WriteFileAtomic replaces dir/name with data (mode perm) through a
// temporary file in dir, fsync, rename and a directory fsync: a crash
// leaves the old file or the new one, never a torn one.
func WriteFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("creating a temporary file for %s: %w", name, err)
	}
	tmpName := tmp.Name()
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmpName, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmpName)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// syncDir fsyncs the directory dir, so that a rename or a create in it
// survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkSeverity returns an error naming field (sensors.conn.forwarded_severity)
// when s is not one of the severities, else nil.
func checkSeverity(field, s string) error {
	if slices.Contains([]string{SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}, s) {
		return nil
	}
	return fmt.Errorf("%s: %q is not low, medium, high or critical", field, s)
}

package netlab

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// mesh is what a tunnel mesh (WireGuard or strongSwan) keeps of its sites:
// each site's description, in the order they were given, and the daemon
// running for it.
type mesh[S any] struct {
	sites map[string]S
	order []string

	mu      sync.Mutex
	daemons map[string]*daemon
	closed  bool
}

func (m *mesh[S]) add(name string, s S) {
	if m.sites == nil {
		m.sites = map[string]S{}
	}
	m.sites[name] = s
	m.order = append(m.order, name)
}

// Sites returns every site of the mesh, in the order they were given.
func (m *mesh[S]) Sites() []S {
	out := make([]S, 0, len(m.order))
	for _, n := range m.order {
		out = append(out, m.sites[n])
	}
	return out
}

// Site returns the named site of the mesh.
func (m *mesh[S]) Site(name string) (S, bool) {
	s, ok := m.sites[name]
	return s, ok
}

// started records the daemon running for a site; the caller holds m.mu.
func (m *mesh[S]) started(name string, d *daemon) {
	if m.daemons == nil {
		m.daemons = map[string]*daemon{}
	}
	m.daemons[name] = d
}

// Crash kills site's daemon with SIGKILL, as a crash would (no shutdown,
// no cleanup), and waits until it is reaped. The mesh's Close still
// succeeds afterwards.
func (m *mesh[S]) Crash(site string) error {
	m.mu.Lock()
	d := m.daemons[site]
	m.mu.Unlock()
	if d == nil {
		return fmt.Errorf("crashing %q: no daemon runs for that site", site)
	}
	if !d.running() {
		return fmt.Errorf("crashing %s: it has already exited", d.name)
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("crashing %s (pid %d): still running after SIGKILL", d.name, d.cmd.Process.Pid)
	}
}

// stop stops every daemon of the mesh, giving each grace to exit, and
// removes the socket it served on (socket names it for a site). Only the
// first call does anything.
func (m *mesh[S]) stop(grace time.Duration, socket func(S) string) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	daemons := m.daemons
	m.mu.Unlock()
	var errs []error
	for name, d := range daemons {
		if err := d.stop(grace); err != nil {
			errs = append(errs, err)
		}
		sock := socket(m.sites[name])
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", sock, err))
		}
	}
	return errors.Join(errs...)
}

// meshSiteNames are the sites a mesh is asked for, or every site of the
// lab when none is named.
func (l *Lab) meshSiteNames(names []string) []string {
	if len(names) > 0 {
		return names
	}
	for _, s := range l.sites {
		names = append(names, s.Name)
	}
	return names
}

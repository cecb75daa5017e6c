package netlab

import (
	"net"
	"sync"
)

// connSet is the open connections of a server, so that closing the server
// cuts them rather than waiting for their peers.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// add tracks cs; once the set is closed it tracks nothing and reports
// false, and the caller closes cs itself.
func (s *connSet) add(cs ...net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	for _, c := range cs {
		s.conns[c] = struct{}{}
	}
	return true
}

func (s *connSet) remove(cs ...net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		delete(s.conns, c)
	}
}

// close closes every tracked connection and refuses new ones. It reports
// false when the set was already closed.
func (s *connSet) close() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.done = true
	for c := range s.conns {
		_ = c.Close()
	}
	return true
}

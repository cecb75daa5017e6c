package testsupport

import (
	"net"
	"testing"
)

// ServeUnix listens on the unix socket at path until the test ends and
// hands each connection to serve, in its own goroutine.
func ServeUnix(t testing.TB, path string, serve func(net.Conn)) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
}

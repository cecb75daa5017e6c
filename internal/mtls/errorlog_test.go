package mtls

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// levelRecorder keeps the level and message of every record.
type levelRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *levelRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}
func (r *levelRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *levelRecorder) WithGroup(string) slog.Handler      { return r }

// next waits for the next record after n.
func (r *levelRecorder) next(t *testing.T, n int) slog.Record {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		if len(r.records) > n {
			rec := r.records[n]
			r.mu.Unlock()
			return rec
		}
		r.mu.Unlock()
	}
	t.Fatalf("no record after %d", n)
	return slog.Record{}
}

// TestServerErrorLog: a mutual-TLS server logs a client refused for its
// certificate as a warning, and a bare TCP connection opened and closed
// (the controller's probe through a quarantine) only at debug.
func TestServerErrorLog(t *testing.T) {
	p := newPKI(t)
	srv, err := Load(p.files("server"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &levelRecorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: srv.Server(), ErrorLog: ServerErrorLog(rec)}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })

	// A bare TCP probe.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if r := rec.next(t, 0); r.Level != slog.LevelDebug || !strings.Contains(r.Message, "TLS handshake error") || !strings.HasSuffix(r.Message, ": EOF") {
		t.Fatalf("a bare TCP probe logged %s %q, want a debug handshake EOF", r.Level, r.Message)
	}

	// A TLS client without a certificate.
	cc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: srv.CAs, ServerName: "agent.test"})
	if err == nil {
		_, _ = cc.Write([]byte("GET / HTTP/1.1\r\nHost: agent.test\r\n\r\n"))
		_, _ = cc.Read(make([]byte, 1))
		_ = cc.Close()
	}
	if r := rec.next(t, 1); r.Level != slog.LevelWarn || !strings.Contains(r.Message, "certificate") {
		t.Fatalf("a client without a certificate logged %s %q, want a warning naming the certificate", r.Level, r.Message)
	}
}

package mtls

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// ServerErrorLog is the ErrorLog of an http.Server speaking mutual TLS:
// what net/http reports (refused handshakes: no certificate, another CA)
// goes to h as a warning, except a handshake the client ended before its
// first message ("TLS handshake error from ADDR: EOF"). That one is a bare
// TCP connection opened and closed (the controller proving it can still
// open one through a quarantine, a load balancer's health check, a port
// scan): it carries no certificate to refuse, and is logged at debug.
func ServerErrorLog(h slog.Handler) *log.Logger {
	return log.New(errorLogWriter{slog.New(h)}, "", 0)
}

type errorLogWriter struct{ log *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error from ") && strings.HasSuffix(msg, ": EOF") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

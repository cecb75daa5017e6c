package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/warden-ir/warden/api"
	"github.com/warden-ir/warden/internal/mtls"
)

// AgentListener says where the controller takes its agents' findings and
// with which mutual-TLS material: server.agent_listen, the listener's
// certificate and key (agents.server_cert_file, agents.server_key_file),
// and the CA the agents' certificates must chain to (agents.ca_file).
type AgentListener struct {
	Addr              string
	CertFile, KeyFile string
	CAFile            string
}

// AgentIntake is the controller's listener for its agents: POST
// /v1/agent/findings (api.NewAgentIntake) over mutual TLS, apart from the
// public API, so that only a client certificate of the agents' CA reaches
// it and the route is nowhere else.
type AgentIntake struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// ListenAgents loads l's TLS material, builds the agents' intake over d's
// controller and binds l.Addr (":0" picks a free port). Nothing is served
// until Serve. Bad material is an error naming the file, before anything
// is bound.
func (d *Daemon) ListenAgents(l AgentListener) (*AgentIntake, error) {
	if l.Addr == "" || l.CertFile == "" || l.KeyFile == "" || l.CAFile == "" {
		return nil, errors.New("listening for agents: server.agent_listen, agents.server_cert_file, agents.server_key_file and agents.ca_file are all required")
	}
	tlsCfg, err := mtls.Files{CertFile: l.CertFile, KeyFile: l.KeyFile, CAFile: l.CAFile,
		CertName: "agent listener certificate (agents.server_cert_file)", CAName: "agents' CA (agents.ca_file)"}.Server()
	if err != nil {
		return nil, fmt.Errorf("listening for agents: %w", err)
	}
	log := d.Log.With("component", "agents")
	h, err := api.NewAgentIntake(api.AgentIntakeOptions{
		Controller: d.Controller, MaxBodyBytes: d.Config.Server.MaxBodyBytes, StoreHealth: d.writable, StoreRetryAfter: d.probeEvery,
		Log: log, Ledger: d.Ledger,
	})
	if err != nil {
		return nil, fmt.Errorf("listening for agents: %w", err)
	}
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening for agents on %s: %w", l.Addr, err)
	}
	srv := &http.Server{
		Handler: h, TLSConfig: tlsCfg,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		// Refused handshakes (no certificate, another CA, no client-auth
		// usage) are worth a warning, not stderr; a bare TCP probe is not.
		ErrorLog: mtls.ServerErrorLog(log.Handler()),
	}
	return &AgentIntake{ln: ln, srv: srv, log: log}, nil
}

// Addr is the bound address ("" for a nil intake).
func (a *AgentIntake) Addr() string {
	if a == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Serve serves the agents until ctx ends, then stops taking connections
// and waits (up to 10 s) for the requests in flight, whose findings the
// controller is storing. It returns nil then, or the error that stopped
// it. A nil intake (no server.agent_listen) just waits for ctx, so that
// the caller can treat both alike.
func (a *AgentIntake) Serve(ctx context.Context) error {
	if a == nil {
		<-ctx.Done()
		return nil
	}
	errc := make(chan error, 1)
	go func() { errc <- a.srv.ServeTLS(a.ln, "", "") }()
	a.log.Info("serving agents", "addr", a.ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving agents: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := a.srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("stopping the agents' listener: %w", err)
	}
	return nil
}

// Close releases the listener of an intake that is not served.
func (a *AgentIntake) Close() error {
	if a == nil {
		return nil
	}
	return a.ln.Close()
}

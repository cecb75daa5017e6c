package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/clock"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/fault"
	"github.com/warden-ir/warden/internal/mtls"
)

// opTimeout bounds one command's or one timer's work on the gateway.
const opTimeout = time.Minute

// Server is a running agent: the HTTPS API, the quarantine record, the
// commit-confirmed timer and the self-heal loop.
type Server struct {
	cfg     Config
	deps    Deps
	clock   clock.Clock
	log     *slog.Logger
	tls     *tls.Config
	handler http.Handler
	started time.Time
	nonces  *replayGuard
	epochs  *epochGuard
	// capturing admits one capture at a time.
	capturing chan struct{}
	// bg is the context of timer work; cancelled by Close.
	bg       context.Context
	cancelBG context.CancelFunc

	// mu serialises every change to the gateway and to rec.
	mu           sync.Mutex
	rec          record
	blocks       blockRecord
	confirmTimer clock.Timer
	healTimer    clock.Timer
	closed       bool

	// iocMu serialises the IoC blocklist (ioc_block) and guards ioc. It is
	// its own lock, not mu: replacing 100,000 prefixes takes a second,
	// which must not hold up an isolate.
	iocMu sync.Mutex
	ioc   iocRecord
}

// New checks cfg and deps, loads the TLS material, the quarantine record
// and the nonce journal. It does not touch the gateway: Serve re-applies a
// recorded quarantine before it accepts a connection.
func New(cfg Config, deps Deps, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Firewall == nil || deps.KillFlows == nil {
		return nil, errors.New("building agent: a firewall and a flow killer are required")
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsConf, err := serverTLS(cfg)
	if err != nil {
		return nil, err
	}
	if err := prepareStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	rec, err := loadRecord(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	blocks, err := loadBlocks(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	ioc, err := loadIOC(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	now := deps.Clock.Now()
	nonces, err := openReplayGuard(cfg.StateDir, now, cfg.MaxNonces)
	if err != nil {
		return nil, err
	}
	nonces.remember(rec.Nonces, now)
	epochs, err := openEpochGuard(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, deps: deps, clock: deps.Clock, log: log, tls: tlsConf,
		started: now, nonces: nonces, epochs: epochs, capturing: make(chan struct{}, 1),
		bg: bg, cancelBG: cancel, rec: rec, blocks: blocks, ioc: ioc,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.CommandsPath, s.handleCommand)
	mux.HandleFunc("GET "+wire.HealthPath, s.handleHealth)
	s.handler = s.requireController(mux)
	return s, nil
}

// serverTLS builds the mutual-TLS configuration: TLS 1.3 only, and a
// client certificate that chains to the configured CA is required.
func serverTLS(cfg Config) (*tls.Config, error) {
	return mtls.Files{
		CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, CAFile: cfg.ClientCAFile,
		CertName: "agent certificate", CAName: "client CA",
	}.Server()
}

// TLSConfig returns a copy of the agent's mutual-TLS configuration, for
// serving Handler elsewhere (an httptest server, a wrapping handler).
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// Handler is the API, for tests and for embedding. It refuses every
// request that did not arrive over mutual TLS from the controller.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on cfg.Listen and serves until ctx ends, then closes s.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve re-applies a recorded quarantine (a pending one gets a fresh
// confirm window), the recorded peer blocks and the recorded IoC
// blocklist, starts the self-heal loop, and serves the API over TLS on ln
// until ctx ends. When it returns, the agent's timers have stopped.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.restore(ctx)
	s.restoreBlocks(ctx)
	s.restoreIOC(ctx)
	s.mu.Lock()
	s.scheduleHealLocked()
	s.mu.Unlock()
	defer s.stopTimers()

	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      opTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		// Refused handshakes (no or foreign client certificate) land here;
		// a bare TCP probe of the listener only at debug.
		ErrorLog:    mtls.ServerErrorLog(s.log.Handler()),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Info("agent serving", "addr", ln.Addr().String(), "controller", s.cfg.ControllerIdentity)
	err := srv.ServeTLS(ln, "", "")
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving agent API: %w", err)
}

// stopTimers stops the confirm timer and the heal loop for good.
func (s *Server) stopTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.confirmTimer != nil {
		s.confirmTimer.Stop()
		s.confirmTimer = nil
	}
	if s.healTimer != nil {
		s.healTimer.Stop()
		s.healTimer = nil
	}
}

// Close stops the timers and closes the nonce journal. It leaves the
// gateway as it is: a quarantine stays in force.
func (s *Server) Close() error {
	s.stopTimers()
	s.cancelBG()
	return s.nonces.close()
}

// State returns the agent's quarantine record and recorded blocks
// (without the firewall read back).
func (s *Server) State() wire.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.rec.view()
	st.Blocked = s.blocks.view()
	st.AgentStarted = s.started
	st.LeaseEpoch = s.epochs.highest()
	return st
}

// requireController admits only requests over mutual TLS whose verified
// client certificate names the controller.
func (s *Server) requireController(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkController(r); err != nil {
			s.log.Warn("refusing caller", "remote", r.RemoteAddr, "reason", err.Error())
			writeError(w, http.StatusForbidden, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) checkController(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return errors.New("a verified client certificate is required")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if !certNames(leaf, s.cfg.ControllerIdentity) {
		return fmt.Errorf("client certificate %q does not name the controller", leaf.Subject.CommonName)
	}
	return nil
}

// certNames reports whether cert carries name as CommonName, DNS SAN or
// URI SAN.
func certNames(cert *x509.Certificate, name string) bool {
	if cert.Subject.CommonName == name {
		return true
	}
	for _, d := range cert.DNSNames {
		if d == name {
			return true
		}
	}
	for _, u := range cert.URIs {
		if u.String() == name {
			return true
		}
	}
	return false
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Error kinds mapped to status codes in statusOf.
var (
	errNoCapture       error = notAvailable("evidence capture is not available on this agent")
	errNoInvestigate   error = notAvailable("investigation is not available on this agent")
	errNoPacketCapture error = notAvailable("packet capture is not available on this agent")
	errNoBaseline      error = notAvailable("baseline checks are not available on this agent")
	errNoPatch         error = notAvailable("patching is not available on this agent")
	errNoSensors       error = notAvailable("no sensors run on this agent (warden agent --sensors FILE)")
	errNoWireGuard     error = notAvailable("WireGuard control is not available on this agent")
	errNoVICI          error = notAvailable("strongSwan (VICI) control is not available on this agent")
	errNoBlocker       error = notAvailable("peer blocking is not available on this agent")
	errNoIOCBlock      error = notAvailable("IoC blocking is not available on this agent")
	errStopping              = errors.New("agent is stopping")
)

// notAvailable is a seam this agent runs without: every one answers 501.
type notAvailable string

func (e notAvailable) Error() string { return string(e) }

// paramError is a request the agent refuses as malformed (400).
type paramError struct{ err error }

func (e *paramError) Error() string { return e.err.Error() }
func (e *paramError) Unwrap() error { return e.err }

func badParams(err error) error { return &paramError{err} }

// conflictError is a command that contradicts the agent's state (409).
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

func conflict(format string, args ...any) error {
	return &conflictError{fmt.Sprintf(format, args...)}
}

func statusOf(err error) int {
	var pe *paramError
	var ce *conflictError
	switch {
	case errors.As(err, &pe), errors.Is(err, ErrInvalidParams):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errReplay), errors.As(err, &ce):
		return http.StatusConflict
	case errors.As(err, new(*staleEpochError)):
		return wire.StatusStaleEpoch
	case errors.Is(err, errTooManyNonces):
		return http.StatusTooManyRequests
	case errors.As(err, new(notAvailable)):
		return http.StatusNotImplemented
	case errors.Is(err, errStopping), errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case fault.IsTerminal(err):
		return http.StatusUnprocessableEntity
	default:
		return http.StatusInternalServerError
	}
}

// handleCommand authenticates nothing itself (requireController did):
// it decodes the command, refuses stale, premature, over-long and replayed
// ones, journals the nonce, then runs the command.
func (s *Server) handleCommand(w http.ResponseWriter, r *http.Request) {
	start := s.clock.Now()
	cmd, err := decodeCommand(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		status := http.StatusBadRequest
		if errors.As(err, &mbe) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, err)
		return
	}
	log := s.log.With("kind", cmd.Kind, "id", cmd.ID, "remote", r.RemoteAddr, "epoch", cmd.Epoch)
	until, err := s.checkFreshness(cmd, start)
	if err == nil {
		// Before the nonce: a deposed leader's command is refused whole.
		err = s.epochs.admit(cmd.Epoch, start)
	}
	var nonce *commandNonce
	switch {
	case err == nil && wire.ReadOnly(cmd.Kind):
		err = s.nonces.admitReadOnly(cmd.ID, until, start)
	case err == nil && recordsItsNonce(cmd.Kind):
		if err = s.nonces.admitUnsynced(cmd.ID, until, start); err == nil {
			nonce = &commandNonce{id: cmd.ID, until: until, g: s.nonces}
		}
	case err == nil:
		err = s.nonces.admit(cmd.ID, until, start)
	}
	if err != nil {
		status := statusOf(err)
		if status == http.StatusConflict {
			log.Warn("refusing replayed command")
		} else {
			log.Warn("refusing command", "error", err.Error())
		}
		writeError(w, status, err)
		return
	}
	o := origin{nonce: nonce}
	if ap, perr := netip.ParseAddrPort(r.RemoteAddr); perr == nil {
		o.caller = ap.Addr().Unmap()
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, perr := netip.ParseAddrPort(la.String()); perr == nil {
			o.local = ap.Addr().Unmap()
		}
	}
	// Work on the gateway must not stop half-way because the controller
	// hung up: it is bounded by opTimeout instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), opTimeout)
	defer cancel()
	result, err := s.execute(ctx, cmd, o)
	// No answer before the nonce is on disk, whatever the command did.
	if nerr := nonce.durable(); nerr != nil && err == nil {
		err = nerr
	}
	if err != nil {
		status := statusOf(err)
		log.Warn("command failed", "status", status, "error", err.Error())
		writeError(w, status, err)
		return
	}
	status := writeJSON(w, http.StatusOK, result)
	level := slog.LevelInfo
	if cmd.Kind == wire.KindObserve {
		level = slog.LevelDebug // the controller polls; keep the log for changes
	}
	log.Log(ctx, level, "command done", "status", status, "took", s.clock.Now().Sub(start))
}

func decodeCommand(w http.ResponseWriter, r *http.Request) (wire.Command, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return wire.Command{}, fmt.Errorf("content type %q: want application/json", ct)
		}
	}
	// Only an ioc_block may exceed MaxRequestBytes (a threat-intelligence
	// set is megabytes); the kind is known once the body is decoded, so the
	// body is read up to the larger limit and every other kind is held to
	// the small one after. The caller is the authenticated controller.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxIOCRequestBytes))
	if err != nil {
		return wire.Command{}, fmt.Errorf("reading command: %w", err)
	}
	var cmd wire.Command
	if err := decodeStrict(bytes.NewReader(body), &cmd); err != nil {
		return wire.Command{}, fmt.Errorf("decoding command: %w", err)
	}
	if len(body) > wire.MaxRequestBytes && cmd.Kind != wire.KindIOCBlock {
		return wire.Command{}, fmt.Errorf("%s command of %d bytes: %w", cmd.Kind, len(body), &http.MaxBytesError{Limit: wire.MaxRequestBytes})
	}
	return cmd, nil
}

// recordsItsNonce reports the kinds on the path to a confirmed quarantine
// (isolate, confirm): the quarantine record each commits carries its
// nonce (record.Nonces), one disk flush instead of two. Every other kind
// that changes something has its nonce on disk before it runs.
func recordsItsNonce(kind string) bool {
	return kind == wire.KindIsolate || kind == wire.KindConfirm
}

// commandNonce is the nonce of a command admitted unsynced
// (admitUnsynced): on disk once the command commits a record carrying it
// (recorded) or once durable fsyncs the journal. A nil *commandNonce is
// on disk already.
type commandNonce struct {
	id    string
	until time.Time
	g     *replayGuard
	done  bool
}

// recorded says the record just committed carries the nonce.
func (n *commandNonce) recorded() {
	if n != nil {
		n.done = true
	}
}

// durable puts the nonce on disk, unless it is already: the command calls
// it before it changes the gateway without such a record, and the answer
// waits for it.
func (n *commandNonce) durable() error {
	if n == nil || n.done {
		return nil
	}
	if err := n.g.flush(); err != nil {
		return err
	}
	n.done = true
	return nil
}

// checkFreshness validates the envelope and returns until when its nonce
// must be remembered: the last instant the command could be accepted.
func (s *Server) checkFreshness(c wire.Command, now time.Time) (time.Time, error) {
	skew := s.cfg.ClockSkew
	switch {
	case !wire.ValidNonce(c.ID):
		return time.Time{}, badParams(errors.New("command id must be 32 lower-case hex digits (128 random bits)"))
	case c.IssuedAt.IsZero() || c.ExpiresAt.IsZero():
		return time.Time{}, badParams(errors.New("command needs issued_at and expires_at"))
	case !c.ExpiresAt.After(c.IssuedAt):
		return time.Time{}, badParams(errors.New("command expires before it was issued"))
	case c.ExpiresAt.Sub(c.IssuedAt) > s.cfg.MaxTTL:
		return time.Time{}, badParams(fmt.Errorf("command lifetime %s exceeds the agent's maximum %s", c.ExpiresAt.Sub(c.IssuedAt), s.cfg.MaxTTL))
	case c.IssuedAt.After(now.Add(skew)):
		return time.Time{}, badParams(fmt.Errorf("command issued %s in the future (allowed clock skew %s)", c.IssuedAt.Sub(now).Round(time.Millisecond), skew))
	case c.ExpiresAt.After(now.Add(s.cfg.MaxTTL + skew)):
		return time.Time{}, badParams(fmt.Errorf("command expires %s from now, more than the agent's maximum %s", c.ExpiresAt.Sub(now).Round(time.Millisecond), s.cfg.MaxTTL))
	case !now.Before(c.ExpiresAt.Add(skew)):
		return time.Time{}, badParams(fmt.Errorf("command expired %s ago", now.Sub(c.ExpiresAt).Round(time.Millisecond)))
	}
	return c.ExpiresAt.Add(skew), nil
}

// execute runs one admitted command. Parameters are never logged: some
// carry keys.
func (s *Server) execute(ctx context.Context, c wire.Command, o origin) (any, error) {
	switch c.Kind {
	case wire.KindIsolate:
		return runWithParams(ctx, c.Params, func(ctx context.Context, p wire.IsolateParams) (wire.IsolateResult, error) {
			return s.isolate(ctx, p, o.caller, o.nonce)
		})
	case wire.KindConfirm:
		return runWithParams(ctx, c.Params, func(ctx context.Context, p wire.ConfirmParams) (wire.ConfirmResult, error) {
			return s.confirm(ctx, p, o.nonce)
		})
	case wire.KindRelease:
		return runWithParams(ctx, c.Params, func(ctx context.Context, _ struct{}) (wire.ReleaseResult, error) {
			return s.release(ctx)
		})
	case wire.KindObserve:
		return runWithParams(ctx, c.Params, func(ctx context.Context, _ struct{}) (wire.State, error) {
			st, err := s.observe(ctx)
			if err != nil {
				return st, err
			}
			st.Blocked, st.BlockEnforced = s.blockedState(ctx)
			return st, nil
		})
	case wire.KindKillFlows:
		return runWithParams(ctx, c.Params, s.killFlows)
	case wire.KindCapture:
		return runWithParams(ctx, c.Params, s.capture)
	case wire.KindInvestigate:
		return runWithParams(ctx, c.Params, optionalSeam(s.deps.Investigate, errNoInvestigate, "investigating"))
	case wire.KindPacketCapture:
		return runWithParams(ctx, c.Params, optionalSeam(s.deps.PacketCapture, errNoPacketCapture, "capturing packets"))
	case wire.KindBaseline:
		return runWithParams(ctx, c.Params, optionalSeam(s.deps.Baseline, errNoBaseline, "checking the baseline"))
	case wire.KindPatch:
		return runWithParams(ctx, c.Params, optionalSeam(s.deps.Patch, errNoPatch, "patching"))
	case wire.KindSensors:
		return runWithParams(ctx, c.Params, optionalSeam(s.deps.Sensors, errNoSensors, "reading the sensors"))
	case wire.KindWireGuard:
		return runWithParams(ctx, c.Params, s.wireGuard)
	case wire.KindVICI:
		return runWithParams(ctx, c.Params, s.vici)
	case wire.KindBlock:
		return runWithParams(ctx, c.Params, func(ctx context.Context, p wire.BlockParams) (wire.BlockResult, error) {
			return s.block(ctx, p, o)
		})
	case wire.KindIOCBlock:
		return runWithParams(ctx, c.Params, func(ctx context.Context, p wire.IOCBlockParams) (wire.IOCBlockResult, error) {
			return s.iocBlock(ctx, p, o)
		})
	default:
		return nil, badParams(fmt.Errorf("unknown command kind %q (want one of %v)", c.Kind, wire.Kinds()))
	}
}

// runWithParams decodes a command's parameters strictly into a P (a
// struct{} for kinds that take none) and runs the command with them; a
// result that comes with an error is dropped.
func runWithParams[P, R any](ctx context.Context, raw json.RawMessage, run func(context.Context, P) (R, error)) (any, error) {
	var p P
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	res, err := run(ctx, p)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// optionalSeam runs one of the agent's optional seams (see Deps): missing
// when this agent has none, its error wrapped with what it was doing.
func optionalSeam[P, R any](seam func(context.Context, P) (R, error), missing error, doing string) func(context.Context, P) (R, error) {
	return func(ctx context.Context, p P) (R, error) {
		if seam == nil {
			var zero R
			return zero, missing
		}
		res, err := seam(ctx, p)
		if err != nil {
			return res, fmt.Errorf("%s: %w", doing, err)
		}
		return res, nil
	}
}

func (s *Server) capture(ctx context.Context, p wire.CaptureParams) (wire.CaptureResult, error) {
	if s.deps.Capture == nil {
		return wire.CaptureResult{}, errNoCapture
	}
	select {
	case s.capturing <- struct{}{}:
		defer func() { <-s.capturing }()
	case <-ctx.Done():
		return wire.CaptureResult{}, fmt.Errorf("waiting for the running capture: %w", ctx.Err())
	}
	res, err := s.deps.Capture(ctx, p)
	if err != nil {
		return wire.CaptureResult{}, fmt.Errorf("capturing volatile evidence: %w", err)
	}
	return res, nil
}

// decodeParams decodes a command's parameters strictly; absent parameters
// leave v at its zero value.
func decodeParams(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	if err := decodeStrict(bytes.NewReader(raw), v); err != nil {
		return badParams(fmt.Errorf("decoding parameters: %w", err))
	}
	return nil
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// writeJSON writes v, or a 422 when it would exceed the response limit
// the client enforces. It returns the status written.
func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, mustErrorBody(fmt.Errorf("encoding result: %w", err))
	} else if len(b) > wire.MaxResponseBytes {
		status, b = http.StatusUnprocessableEntity, mustErrorBody(fmt.Errorf("result of %d bytes exceeds the %d-byte response limit", len(b), wire.MaxResponseBytes))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return status
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, wire.Error{Error: err.Error()})
}

func mustErrorBody(err error) []byte {
	b, _ := json.Marshal(wire.Error{Error: err.Error()})
	return b
}

// iocBlock replaces the gateway's IoC blocklist with p.Prefixes (p.Set) or
// only reads it back, and reports it as read back from the kernel. A
// replacement is recorded (ioc.json) before the kernel changes, so a crash
// in between is repaired at start; a set the kernel refuses as such (one
// holding the host's own address) is forgotten again. No prefix may touch
// what stays reachable (loopback, the management networks, the
// controller↔agent path, a quarantine's networks). Replacing the set with
// the same set changes nothing.
func (s *Server) iocBlock(ctx context.Context, p wire.IOCBlockParams, o origin) (wire.IOCBlockResult, error) {
	start := s.clock.Now()
	parsed, err := parseIOCParams(p)
	if err != nil {
		return wire.IOCBlockResult{}, err
	}
	if s.deps.IOCBlocker == nil {
		return wire.IOCBlockResult{}, errNoIOCBlock
	}
	s.mu.Lock()
	closed, keep := s.closed, s.keptLocked(o)
	s.mu.Unlock()
	if closed {
		return wire.IOCBlockResult{}, errStopping
	}
	if err := refuseKept(parsed, keep); err != nil {
		return wire.IOCBlockResult{}, err
	}
	want, err := wire.NormalizePrefixes(parsed)
	if err != nil {
		return wire.IOCBlockResult{}, badParams(err)
	}

	s.iocMu.Lock()
	defer s.iocMu.Unlock()
	changed := false
	if p.Set {
		if changed, err = s.setIOCLocked(ctx, want); err != nil {
			return wire.IOCBlockResult{}, err
		}
	}
	obs, err := s.deps.IOCBlocker.Observe(ctx)
	if err != nil {
		return wire.IOCBlockResult{}, fmt.Errorf("reading the IoC blocklist back: %w", err)
	}
	res := iocResult(obs, s.ioc.Prefixes)
	res.Changed = changed
	res.Took = wire.Duration(s.clock.Now().Sub(start).Round(time.Millisecond))
	if changed {
		s.log.Info("IoC blocklist set", "prefixes", len(want), "count", res.Count, "enforced", res.Enforced, "took", time.Duration(res.Took))
	}
	return res, nil
}

// parseIOCParams checks an ioc_block's parameters and parses its prefixes
// (addresses count as /32 or /128), in the order given.
func parseIOCParams(p wire.IOCBlockParams) ([]netip.Prefix, error) {
	switch {
	case !p.Set && len(p.Prefixes) > 0:
		return nil, badParams(errors.New("prefixes: only a set (set: true) takes prefixes; an observe takes none"))
	case len(p.Prefixes) > wire.MaxIOCPrefixes:
		return nil, badParams(fmt.Errorf("prefixes: %d of them, at most %d", len(p.Prefixes), wire.MaxIOCPrefixes))
	}
	out := make([]netip.Prefix, 0, len(p.Prefixes))
	for i, a := range p.Prefixes {
		pfx, err := parseBlockPrefix(strings.TrimSpace(a))
		if err != nil {
			return nil, badParams(fmt.Errorf("prefixes[%d]: %w", i, err))
		}
		out = append(out, pfx)
	}
	return out, nil
}

// refuseKept refuses any prefix overlapping what stays reachable (see
// keptLocked), naming its index.
func refuseKept(ps, keep []netip.Prefix) error {
	for i, pfx := range ps {
		for _, k := range keep {
			if pfx.Overlaps(k) {
				return badParams(fmt.Errorf("prefixes[%d]: %s overlaps %s, which stays reachable (loopback, management, forensics or the controller↔agent path)", i, pfx, k))
			}
		}
	}
	return nil
}

// setIOCLocked records want and makes the kernel's IoC blocklist exactly
// it. The caller holds s.iocMu.
func (s *Server) setIOCLocked(ctx context.Context, want []netip.Prefix) (bool, error) {
	prev := s.ioc
	recorded := !slices.Equal(prev.Prefixes, want)
	if recorded {
		next := iocRecord{Version: iocVersion, Prefixes: want}
		if err := saveIOC(s.cfg.StateDir, next); err != nil {
			return false, err
		}
		s.ioc = next
	}
	changed, err := s.deps.IOCBlocker.Set(ctx, want)
	if err == nil {
		return recorded || changed, nil
	}
	err = fmt.Errorf("applying the IoC blocklist: %w", err)
	if recorded && errors.Is(err, ErrInvalidParams) {
		// The kernel side refused the set as such: forget it rather than
		// fail every restart on it.
		if rerr := saveIOC(s.cfg.StateDir, prev); rerr != nil {
			return false, errors.Join(err, fmt.Errorf("forgetting the refused IoC blocklist: %w", rerr))
		}
		s.ioc = prev
	}
	return false, err
}

// iocResult compares the IoC blocklist read back from the kernel with the
// recorded one: enforced when the kernel drops exactly the recorded
// prefixes, intact, or holds nothing at all when none is recorded.
func iocResult(obs BlockObservation, recorded []netip.Prefix) wire.IOCBlockResult {
	kernel, err := wire.NormalizePrefixes(obs.Prefixes)
	if err != nil {
		kernel = obs.Prefixes // no invalid prefix comes back from the kernel
	}
	res := wire.IOCBlockResult{
		Backend: obs.Backend, Count: len(kernel), Digest: wire.PrefixDigest(kernel),
		Faults: slices.Clone(obs.Faults),
	}
	if len(recorded) == 0 {
		if len(kernel) > 0 {
			res.Faults = append(res.Faults, fmt.Sprintf("the kernel blocks %d prefixes, none recorded", len(kernel)))
		}
		res.Enforced = len(res.Faults) == 0
		return res
	}
	missing, extra := prefixDifference(recorded, kernel)
	for _, d := range []struct {
		ps   []netip.Prefix
		what string
	}{{missing, "recorded but not blocked by the kernel"}, {extra, "blocked by the kernel but not recorded"}} {
		if len(d.ps) > 0 {
			res.Faults = append(res.Faults, fmt.Sprintf("%d prefixes %s: %s", len(d.ps), d.what, firstPrefixes(d.ps, 5)))
		}
	}
	res.Enforced = obs.Enforced && len(res.Faults) == 0
	return res
}

// prefixDifference lists the prefixes of two sorted normal forms that only
// a holds and only b holds.
func prefixDifference(a, b []netip.Prefix) (onlyA, onlyB []netip.Prefix) {
	cmpPrefix := func(x, y netip.Prefix) int {
		if c := x.Addr().Compare(y.Addr()); c != 0 {
			return c
		}
		return x.Bits() - y.Bits()
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && cmpPrefix(a[i], b[j]) < 0:
			onlyA = append(onlyA, a[i])
			i++
		case i == len(a) || cmpPrefix(a[i], b[j]) > 0:
			onlyB = append(onlyB, b[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return onlyA, onlyB
}

// firstPrefixes prints up to n prefixes, and how many more there are.
func firstPrefixes(ps []netip.Prefix, n int) string {
	var b strings.Builder
	for i, p := range ps[:min(n, len(ps))] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	if len(ps) > n {
		fmt.Fprintf(&b, " and %d more", len(ps)-n)
	}
	return b.String()
}

// restoreIOC puts the recorded IoC blocklist back into the kernel when the
// agent starts (after a reboot the kernel holds none of it), and lifts one
// the kernel still holds but the record no longer does (a crash after
// the set was emptied). Failures are logged; the agent serves regardless,
// so the controller can act.
func (s *Server) restoreIOC(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	s.iocMu.Lock()
	defer s.iocMu.Unlock()
	n := len(s.ioc.Prefixes)
	if s.deps.IOCBlocker == nil {
		if n > 0 {
			s.log.Error("an IoC blocklist is recorded but this agent has no IoC blocker: it is NOT enforced", "prefixes", n)
		}
		return
	}
	if n == 0 {
		obs, err := s.deps.IOCBlocker.Observe(ctx)
		if err != nil {
			s.log.Error("reading the IoC blocklist at start", "error", err.Error())
			return
		}
		if len(obs.Prefixes) == 0 && len(obs.Faults) == 0 {
			return
		}
	}
	changed, err := s.deps.IOCBlocker.Set(ctx, s.ioc.Prefixes)
	if err != nil {
		s.log.Error("re-applying the recorded IoC blocklist at start", "prefixes", n, "error", err.Error())
		return
	}
	s.log.Info("re-applied the recorded IoC blocklist at start", "prefixes", n, "changed", changed)
}

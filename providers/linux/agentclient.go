package linux

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/internal/mtls"
)

// AgentTLS is the controller's mutual-TLS material for talking to agents:
// its client certificate and key, and the CA the agents' certificates chain
// to (the system roots are never trusted for agents).
type AgentTLS struct {
	CertFile string
	KeyFile  string
	CAFile   string
}

// Agent command timing.
const (
	// agentCommandTTL is each command's lifetime; the agent refuses it
	// afterwards, and remembers its nonce until then.
	agentCommandTTL = 30 * time.Second
	// agentAttemptTimeout bounds one HTTP attempt; the agent bounds its
	// own work by a minute.
	agentAttemptTimeout = 90 * time.Second
)

// AgentClient is the controller's side of `warden agent`: it sends one
// command per call over mutual TLS and retries connection errors, 429 and
// 5xx with backoff.
//
// Every attempt carries a new command (a new nonce, fresh IssuedAt and
// ExpiresAt): the agent refuses a repeated nonce as a replay, so a retry
// must never resend the same bytes. This is done with retryablehttp's
// body ReaderFunc, which the library calls before every attempt; the
// ReaderFunc mints the command. Retrying is safe because every command is
// idempotent on the agent.
//
// Errors are classified for the controller: a 4xx answer (bad input, a
// conflict such as a confirm for a reverted generation, a refused
// certificate) and a TLS verification failure are actions.Terminal; a 501
// also wraps actions.ErrUnsupported; everything else is transient.
type AgentClient struct {
	base  string
	http  *retryablehttp.Client
	log   *slog.Logger
	clock clock.Clock
}

// AgentError is an agent's non-2xx answer.
type AgentError struct {
	Status  int
	Message string
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("agent answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// NewAgentClient returns a client for the agent at baseURL (https only).
func NewAgentClient(baseURL string, t AgentTLS, log *slog.Logger) (*AgentClient, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, actions.Terminal(fmt.Errorf("parsing agent URL: %w", err))
	}
	if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, actions.Terminal(fmt.Errorf("agent URL %q: want https://host[:port] (the agent only speaks mutual TLS)", u.Redacted()))
	}
	tlsConf, err := agentClientTLS(t)
	if err != nil {
		return nil, actions.Terminal(err)
	}
	// Resume the agent's TLS session on a new connection (after an idle
	// close, or a connection a quarantine killed): resuming spares it the
	// certificates' signatures and chain checks. The agent's session
	// tickets carry the chain it verified; an expired certificate is not
	// resumed.
	tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	tr := cleanhttp.DefaultPooledTransport()
	tr.TLSClientConfig = tlsConf
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: tr, Timeout: agentAttemptTimeout}
	c.Logger = log
	c.RetryMax = 3
	c.RetryWaitMin = 100 * time.Millisecond
	c.RetryWaitMax = 2 * time.Second
	c.CheckRetry = agentRetryPolicy
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return &AgentClient{base: strings.TrimSuffix(u.String(), "/"), http: c, log: log, clock: clock.Real}, nil
}

func agentClientTLS(t AgentTLS) (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
		return nil, errors.New("agent TLS needs a client certificate, its key and the agents' CA")
	}
	return mtls.Files{
		CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile,
		CertName: "controller client certificate", CAName: "agent CA",
	}.Client()
}

// agentRetryPolicy is retryablehttp's default policy, except that a TLS
// verification failure on either side is never retried, and a call made
// under the catalogue's retry layer is not retried here as well (one
// layer retries a call; the step's layer also fences and records each
// attempt).
func agentRetryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if actions.RetriedAbove(ctx) {
		return false, nil
	}
	if err != nil && isTLSRefusal(err) {
		return false, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// isTLSRefusal reports a certificate problem: ours refused by the agent,
// or the agent's not verifiable by us. Retrying cannot fix either.
func isTLSRefusal(err error) bool {
	// crypto/tls reports an alert from the peer (our certificate refused)
	// as a net.OpError with Op "remote error".
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}

// Close drops idle connections.
func (c *AgentClient) Close() { c.http.HTTPClient.CloseIdleConnections() }

// Isolate asks the agent to quarantine the gateway. The quarantine reverts
// by itself unless Confirm names its generation within the confirm window;
// IsolateConfirmed does both.
func (c *AgentClient) Isolate(ctx context.Context, p wire.IsolateParams) (wire.IsolateResult, error) {
	return call[wire.IsolateResult](ctx, c, wire.KindIsolate, p)
}

// Confirm ends the commit-confirmed window of generation. It first drops
// pooled connections, so the confirm itself travels over a connection
// opened through the quarantine: reaching the agent proves the path.
// Confirming twice is harmless; a generation the agent already reverted
// is a terminal conflict.
func (c *AgentClient) Confirm(ctx context.Context, generation int64) error {
	c.http.HTTPClient.CloseIdleConnections()
	return c.confirm(ctx, generation)
}

// confirm sends the confirm over whatever connection the pool has. Only
// IsolateConfirmed uses it directly, right after reading the state back
// over a connection opened after the quarantine, which already proved the
// path through it.
func (c *AgentClient) confirm(ctx context.Context, generation int64) error {
	return c.send(ctx, wire.KindConfirm, wire.ConfirmParams{Generation: generation}, &wire.ConfirmResult{})
}

// IsolateConfirmed isolates, then confirms over a fresh connection with
// the agent's check: the agent reads its rules back and confirms only if
// the quarantine is enforced, answering with that read-back, which is
// checked here too. Reaching the agent over a connection opened through
// the quarantine proves the management path; one round trip does both. If
// the check fails nothing is confirmed, so the agent reverts by itself;
// that error is terminal, since isolating again the same way would lock
// the controller out again.
func (c *AgentClient) IsolateConfirmed(ctx context.Context, p wire.IsolateParams) (wire.IsolateResult, error) {
	res, err := c.isolateChecked(ctx, p)
	return res.IsolateResult, err
}

// checkedIsolate is a confirmed isolate with the state the agent read back
// when it confirmed (quarantined, confirmed, the generation isolated, the
// rules enforced without drift): the read-back a Verify would fetch,
// already fetched through the quarantine.
type checkedIsolate struct {
	wire.IsolateResult
	state *wire.State
}

func (c *AgentClient) isolateChecked(ctx context.Context, p wire.IsolateParams) (checkedIsolate, error) {
	var out checkedIsolate
	res, err := c.Isolate(ctx, p)
	out.IsolateResult = res
	if err != nil {
		return out, err
	}
	// The proof that the management path survives the quarantine is a
	// new connection through it: its SYN and the agent's answer are
	// judged by the rules now in force, as any new management flow
	// would be. The confirm then travels over the connection already
	// open, whose packets pass those rules as established management
	// traffic, without a TLS handshake on the way to a confirmed
	// quarantine. Not reaching the agent, the controller does not
	// confirm and the agent reverts by itself.
	if err := c.probe(ctx); err != nil {
		return out, actions.Terminal(fmt.Errorf("opening a new connection to the agent through its quarantine (not confirming; it reverts by %s): %w", res.ConfirmBy.Format(time.RFC3339), err))
	}
	var conf wire.ConfirmResult
	err = c.send(ctx, wire.KindConfirm, wire.ConfirmParams{Generation: res.Generation, Check: true}, &conf)
	var ae *AgentError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusConflict && strings.HasPrefix(ae.Message, wire.ConfirmNotEnforced):
		// Isolating again re-enforces the rules: not terminal.
		return out, fmt.Errorf("confirming quarantine generation %d: the agent answered %q: %w", res.Generation, ae.Message, actions.ErrNotVerified)
	case errors.As(err, &ae):
		return out, err // a confirm too late or for another generation: terminal
	case err != nil:
		return out, actions.Terminal(fmt.Errorf("reaching the agent through its quarantine (not confirming; it reverts by %s): %w", res.ConfirmBy.Format(time.RFC3339), err))
	}
	st := conf.State
	if st == nil || !st.Quarantined || st.Generation != res.Generation || st.Firewall == nil || !st.Firewall.Quarantined {
		fw := "none"
		if st != nil && st.Firewall != nil {
			fw = fmt.Sprintf("enforced=%v drift=%v", st.Firewall.Quarantined, st.Firewall.Drift)
		}
		return out, fmt.Errorf("confirming quarantine generation %d: the agent's read-back %+v, firewall %s: %w", res.Generation, st, fw, actions.ErrNotVerified)
	}
	out.Confirmed, out.ConfirmBy = true, time.Time{}
	out.state = st
	return out, nil
}

// probe opens a new TCP connection to the agent and closes it.
func (c *AgentClient) probe(ctx context.Context) error {
	u, err := url.Parse(c.base)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := net.Dialer{Timeout: agentAttemptTimeout}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	return conn.Close()
}

// KillFlows deletes the tracked flows a quarantine kept for the capture
// (see wire.IsolateParams.KeepFlows).
func (c *AgentClient) KillFlows(ctx context.Context) (wire.KillFlowsResult, error) {
	return call[wire.KillFlowsResult](ctx, c, wire.KindKillFlows, nil)
}

// Release removes the quarantine and brings the tunnels back; changed is
// false when there was nothing to release.
func (c *AgentClient) Release(ctx context.Context) (bool, error) {
	var r wire.ReleaseResult
	err := c.send(ctx, wire.KindRelease, nil, &r)
	return r.Changed, err
}

// Observe returns the agent's quarantine record and the rules read back.
// State.Firewall.Detail is the gateway backend's own read-back, kept
// opaque here (agent/netfilter's State, which the controller does not
// import).
func (c *AgentClient) Observe(ctx context.Context) (wire.State, error) {
	return call[wire.State](ctx, c, wire.KindObserve, nil)
}

// Capture collects volatile evidence on the gateway.
func (c *AgentClient) Capture(ctx context.Context, p wire.CaptureParams) (wire.CaptureResult, error) {
	return call[wire.CaptureResult](ctx, c, wire.KindCapture, p)
}

// call sends a command of kind with params and returns the agent's
// answer, decoded.
func call[R any](ctx context.Context, c *AgentClient, kind string, params any) (R, error) {
	var r R
	err := c.send(ctx, kind, params, &r)
	return r, err
}

// send posts a command of kind and decodes the answer into out. The
// command carries the epoch of the lease the caller acts under (the fence
// in ctx), which the agent refuses when it has seen a newer one.
func (c *AgentClient) send(ctx context.Context, kind string, params, out any) error {
	epoch := actions.FenceEpoch(ctx)
	body := retryablehttp.ReaderFunc(func() (io.Reader, error) {
		cmd, err := wire.NewCommand(kind, params, c.clock.Now(), agentCommandTTL)
		if err != nil {
			return nil, err
		}
		cmd.Epoch = epoch
		b, err := json.Marshal(cmd)
		if err != nil {
			return nil, fmt.Errorf("encoding %s command: %w", kind, err)
		}
		// Hide the length: every attempt's command differs, so the
		// request must not promise the first one's Content-Length.
		return struct{ io.Reader }{bytes.NewReader(b)}, nil
	})
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.base+wire.CommandsPath, body)
	if err != nil {
		return actions.Terminal(fmt.Errorf("building %s request: %w", kind, err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		err = fmt.Errorf("sending %s to agent %s: %w", kind, c.base, err)
		if isTLSRefusal(err) {
			return actions.Terminal(err)
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("reading agent's %s answer: %w", kind, err)
	}
	if len(b) > wire.MaxResponseBytes {
		return actions.Terminal(fmt.Errorf("agent's %s answer exceeds %d bytes", kind, wire.MaxResponseBytes))
	}
	if resp.StatusCode != http.StatusOK {
		return classifyAgentAnswer(kind, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding agent's %s answer: %w", kind, err)
	}
	return nil
}

func classifyAgentAnswer(kind string, status int, body []byte) error {
	var e wire.Error
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	aerr := &AgentError{Status: status, Message: msg}
	err := fmt.Errorf("running %s on agent: %w", kind, aerr)
	switch {
	case status == wire.StatusStaleEpoch:
		// A newer leader has reached this agent: leave the step to it.
		return fmt.Errorf("%w: %w", actions.ErrFenced, err)
	case status == http.StatusNotImplemented:
		return actions.Terminal(fmt.Errorf("%w: %w", actions.ErrUnsupported, err))
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return err
	case status >= 400 && status < 500:
		return actions.Terminal(err)
	default:
		return err
	}
}

// Baseline evaluates the gateway's hardened baseline.
func (c *AgentClient) Baseline(ctx context.Context, p wire.BaselineParams) (wire.BaselineResult, error) {
	return call[wire.BaselineResult](ctx, c, wire.KindBaseline, p)
}

// Patch installs updates on the gateway (or, with VerifyOnly, checks the
// installed versions).
func (c *AgentClient) Patch(ctx context.Context, p wire.PatchParams) (wire.PatchResult, error) {
	return call[wire.PatchResult](ctx, c, wire.KindPatch, p)
}

package sensors

// Delivery: the sender takes findings from the head of the queue and posts
// them to the controller's agent listener over mutual TLS, with the
// agent's own certificate (which names the gateway: the body never does).
// A finding leaves the queue only after the controller's 2xx, which it
// answers once the indicators are stored; until then the sender retries
// with backoff on the clock, as long as the controller is away.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/internal/mtls"
)

// AgentFindingsPath is the controller's route for findings (wire.FindingsPath).
const AgentFindingsPath = wire.FindingsPath

// Sender defaults.
const (
	DefaultSenderMaxBatch       = 100
	DefaultSenderMaxBatchBytes  = 512 << 10 // well under the controller's default 1 MiB body limit
	DefaultSenderRequestTimeout = 30 * time.Second
	DefaultSenderBackoffMin     = time.Second
	DefaultSenderBackoffMax     = 2 * time.Minute
)

// SenderOptions configure a Sender.
type SenderOptions struct {
	// URL is the controller's agent listener, "https://HOST:PORT"; the
	// sender posts to URL + AgentFindingsPath.
	URL string
	// TLS is the agent's side of the mutual TLS (ControllerTLS builds it):
	// the agent's certificate, which must carry the client-auth usage
	// (`warden agent init` issues it so), the CA the controller's server
	// certificate chains to, and the name it must carry.
	TLS *tls.Config
	// MaxBatch and MaxBatchBytes bound one request.
	MaxBatch      int
	MaxBatchBytes int64
	// RequestTimeout bounds one request, answer included.
	RequestTimeout time.Duration
	// BackoffMin and BackoffMax: the wait after the first failure of a
	// streak, doubled after each further one up to the maximum. A
	// Retry-After from the controller lengthens it (up to the maximum).
	BackoffMin, BackoffMax time.Duration
	// Clock times the waits (default clock.Real).
	Clock clock.Clock
	// Log receives the first failure of a streak and the recovery.
	Log *slog.Logger
	// Observe, when set, is told the outcome of every request Run makes,
	// after the timer of the next attempt (if one is due) is armed.
	Observe func(Delivery)
}

func (o SenderOptions) withDefaults() SenderOptions {
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultSenderMaxBatch
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultSenderMaxBatchBytes
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultSenderRequestTimeout
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultSenderBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultSenderBackoffMax
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Delivery is the outcome of one request to the controller.
type Delivery struct {
	// Findings is how many the request carried (0: the queue was empty
	// and nothing was sent), FirstSeq and LastSeq their sequence numbers.
	Findings          int
	FirstSeq, LastSeq uint64
	// Status is the controller's HTTP status; 0 when it did not answer.
	Status int
	// Delivered: the controller took them and they left the queue.
	Delivered bool
	// Dropped counts findings the controller refused as malformed, once
	// the sender had narrowed the refusal down to them: they leave the
	// queue without being delivered, so they cannot block it.
	Dropped int
	// Err says why the findings were not delivered.
	Err error
	// Retry: the failure is worth trying again later (the controller was
	// away, overloaded or refused this agent); RetryIn is the wait Run
	// chose.
	Retry   bool
	RetryIn time.Duration
	// RetryAfter is the wait the controller asked for (Retry-After).
	RetryAfter time.Duration
}

// Sender delivers the queue's findings to the controller. Run is its
// loop; DeliverBatch is one request of it. One sender per queue.
type Sender struct {
	q      *Queue
	opt    SenderOptions
	url    string
	client *http.Client
	// limit is the batch size now: halved while the controller refuses
	// a batch as malformed, to find the finding it refuses.
	limit int
}

// ControllerTLS is the agent's side of the mutual TLS with the
// controller's agent listener: TLS 1.3, the agent's own certificate and
// key, trusting only m's CA, and expecting serverName (the controller
// identity, which `warden agent init` puts in the controller's
// certificate as a DNS name) whatever address the URL names. An empty
// serverName checks the URL's host instead.
//
// A new connection resumes the last TLS session: the controller closes an
// idle connection after a while, and the first finding after a quiet
// spell, the first sign of an attack, would otherwise wait for a full
// handshake with both certificates' signatures and chains checked. The
// controller's session tickets carry the chain it verified, and an expired
// certificate is not resumed.
func ControllerTLS(m mtls.Material, serverName string) *tls.Config {
	c := m.Client()
	c.ServerName = serverName
	c.ClientSessionCache = tls.NewLRUClientSessionCache(2)
	return c
}

// NewSender checks opt and builds the sender over q.
func NewSender(q *Queue, opt SenderOptions) (*Sender, error) {
	opt = opt.withDefaults()
	u, err := url.Parse(opt.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		shown := "(unparsable)"
		if err == nil {
			shown = u.Redacted()
		}
		return nil, fmt.Errorf("sensors delivery url: %q must be https://HOST:PORT, without a path or credentials (the controller's agent listener speaks only mutual TLS)", shown)
	}
	if opt.TLS == nil || (len(opt.TLS.Certificates) == 0 && opt.TLS.GetClientCertificate == nil) {
		return nil, errors.New("sensors delivery: the agent's certificate is required: the controller knows the gateway by it")
	}
	tr := &http.Transport{
		TLSClientConfig:     opt.TLS.Clone(),
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// No proxy from the environment: the path to the controller is
		// the one configured.
		Proxy: nil,
	}
	return &Sender{
		q: q, opt: opt, limit: opt.MaxBatch,
		url:    strings.TrimSuffix(u.String(), "/") + AgentFindingsPath,
		client: &http.Client{Transport: tr},
	}, nil
}

// Close lets go of idle connections.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

// Run delivers until ctx ends, and returns ctx's error: it sends whatever
// is queued, waits for the queue when it is empty, and after a failure
// waits (on the clock) before the next attempt, longer after each one.
func (s *Sender) Run(ctx context.Context) error {
	failures := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := s.DeliverBatch(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.Findings == 0 && d.Err == nil {
			select {
			case <-s.q.Ready():
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !d.Retry {
			if failures > 0 && d.Delivered {
				s.opt.Log.Info("findings delivered again after failures", "failures", failures, "findings", d.Findings)
			}
			failures = 0
			s.observe(d)
			continue
		}
		failures++
		d.RetryIn = s.backoff(failures, d.RetryAfter)
		if failures == 1 {
			s.opt.Log.Warn("cannot deliver findings to the controller; retrying", "status", d.Status, "err", d.Err, "pending", s.q.Stats().Pending, "retry_in", d.RetryIn)
		} else {
			s.opt.Log.Debug("still cannot deliver findings", "failures", failures, "status", d.Status, "err", d.Err, "retry_in", d.RetryIn)
		}
		wait := s.opt.Clock.After(d.RetryIn)
		s.observe(d)
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Sender) observe(d Delivery) {
	if s.opt.Observe != nil {
		s.opt.Observe(d)
	}
}

// backoff is the wait after the failures-th failure in a row: BackoffMin
// doubled each time up to BackoffMax, less up to a fifth at random so that
// a fleet does not come back in step, and never less than what the
// controller asked for (up to BackoffMax).
func (s *Sender) backoff(failures int, retryAfter time.Duration) time.Duration {
	d := s.opt.BackoffMin
	for i := 1; i < failures && d < s.opt.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.opt.BackoffMax)
	d -= time.Duration(rand.Int64N(int64(d)/5 + 1))
	return max(d, min(retryAfter, s.opt.BackoffMax))
}

// DeliverBatch sends the oldest queued findings in one request and
// acknowledges them on a 2xx. A batch the controller refuses as malformed
// (400, 413, 422) is halved for the next request, until the one finding
// it refuses is found and dropped; any other failure leaves the queue as
// it was, to be tried again.
func (s *Sender) DeliverBatch(ctx context.Context) Delivery {
	entries, err := s.q.Peek(s.limit, s.opt.MaxBatchBytes)
	if err != nil {
		return Delivery{Err: err, Retry: true}
	}
	if len(entries) == 0 {
		return Delivery{}
	}
	d := Delivery{Findings: len(entries), FirstSeq: entries[0].Seq, LastSeq: entries[len(entries)-1].Seq}
	d.Status, d.RetryAfter, d.Err = s.post(ctx, entries)
	switch {
	case d.Err == nil:
		s.limit = s.opt.MaxBatch
		if err := s.q.Ack(d.LastSeq); err != nil {
			// Delivered, but it may be delivered again: harmless.
			d.Err, d.Retry = fmt.Errorf("acknowledging delivered findings: %w", err), true
			return d
		}
		d.Delivered = true
	case malformed(d.Status) && len(entries) > 1:
		s.limit = len(entries) / 2
	case malformed(d.Status):
		f := entries[0].Finding
		s.opt.Log.Error("the controller refuses a finding as malformed; dropping it", "kind", f.Kind, "sensor", f.Sensor, "key", f.Key, "status", d.Status, "err", d.Err)
		if err := s.q.Ack(entries[0].Seq); err != nil {
			d.Err, d.Retry = fmt.Errorf("dropping a refused finding: %w", err), true
			return d
		}
		d.Dropped = 1
		s.limit = s.opt.MaxBatch
	default:
		d.Retry = true
	}
	return d
}

// malformed reports whether status says the batch itself is wrong, so
// that sending it again cannot help.
func malformed(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity
}

// post sends one batch. It returns the status (0 without an answer), the
// Retry-After the controller asked for, and nil only for a 2xx.
func (s *Sender) post(ctx context.Context, entries []QueueEntry) (int, time.Duration, error) {
	batch := wire.FindingBatch{Findings: make([]wire.Finding, len(entries))}
	for i, e := range entries {
		batch.Findings[i] = e.Finding
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return 0, 0, fmt.Errorf("encoding findings: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.opt.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("building delivery request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "warden-agent")
	// Sending a batch twice is harmless (the controller deduplicates
	// findings by fingerprint), and saying so lets the transport send it
	// again at once on a new connection when the controller closed the
	// idle one just as it was reused, instead of failing the delivery into
	// a backoff. The key is the body's hash: a batch of other findings
	// never shares it.
	sum := sha256.Sum256(body)
	req.Header.Set("Idempotency-Key", hex.EncodeToString(sum[:16]))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("posting findings: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, 0, nil
	}
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("controller answered %s: %s", resp.Status, controllerError(msg))
}

// retryAfter reads a Retry-After in seconds (0 when absent or a date).
func retryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs < 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// controllerError is the "error" of the controller's JSON answer, or the
// start of the body, on one line.
func controllerError(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	text := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		text = e.Error
	}
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 300 {
		text = text[:300] + "…"
	}
	if text == "" {
		return "(no message)"
	}
	return text
}

// Package loadgen is the one HTTP load generator Warden's benchmarks use:
// a fixed number of keep-alive clients, each sending one request after
// another for a duration, every latency kept. Warden's intake benchmarks
// and the side-by-side comparison with other systems (make bench-peers)
// run the same generator, so that their figures compare.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config is one load.
type Config struct {
	// URL receives every request.
	URL string
	// Method defaults to POST.
	Method string
	// Header is sent with every request (Content-Type, Authorization, …).
	Header http.Header
	// Clients is how many requests are in flight at once, each on its
	// own kept-alive connection (16 when zero).
	Clients int
	// Duration is how long the clients send (the requests in flight
	// when it ends are still counted).
	Duration time.Duration
	// Body returns the body of a client's nth request (from 0). It is
	// called from the client's goroutine.
	Body func(client, n int) []byte
	// Accept says whether a status counts as accepted (2xx when nil).
	Accept func(status int) bool
	// Transport overrides the generator's (for TLS, or a dialer into a
	// network namespace).
	Transport http.RoundTripper
}

// Result is what a load did.
type Result struct {
	// Accepted and Rejected count answered requests by Config.Accept;
	// Failed counts requests without an answer (connection errors).
	Accepted, Rejected, Failed int
	// Statuses counts the rejected answers by status code.
	Statuses map[int]int
	// FirstError is the first connection error, if any.
	FirstError error
	// Latencies are the accepted requests' times from sending to the
	// answer's last byte, sorted.
	Latencies []time.Duration
	// Elapsed is from the first request to the last answer.
	Elapsed time.Duration
}

// PerSecond is the accepted requests per second.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Accepted) / r.Elapsed.Seconds()
}

// Percentile is the p-th percentile (0 < p ≤ 100) of the accepted
// requests' latencies, by the nearest-rank method; 0 without any.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(r.Latencies)))) - 1
	return r.Latencies[min(max(rank, 0), len(r.Latencies)-1)]
}

// String is a one-line summary.
func (r Result) String() string {
	return fmt.Sprintf("%d accepted (%.0f/s), p50 %v, p99 %v, %d rejected %v, %d failed",
		r.Accepted, r.PerSecond(), r.Percentile(50), r.Percentile(99), r.Rejected, r.Statuses, r.Failed)
}

// Run sends the load and returns what it did. It returns an error only
// for a configuration it cannot run; answers and connection errors are
// counted in the Result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.URL == "" || cfg.Body == nil || cfg.Duration <= 0 {
		return Result{}, errors.New("loadgen: URL, Body and a positive Duration are required")
	}
	clients := cfg.Clients
	if clients <= 0 {
		clients = 16
	}
	method := cfg.Method
	if method == "" {
		method = http.MethodPost
	}
	accept := cfg.Accept
	if accept == nil {
		accept = func(s int) bool { return s >= 200 && s < 300 }
	}
	tr := cfg.Transport
	if tr == nil {
		t := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        clients,
			MaxIdleConnsPerHost: clients,
			MaxConnsPerHost:     clients,
			DisableCompression:  true,
		}
		defer t.CloseIdleConnections()
		tr = t
	}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	type tally struct {
		lat               []time.Duration
		ok, rejected, bad int
		statuses          map[int]int
		err               error
	}
	tallies := make([]tally, clients)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[c]
			t.statuses = map[int]int{}
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				req, err := http.NewRequestWithContext(ctx, method, cfg.URL, bytes.NewReader(cfg.Body(c, n)))
				if err != nil {
					t.bad++
					t.err = cmpErr(t.err, err)
					return
				}
				for k, v := range cfg.Header {
					req.Header[k] = v
				}
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					t.bad++
					t.err = cmpErr(t.err, err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if accept(resp.StatusCode) {
					t.ok++
					t.lat = append(t.lat, d)
				} else {
					t.rejected++
					t.statuses[resp.StatusCode]++
				}
			}
		}()
	}
	wg.Wait()
	r := Result{Elapsed: time.Since(start), Statuses: map[int]int{}}
	for _, t := range tallies {
		r.Accepted += t.ok
		r.Rejected += t.rejected
		r.Failed += t.bad
		r.Latencies = append(r.Latencies, t.lat...)
		for s, n := range t.statuses {
			r.Statuses[s] += n
		}
		r.FirstError = cmpErr(r.FirstError, t.err)
	}
	slices.Sort(r.Latencies)
	return r, nil
}

func cmpErr(have, err error) error {
	if have != nil {
		return have
	}
	return err
}

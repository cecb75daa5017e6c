package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/loadgen"
	"golang.org/x/sys/unix"
)

// The reference servers of make bench-peers: what the intake load itself
// reaches on this machine when the server does (almost) nothing, so that
// every system's intake figure can be read against the machine's ceiling.
// Two of them, each the test binary started again as its own process
// (TestPeersReferenceServerHelper):
//
//   - referenceNothing answers every POST 202 with a small JSON body after
//     reading the request: net/http alone.
//   - referenceDurable also appends each request's body to a file and
//     answers only once a write and an fdatasync covering it returned,
//     group-committed (one write and one fdatasync for every request that
//     arrived meanwhile): the least a server that acknowledges durably
//     must do, without authentication, decoding or deciding.
const (
	referenceNothing = "nothing"
	referenceDurable = "fdatasync"

	// referenceEnv carries "MODE ADDR DIR" to the helper process.
	referenceEnv = "WARDEN_PEERS_REFERENCE"
)

// referenceAnswer is what both reference servers answer: about the size
// of Warden's answer for one queued indicator.
const referenceAnswer = `{"results":[{"indicator_id":"ind-0123456789abcdef0123","status":"queued"}]}` + "\n"

// TestPeersReferenceServerHelper is not a test: startReference starts the
// test binary with it to serve one reference server until it is killed.
func TestPeersReferenceServerHelper(t *testing.T) {
	spec := os.Getenv(referenceEnv)
	if spec == "" {
		t.Skip("helper process of make bench-peers (the reference servers)")
	}
	f := strings.Fields(spec)
	if len(f) != 3 {
		t.Fatalf("%s=%q: want MODE ADDR DIR", referenceEnv, spec)
	}
	h, err := referenceHandler(f[0], f[2])
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", f[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Fatal(http.Serve(ln, h))
}

// referenceHandler is the handler of the reference server mode; a durable
// one appends to a file in dir.
func referenceHandler(mode, dir string) (http.Handler, error) {
	switch mode {
	case referenceNothing:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			answerReference(w)
		}), nil
	case referenceDurable:
		f, err := os.OpenFile(filepath.Join(dir, "reference.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		g := &groupCommit{f: f, wake: make(chan struct{}, 1)}
		go g.run()
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := g.append(append(body, '\n')); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			answerReference(w)
		}), nil
	}
	return nil, fmt.Errorf("reference server mode %q: want %s or %s", mode, referenceNothing, referenceDurable)
}

func answerReference(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, referenceAnswer)
}

// groupCommit appends records to f: one writer takes every record queued
// while it wrote and synced the previous batch, writes them at once and
// fdatasyncs; append returns once its record's batch is on disk.
type groupCommit struct {
	f       *os.File
	mu      sync.Mutex
	pending []pendingRecord
	wake    chan struct{}
}

type pendingRecord struct {
	b    []byte
	done chan error
}

func (g *groupCommit) append(b []byte) error {
	done := make(chan error, 1)
	g.mu.Lock()
	g.pending = append(g.pending, pendingRecord{b: b, done: done})
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	return <-done
}

func (g *groupCommit) run() {
	var buf []byte
	for range g.wake {
		g.mu.Lock()
		batch := g.pending
		g.pending = nil
		g.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		buf = buf[:0]
		for _, r := range batch {
			buf = append(buf, r.b...)
		}
		_, err := g.f.Write(buf)
		if err == nil {
			err = unix.Fdatasync(int(g.f.Fd()))
		}
		for _, r := range batch {
			r.done <- err
		}
		// Records that arrived during the fdatasync found the wake-up
		// already taken: look again.
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// startReference starts the reference server mode in the management
// namespace and returns its URL once it answers.
func (l *peersLab) startReference(tb testing.TB, mode string) (string, *nsProc) {
	tb.Helper()
	dir := filepath.Join(l.dir, "reference-"+mode)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	listen := netip.AddrPortFrom(l.lab.Mgmt().V4, 9094).String()
	p := startInNS(tb, "reference "+mode, l.lab.Mgmt().NS, "env", referenceEnv+"="+mode+" "+listen+" "+dir,
		os.Args[0], "-test.run=^TestPeersReferenceServerHelper$")
	url := "http://" + listen + "/"
	hc := nsHTTPClient(l.lab.Mgmt().NS, nil)
	waitUntil(tb, "reference server "+mode, 30*time.Second, func() bool {
		if p.exited() {
			tb.Fatalf("reference server %s exited: %v\n%s", mode, p.err, p.log.String())
		}
		resp, err := hc.Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted
	})
	return url, p
}

// loadReference is the intake load against a reference server.
func (l *peersLab) loadReference(tb testing.TB, mode string, d time.Duration) loadgen.Result {
	tb.Helper()
	url, p := l.startReference(tb, mode)
	defer p.stop()
	return l.peerLoad(tb, "reference "+mode, url, http.Header{"Content-Type": {"application/json"}}, d, wardenAlert)
}

// TestReferenceServersAnswerAsTheyClaim checks the two reference servers
// of make bench-peers in process: the one doing nothing answers 202 with
// its body; the durable one answers 202 to each of many concurrent
// requests only once that request's body is in its file, every body
// exactly once.
func TestReferenceServersAnswerAsTheyClaim(t *testing.T) {
	t.Run(referenceNothing, func(t *testing.T) {
		h, err := referenceHandler(referenceNothing, "")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(`{"kind":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || string(b) != referenceAnswer {
			t.Fatalf("answered %d %q; want 202 %q", resp.StatusCode, b, referenceAnswer)
		}
	})
	t.Run(referenceDurable, func(t *testing.T) {
		dir := t.TempDir()
		h, err := referenceHandler(referenceDurable, dir)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		const clients, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, clients*each)
		for c := range clients {
			wg.Go(func() {
				for n := range each {
					body := wardenAlert(c, n)
					resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(string(body)))
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						errs <- fmt.Errorf("client %d request %d: %d", c, n, resp.StatusCode)
						return
					}
					// Answered: the body is in the file already.
					got, err := os.ReadFile(filepath.Join(dir, "reference.log"))
					if err != nil {
						errs <- err
						return
					}
					if !strings.Contains(string(got), string(body)+"\n") {
						errs <- fmt.Errorf("client %d request %d answered 202 before its body was written", c, n)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "reference.log"))
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Count(string(got), "\n"); lines != clients*each {
			t.Fatalf("the file holds %d records, want %d", lines, clients*each)
		}
	})
}

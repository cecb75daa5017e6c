package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math"
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
	"github.com/warden-ir/warden/journal"
)

// The reference servers of make bench-peers: what the intake load itself
// reaches on this machine when the server does (almost) nothing, so that
// every system's intake figure can be read against the machine's ceiling.
// Two of them, each the test binary started again as its own process
// (TestPeersReferenceServerHelper):
//
//   - referenceNothing answers every POST 202 with a small JSON body after
//     reading the request: net/http alone.
//   - referenceDurable also appends each request's body to Warden's intake
//     journal (journal.Append: one write and one fdatasync for every
//     request that arrived meanwhile) and answers once it is on disk: the
//     least a server that acknowledges durably must do, without
//     authentication, decoding or deciding.
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
	h, _, err := referenceHandler(f[0], f[2])
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
// one appends to a journal in dir, which it returns.
func referenceHandler(mode, dir string) (http.Handler, *journal.Journal, error) {
	switch mode {
	case referenceNothing:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			answerReference(w)
		}), nil, nil
	case referenceDurable:
		j, err := journal.Open(filepath.Join(dir, "reference"))
		if err != nil {
			return nil, nil, err
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if _, err := j.Append(r.Context(), body); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			answerReference(w)
		}), j, nil
	}
	return nil, nil, fmt.Errorf("reference server mode %q: want %s or %s", mode, referenceNothing, referenceDurable)
}

func answerReference(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, referenceAnswer)
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
// requests only once that request's body is in its journal on disk, every
// body exactly once.
func TestReferenceServersAnswerAsTheyClaim(t *testing.T) {
	t.Run(referenceNothing, func(t *testing.T) {
		h, _, err := referenceHandler(referenceNothing, "")
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
		h, j, err := referenceHandler(referenceDurable, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = j.Close() })
		// stored is every record on disk, in one string.
		stored := func() (string, int, error) {
			first, err := j.First()
			if err != nil {
				return "", 0, err
			}
			recs, _, err := j.Read(first, math.MaxInt)
			return string(bytes.Join(recs, []byte("\n"))) + "\n", len(recs), err
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
					// Answered: the body is on disk already.
					got, _, err := stored()
					if err != nil {
						errs <- err
						return
					}
					if !strings.Contains(got, string(body)+"\n") {
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
		_, n, err := stored()
		if err != nil {
			t.Fatal(err)
		}
		if n != clients*each {
			t.Fatalf("the journal holds %d records, want %d", n, clients*each)
		}
	})
}

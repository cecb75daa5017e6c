package intake

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock/clocktest"
)

const (
	taxiiCollectionID = "91a7b528-80eb-42ed-a74d-c6fbd5a26116" // medallion's test collection
	taxiiObjectsPath  = "/taxii2/api1/collections/" + taxiiCollectionID + "/objects/"
)

// taxiiPage is one answer of the test server: an envelope from testdata
// (or a literal body) and its X-TAXII-Date-Added-* headers.
type taxiiPage struct {
	file, body  string
	first, last string
}

// taxiiServer is a TAXII 2.1 collection on loopback: it answers the
// objects endpoint of one collection, by the query it is asked (its
// encoded form: "", "next=…", "added_after=…"), as a server paginating
// with next and with X-TAXII-Date-Added-Last would.
type taxiiServer struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	pages    map[string]taxiiPage
	queries  []string
	auth     func(r *http.Request) bool
	failures int    // answer 503 this many times first
	ctype    string // Content-Type of pages, TAXIIMediaType by default
}

func newTAXIIServer(t *testing.T, pages map[string]taxiiPage) *taxiiServer {
	s := &taxiiServer{t: t, pages: pages, auth: func(*http.Request) bool { return true }, ctype: TAXIIMediaType}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *taxiiServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, r.URL.Query().Encode())
	fail := func(status int, title string) {
		w.Header().Set("Content-Type", TAXIIMediaType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"title":"` + title + `","http_status":"` + http.StatusText(status) + `"}`))
	}
	switch {
	case r.Method != http.MethodGet || r.URL.Path != taxiiObjectsPath:
		fail(http.StatusNotFound, "Collection not found")
	case r.Header.Get("Accept") != TAXIIMediaType:
		fail(http.StatusNotAcceptable, "Media type not supported")
	case !s.auth(r):
		fail(http.StatusUnauthorized, "Unauthorized")
	case s.failures > 0:
		s.failures--
		fail(http.StatusServiceUnavailable, "Try again")
	default:
		p, ok := s.pages[r.URL.Query().Encode()]
		if !ok {
			s.t.Errorf("unexpected query %q", r.URL.RawQuery)
			fail(http.StatusBadRequest, "Unexpected query")
			return
		}
		body := []byte(p.body)
		if p.file != "" {
			body = readTestdata(s.t, p.file)
		}
		w.Header().Set("Content-Type", s.ctype)
		if p.first != "" {
			w.Header().Set("X-TAXII-Date-Added-First", p.first)
			w.Header().Set("X-TAXII-Date-Added-Last", p.last)
		}
		_, _ = w.Write(body)
	}
}

func (s *taxiiServer) takeQueries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queries
	s.queries = nil
	return q
}

func (s *taxiiServer) collection() TAXIICollection {
	return TAXIICollection{URL: s.srv.URL + "/taxii2/api1/", Collection: taxiiCollectionID}
}

// client returns a TAXIIClient for colls that trusts the test server and
// retries fast.
func (s *taxiiServer) client(t *testing.T, colls ...TAXIICollection) *TAXIIClient {
	t.Helper()
	c, err := NewTAXIIClient(colls, WithTAXIIHTTPClient(s.srv.Client()), WithTAXIIRetry(2, time.Millisecond, 5*time.Millisecond),
		WithTAXIIClock(clocktest.NewFake(testNow)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// medallionPages are medallion's test collection in three pages: the
// first two linked by next, the third reached by the second's
// X-TAXII-Date-Added-Last (it says more, without next).
func medallionPages() map[string]taxiiPage {
	return map[string]taxiiPage{
		"": {file: "taxii_page1.json", first: "2014-05-08T09:00:00.000000Z", last: "2016-11-03T12:30:59.001000Z"},
		"next=b8c6b0a4-a0ba-4d5f-8c5a-3a2f67b3e8d1":   {file: "taxii_page2.json", first: "2016-12-27T13:49:59.000000Z", last: "2017-01-27T13:49:59.997000Z"},
		"added_after=2017-01-27T13%3A49%3A59.997000Z": {file: "taxii_page3.json", first: "2017-12-31T13:49:53.935000Z", last: "2025-03-01T00:00:00.000000Z"},
		// Nothing new: an empty envelope, no headers.
		"added_after=2025-03-01T00%3A00%3A00.000000Z": {body: `{}`},
	}
}

func TestTAXIIPollFollowsPagesAndRemembersWhereItStopped(t *testing.T) {
	s := newTAXIIServer(t, medallionPages())
	c := s.client(t, s.collection())

	d, err := c.Poll(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.takeQueries(), []string{"", "next=b8c6b0a4-a0ba-4d5f-8c5a-3a2f67b3e8d1", "added_after=2017-01-27T13%3A49%3A59.997000Z"}; !slices.Equal(got, want) {
		t.Fatalf("queries %q, want %q", got, want)
	}
	// The URL indicator has three versions over three pages: the last one
	// counts, once.
	checkThreatDecoded(t, SourceSTIX, d,
		[]wantThreat{{ref: "indicator--e5b1f4a0-3c2d-4e6f-8a9b-0c1d2e3f4a5b", name: "Poison Ivy C2", prefixes: []string{"198.51.100.23/32"},
			tlp: "TLP:GREEN", confidence: 0.7, validFrom: "2025-03-01T00:00:00Z"}},
		[]wantSkip{
			{ref: "indicator--cd981c25-8042-4166-8945-51178443bdac", field: "objects[1].pattern", reason: "unsupported: object type file"},
			{ref: "indicator--6770298f-0fd8-471a-ab8c-1c658a46574e", field: "objects[7].pattern", reason: "unsupported: object type url"},
		},
		map[string]int{"relationship": 2, "malware": 2})
	if got := c.Cursor(0); got != "2025-03-01T00:00:00.000000Z" {
		t.Fatalf("cursor %q", got)
	}

	// Nothing new: one request, nothing decoded, the cursor stays.
	d, err = c.Poll(t.Context(), 0)
	if err != nil || len(d.Items)+len(d.Skipped)+len(d.Ignored) != 0 {
		t.Fatalf("second poll: %+v, %v", d, err)
	}
	if got := s.takeQueries(); !slices.Equal(got, []string{"added_after=2025-03-01T00%3A00%3A00.000000Z"}) {
		t.Fatalf("second poll asked %q", got)
	}
	if got := c.Cursor(0); got != "2025-03-01T00:00:00.000000Z" {
		t.Fatalf("cursor after an empty poll %q", got)
	}

	// The feed revokes its indicator: the next poll says so.
	s.mu.Lock()
	s.pages["added_after=2025-03-01T00%3A00%3A00.000000Z"] = taxiiPage{file: "taxii_page4.json", first: "2025-03-12T00:00:00.000000Z", last: "2025-03-12T00:00:00.000000Z"}
	s.mu.Unlock()
	d, err = c.Poll(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkThreatDecoded(t, SourceSTIX, d, nil,
		[]wantSkip{{ref: "indicator--e5b1f4a0-3c2d-4e6f-8a9b-0c1d2e3f4a5b", field: "objects[1].revoked", reason: "the indicator is revoked"}}, nil)
	if got := c.Cursor(0); got != "2025-03-12T00:00:00.000000Z" {
		t.Fatalf("cursor %q", got)
	}
}

func TestTAXIIAuthentication(t *testing.T) {
	dir := t.TempDir()
	secret := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	password := secret("password", "s3cret-pa55\n")
	wrong := secret("wrong", "not-the-pa55\n")
	token := secret("token", "  tok-3f9a \n")
	empty := secret("empty", "\n")
	tests := map[string]struct {
		coll    func(TAXIICollection) TAXIICollection
		wantErr string
	}{
		"basic": {coll: func(c TAXIICollection) TAXIICollection {
			c.Username, c.PasswordFile = "warden", password
			return c
		}},
		"bearer": {coll: func(c TAXIICollection) TAXIICollection {
			c.TokenFile = token
			return c
		}},
		"wrong password": {coll: func(c TAXIICollection) TAXIICollection {
			c.Username, c.PasswordFile = "warden", wrong
			return c
		}, wantErr: "the server answered 401 Unauthorized: Unauthorized (check username and password_file, or token_file)"},
		"none": {coll: func(c TAXIICollection) TAXIICollection { return c },
			wantErr: "the server answered 401 Unauthorized"},
		"missing file": {coll: func(c TAXIICollection) TAXIICollection {
			c.TokenFile = filepath.Join(dir, "absent")
			return c
		}, wantErr: "reading token_file: open " + filepath.Join(dir, "absent")},
		"empty file": {coll: func(c TAXIICollection) TAXIICollection {
			c.TokenFile = empty
			return c
		}, wantErr: "token_file " + empty + " is empty"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := newTAXIIServer(t, map[string]taxiiPage{"": {body: `{"objects":[]}`}})
			s.auth = func(r *http.Request) bool {
				user, pw, ok := r.BasicAuth()
				return ok && user == "warden" && pw == "s3cret-pa55" || r.Header.Get("Authorization") == "Bearer tok-3f9a"
			}
			c := s.client(t, tt.coll(s.collection()))
			_, err := c.Poll(t.Context(), 0)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want …%s…", err, tt.wantErr)
			}
			for _, s := range []string{"s3cret", "not-the-pa55", "tok-3f9a"} {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error shows a secret: %v", err)
				}
			}
			if q := s.takeQueries(); len(q) > 1 {
				t.Errorf("a refusal was retried: %d requests", len(q))
			}
		})
	}
}

func TestTAXIIRetriesAndRefusals(t *testing.T) {
	t.Run("retries a server that is briefly unavailable", func(t *testing.T) {
		s := newTAXIIServer(t, medallionPages())
		s.failures = 2
		c := s.client(t, s.collection())
		d, err := c.Poll(t.Context(), 0)
		if err != nil || len(d.Items) != 1 {
			t.Fatalf("%+v, %v", d, err)
		}
		if q := s.takeQueries(); len(q) != 5 { // two refused, three pages
			t.Errorf("%d requests, want 5", len(q))
		}
	})
	tests := map[string]struct {
		setup   func(s *taxiiServer)
		wantErr string
	}{
		"unavailable for good": {setup: func(s *taxiiServer) { s.failures = 10 }, wantErr: "page 1: the server answered 503 Service Unavailable: Try again"},
		"a login page":         {setup: func(s *taxiiServer) { s.ctype = "text/html; charset=utf-8" }, wantErr: `page 1: expected application/taxii+json;version=2.1, got Content-Type "text/html; charset=utf-8"`},
		"not an envelope": {setup: func(s *taxiiServer) { s.pages[""] = taxiiPage{body: `[{"type":"indicator"}]`} },
			wantErr: "page 1: envelope: expected object, got array"},
		"objects not a list": {setup: func(s *taxiiServer) { s.pages[""] = taxiiPage{body: `{"objects":{"type":"indicator"}}`} },
			wantErr: "page 1: envelope.objects: expected array, got object"},
		"more without a way on": {setup: func(s *taxiiServer) { s.pages[""] = taxiiPage{body: `{"more":true,"objects":[]}`} },
			wantErr: "page 1: the server says more but gives neither next nor a later X-TAXII-Date-Added-Last"},
		"more without moving on": {setup: func(s *taxiiServer) {
			s.pages[""] = taxiiPage{body: `{"more":true,"objects":[]}`, first: "2020-01-01T00:00:00Z", last: "2020-01-01T00:00:00Z"}
			s.pages["added_after=2020-01-01T00%3A00%3A00Z"] = taxiiPage{body: `{"more":true,"objects":[]}`, first: "2020-01-01T00:00:00Z", last: "2020-01-01T00:00:00Z"}
		}, wantErr: "page 2: the server says more but gives neither next nor a later X-TAXII-Date-Added-Last"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := newTAXIIServer(t, medallionPages())
			tt.setup(s)
			c := s.client(t, s.collection())
			_, err := c.Poll(t.Context(), 0)
			want := "polling TAXII collection " + taxiiCollectionID + " at " + strings.TrimPrefix(s.srv.URL, "https://") + ": " + tt.wantErr
			if err == nil || err.Error() != want {
				t.Fatalf("err  %v\nwant %s", err, want)
			}
			if c.Cursor(0) != "" {
				t.Errorf("a failed poll moved the cursor to %q", c.Cursor(0))
			}
		})
	}
}

func TestTAXIIRunPollsEveryIntervalAndRepeatsWhatWasNotHandled(t *testing.T) {
	s := newTAXIIServer(t, medallionPages())
	clk := clocktest.NewFake(testNow)
	coll := s.collection()
	coll.Interval = 10 * time.Minute
	c, err := NewTAXIIClient([]TAXIICollection{coll}, WithTAXIIHTTPClient(s.srv.Client()), WithTAXIIClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	polls := make(chan int, 10)
	handled := 0
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(_ context.Context, got TAXIICollection, d ThreatDecoded) error {
			handled++
			polls <- len(d.Items)
			if got.Collection != taxiiCollectionID || got.Interval != coll.Interval {
				t.Errorf("handed collection %+v", got)
			}
			if handled == 1 {
				return errors.New("store unavailable") // the next poll must hand the same objects again
			}
			return nil
		})
	}()
	wantPoll := func(items int) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case n := <-polls:
				if n != items {
					t.Fatalf("poll handed %d items, want %d", n, items)
				}
				return
			case <-deadline:
				t.Fatal("no poll")
			case <-time.After(5 * time.Millisecond):
				clk.Advance(time.Minute) // Run waits on the fake clock
			}
		}
	}
	wantPoll(1) // at once
	if got := s.takeQueries(); len(got) != 3 || c.Cursor(0) != "" {
		t.Fatalf("first poll asked %q, cursor %q", got, c.Cursor(0))
	}
	wantPoll(1) // the same objects again: the handler failed
	if got := s.takeQueries(); len(got) != 3 || got[0] != "" {
		t.Fatalf("second poll asked %q", got)
	}
	wantPoll(0) // handled: the third poll asks only for what is new
	if got := s.takeQueries(); !slices.Equal(got, []string{"added_after=2025-03-01T00%3A00%3A00.000000Z"}) {
		t.Fatalf("third poll asked %q", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func TestTAXIICursorCanBeRestored(t *testing.T) {
	s := newTAXIIServer(t, medallionPages())
	c := s.client(t, s.collection())
	if err := c.SetCursor(0, "yesterday"); err == nil {
		t.Fatal("a cursor that is not a time was taken")
	}
	if err := c.SetCursor(0, "2025-03-01T00:00:00.000000Z"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Poll(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if got := s.takeQueries(); !slices.Equal(got, []string{"added_after=2025-03-01T00%3A00%3A00.000000Z"}) {
		t.Fatalf("asked %q", got)
	}
}

func TestTAXIICollectionValidate(t *testing.T) {
	ok := TAXIICollection{URL: "https://taxii.example.org/api1/", Collection: taxiiCollectionID}
	with := func(f func(*TAXIICollection)) TAXIICollection {
		c := ok
		f(&c)
		return c
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a good collection refused: %v", err)
	}
	if err := with(func(c *TAXIICollection) { c.URL = "http://127.0.0.1:9000/api1/" }).Validate(); err != nil {
		t.Fatalf("plain http to loopback refused: %v", err)
	}
	if got := ok.WithDefaults().Interval; got != DefaultTAXIIInterval {
		t.Errorf("default interval %s", got)
	}
	checkValidateFields(t, map[TAXIICollection]string{
		with(func(c *TAXIICollection) { c.URL = "" }):                                                     "url",
		with(func(c *TAXIICollection) { c.URL = "taxii.example.org/api1/" }):                              "url",
		with(func(c *TAXIICollection) { c.URL = "http://taxii.example.org/api1/" }):                       "url",
		with(func(c *TAXIICollection) { c.URL = "https://u:p@taxii.example.org/api1/" }):                  "url",
		with(func(c *TAXIICollection) { c.URL = "https://taxii.example.org/api1/?k=v" }):                  "url",
		with(func(c *TAXIICollection) { c.Collection = "" }):                                              "collection",
		with(func(c *TAXIICollection) { c.Collection = "a/b" }):                                           "collection",
		with(func(c *TAXIICollection) { c.Username = "warden" }):                                          "password_file",
		with(func(c *TAXIICollection) { c.PasswordFile = "/run/secrets/taxii" }):                          "username",
		with(func(c *TAXIICollection) { c.Username, c.PasswordFile, c.TokenFile = "warden", "/p", "/t" }): "token_file",
		with(func(c *TAXIICollection) { c.Interval = 30 * time.Second }):                                  "interval",
		with(func(c *TAXIICollection) { c.Interval = -time.Hour }):                                        "interval",
	})
	_, err := NewTAXIIClient([]TAXIICollection{ok, with(func(c *TAXIICollection) { c.Collection = "" })})
	var fe *indicator.FieldError
	if !errors.As(err, &fe) || fe.Field != "collections[1].collection" {
		t.Fatalf("NewTAXIIClient: %v, want a FieldError on collections[1].collection", err)
	}
}

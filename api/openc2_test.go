package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/store"
)

// openC2Now is 2018-08-20T14:30:00Z, a minute before the start_time of
// the Language Specification's deny example (LS A.2), so that the
// specifications' commands are in the future as they were written.
var openC2Now = time.Date(2018, 8, 20, 14, 30, 0, 0, time.UTC)

const openC2Actor = "user:soar"

// fakeBlocks is a BlockService with the block unit's observable contract
// (controller/blocks.go): idempotent by (Source, Ref), numbered rules,
// unknown numbers store.ErrNotFound, a block no longer in force returned
// unchanged by WithdrawBlock, lifetimes capped at maxTTL.
type fakeBlocks struct {
	mu       sync.Mutex
	now      time.Time
	next     int64
	blocks   map[int64]*controller.Block
	byRef    map[string]int64
	requests []controller.BlockRequest
	actors   []string
	reasons  []string
	// unsafe says why a request needs approval (it then waits).
	unsafe func(controller.BlockRequest) []string
	// err, when set, is what every call returns.
	err error
}

var _ BlockService = (*fakeBlocks)(nil)

func newFakeBlocks(now time.Time) *fakeBlocks {
	return &fakeBlocks{now: now, next: 100, blocks: map[int64]*controller.Block{}, byRef: map[string]int64{}}
}

func (f *fakeBlocks) RequestBlocks(_ context.Context, actor string, reqs []controller.BlockRequest) ([]controller.BlockOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actors = append(f.actors, actor)
	if f.err != nil {
		return nil, f.err
	}
	var out []controller.BlockOutcome
	for _, r := range reqs {
		f.requests = append(f.requests, r)
		key := r.Source + "\x00" + r.Ref
		if n, ok := f.byRef[key]; ok {
			out = append(out, controller.BlockOutcome{Block: *f.blocks[n]})
			continue
		}
		f.next++
		b := controller.Block{Number: f.next, Prefixes: r.Prefixes, Source: r.Source, Ref: r.Ref, Name: r.Name, Kind: r.Kind,
			State: controller.BlockActive, RequestedBy: actor, Labels: r.Labels, CreatedAt: f.now, ValidFrom: r.ValidFrom,
			ExpiresAt: r.ValidUntil, UpdatedAt: f.now}
		if b.ExpiresAt.IsZero() {
			b.ExpiresAt = f.now.Add(7 * 24 * time.Hour)
		}
		if maxTTL := f.now.Add(90 * 24 * time.Hour); b.ExpiresAt.After(maxTTL) {
			b.ExpiresAt = maxTTL
		}
		if f.unsafe != nil {
			if why := f.unsafe(r); len(why) > 0 {
				b.State, b.Unsafe = controller.BlockPending, why
			}
		}
		f.blocks[b.Number], f.byRef[key] = &b, b.Number
		out = append(out, controller.BlockOutcome{Block: b, Created: true})
	}
	return out, nil
}

func (f *fakeBlocks) WithdrawBlock(_ context.Context, actor string, number int64, reason string) (controller.Block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actors = append(f.actors, actor)
	f.reasons = append(f.reasons, reason)
	if f.err != nil {
		return controller.Block{}, f.err
	}
	b, ok := f.blocks[number]
	if !ok {
		return controller.Block{}, fmt.Errorf("block %d: %w", number, store.ErrNotFound)
	}
	if b.State != controller.BlockActive && b.State != controller.BlockPending {
		return *b, nil
	}
	b.State, b.DecidedBy = controller.BlockWithdrawn, actor
	return *b, nil
}

func (f *fakeBlocks) Blocks(_ context.Context, filter controller.BlockFilter) ([]controller.Block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if filter.Limit < len(f.blocks) {
		return nil, fmt.Errorf("limit %d would leave blocks out: %w", filter.Limit, controller.ErrInvalid)
	}
	var out []controller.Block
	for _, b := range f.blocks {
		if filter.State == "" || b.State == filter.State {
			out = append(out, *b)
		}
	}
	return out, nil
}

// add records a block as if an earlier request had made it.
func (f *fakeBlocks) add(number int64, state controller.BlockState, prefixes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := &controller.Block{Number: number, Source: "stix", Ref: fmt.Sprint("indicator--", number), State: state, CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}
	for _, p := range prefixes {
		b.Prefixes = append(b.Prefixes, netip.MustParsePrefix(p))
	}
	f.blocks[number] = b
}

func (f *fakeBlocks) state(number int64) controller.BlockState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.blocks[number]; ok {
		return b.State
	}
	return ""
}

// calls counts the calls that reached the service.
// FleetOwns: the fake fleet owns 198.18.2.0/24 (a site's LAN outside the
// private ranges, as the namespace lab's are).
func (f *fakeBlocks) FleetOwns(p netip.Prefix) bool {
	return netip.MustParsePrefix("198.18.2.0/24").Overlaps(p)
}

func (f *fakeBlocks) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.actors)
}

func (f *fakeBlocks) lastRequest(t *testing.T) controller.BlockRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		t.Fatal("no block was requested")
	}
	return f.requests[len(f.requests)-1]
}

// openC2Rig is the handler over a fake service and a fake clock.
type openC2Rig struct {
	h     http.Handler
	svc   *fakeBlocks
	clock *clocktest.Fake
}

func newOpenC2Rig(t *testing.T, rateLimit int) *openC2Rig {
	t.Helper()
	clk := clocktest.NewFake(openC2Now)
	svc := newFakeBlocks(openC2Now)
	h := newOpenC2Handler(svc, func(*http.Request) string { return openC2Actor }, clk, rateLimit, 64<<10, nil)
	return &openC2Rig{h: h, svc: svc, clock: clk}
}

// openC2Reply is an answer as the producer reads it.
type openC2Reply struct {
	http    int
	header  http.Header
	body    string
	resp    v1.OpenC2Response
	message *v1.OpenC2Message // the v1.1 envelope, when the answer is one
}

// post sends body with contentType and X-Request-ID xrid ("" for none).
func (g *openC2Rig) post(t *testing.T, contentType, xrid, body string) openC2Reply {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, OpenC2Path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if xrid != "" {
		req.Header.Set(v1.OpenC2RequestIDHeader, xrid)
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	return readOpenC2Reply(t, rec.Code, rec.Header(), rec.Body.String())
}

func readOpenC2Reply(t *testing.T, code int, h http.Header, body string) openC2Reply {
	t.Helper()
	r := openC2Reply{http: code, header: h, body: body}
	if body == "" {
		return r
	}
	switch ct := h.Get("Content-Type"); ct {
	case v1.OpenC2ContentType:
		var m v1.OpenC2Message
		if err := decodeStrict([]byte(body), &m); err != nil {
			t.Fatalf("the answer is not an OpenC2 message: %v\n%s", err, body)
		}
		if m.Body.OpenC2 == nil || m.Body.OpenC2.Response == nil {
			t.Fatalf("the message holds no response: %s", body)
		}
		r.message, r.resp = &m, *m.Body.OpenC2.Response
	case v1.OpenC2ResponseContentType:
		if err := decodeStrict([]byte(body), &r.resp); err != nil {
			t.Fatalf("the answer is not an OpenC2 response: %v\n%s", err, body)
		}
	default:
		t.Fatalf("answer Content-Type %q with a body: %s", ct, body)
	}
	return r
}

// command posts a bare command in the v1.1 envelope with request id id.
func (g *openC2Rig) command(t *testing.T, id, cmd string) openC2Reply {
	t.Helper()
	return g.post(t, v1.OpenC2ContentType, "", envelope(id, cmd))
}

func envelope(id, cmd string) string {
	return fmt.Sprintf(`{"headers":{"request_id":%q,"created":1545257700000},"body":{"openc2":{"request":%s}}}`, id, cmd)
}

// wantStatus checks the OpenC2 status and the HTTP status that carries it.
func (r openC2Reply) wantStatus(t *testing.T, status int) {
	t.Helper()
	wantHTTP := status
	if status == http.StatusProcessing {
		wantHTTP = http.StatusAccepted
	}
	if r.resp.Status != status || r.http != wantHTTP {
		t.Fatalf("status %d (HTTP %d), want %d (HTTP %d): %s", r.resp.Status, r.http, status, wantHTTP, r.body)
	}
}

func readOpenC2Fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOpenC2SpecExamples posts the specifications' own commands, in
// both transfer styles, and checks Warden's answers against what the
// specifications answer or require.
func TestOpenC2SpecExamples(t *testing.T) {
	for name, tc := range map[string]struct {
		fixture string
		preload func(*fakeBlocks)
		status  int // OpenC2 status; 0: no response (response_requested none)
		http    int // with status 0
		// specStatus is the fixture of the specification's answer whose
		// status Warden must give too.
		specStatus string
		check      func(*testing.T, *fakeBlocks, openC2Reply)
	}{
		"LS 4.2.1 heartbeat": {fixture: "openc2_ls_4.2.1_command.json", status: 200, specStatus: "openc2_ls_4.2.1_response.json",
			check: func(t *testing.T, _ *fakeBlocks, r openC2Reply) {
				if r.resp.Results != nil {
					t.Errorf("a heartbeat answered results: %s", r.body)
				}
			}},
		"LS 4.2.2 features":   {fixture: "openc2_ls_4.2.2_command.json", status: 200, specStatus: "openc2_ls_4.2.2_response.json"},
		"SLPF A.4.2 versions": {fixture: "openc2_slpf_a.4.2_command.json", status: 200, specStatus: "openc2_slpf_a.4.2_response.json"},
		"SLPF A.4.3 profiles": {fixture: "openc2_slpf_a.4.3_command.json", status: 200, specStatus: "openc2_slpf_a.4.3_response.json"},
		"SLPF A.4.4 pairs":    {fixture: "openc2_slpf_a.4.4_command.json", status: 200, specStatus: "openc2_slpf_a.4.4_response.json"},
		"LS A.2 deny connection ack": {fixture: "openc2_ls_a.2_command.json", status: 102, specStatus: "openc2_ls_a.2_response.json",
			check: func(t *testing.T, svc *fakeBlocks, r openC2Reply) {
				req := svc.lastRequest(t)
				// Both addresses are public: the remote is src_addr, the
				// side that reached in.
				if !slices.Equal(req.Prefixes, []netip.Prefix{netip.MustParsePrefix("1.2.3.4/32")}) {
					t.Errorf("blocked %v, want 1.2.3.4/32", req.Prefixes)
				}
				start := time.UnixMilli(1534775460000)
				if !req.ValidFrom.Equal(start) || !req.ValidUntil.Equal(start.Add(500*time.Millisecond)) {
					t.Errorf("window %s..%s, want start_time + 500ms", req.ValidFrom, req.ValidUntil)
				}
				if got := req.Labels["openc2.not_enforced"]; got != "dst_addr 198.2.3.4/32, dst_port 80, protocol tcp, src_port 10996" {
					t.Errorf("not_enforced label %q", got)
				}
				if got := req.Labels["openc2.actuator"]; got != `{"asset_id":"30"}` {
					t.Errorf("actuator label %q", got)
				}
				if r.resp.Results == nil || r.resp.Results.SLPF == nil || r.resp.Results.SLPF.RuleNumber == 0 {
					t.Errorf("no rule number: %s", r.body)
				}
			}},
		"SLPF A.1.2 false_ack egress ports only": {fixture: "openc2_slpf_a.1.2_command.json", status: 501, specStatus: "openc2_slpf_a.1.2_response_501.json",
			check: func(t *testing.T, _ *fakeBlocks, r openC2Reply) {
				if !strings.Contains(r.resp.StatusText, "Option not supported") {
					t.Errorf("status_text %q does not say \"Option not supported\" (SLPF 2.3.2)", r.resp.StatusText)
				}
			}},
		"SLPF A.1.3 ingress, no response": {fixture: "openc2_slpf_a.1.3_command.json", http: 501},
		"SLPF A.1.4 allow with a block": {fixture: "openc2_slpf_a.1.4_command.json", status: 200, specStatus: "openc2_slpf_a.1.4_response.json",
			preload: func(f *fakeBlocks) { f.add(1234, controller.BlockActive, "3ffe:1900:4545:3::f8ff:fe21:67cf/128") },
			check: func(t *testing.T, svc *fakeBlocks, r openC2Reply) {
				spec := specResponse(t, "openc2_slpf_a.1.4_response.json")
				if !reflect.DeepEqual(r.resp.Results.SLPF, spec.Results.SLPF) {
					t.Errorf("results.slpf %+v, the specification's %+v", r.resp.Results.SLPF, spec.Results.SLPF)
				}
				if svc.state(1234) != controller.BlockWithdrawn {
					t.Errorf("rule 1234 is %s", svc.state(1234))
				}
			}},
		"SLPF A.1.4 allow, nothing blocked": {fixture: "openc2_slpf_a.1.4_command.json", status: 404},
		"SLPF A.2 delete": {fixture: "openc2_slpf_a.2_command.json", status: 200,
			preload: func(f *fakeBlocks) { f.add(1234, controller.BlockActive, "198.51.100.17/32") },
			check: func(t *testing.T, svc *fakeBlocks, r openC2Reply) {
				if svc.state(1234) != controller.BlockWithdrawn || r.resp.Results.SLPF.RuleNumber != 1234 {
					t.Errorf("rule 1234 is %s; answer %s", svc.state(1234), r.body)
				}
			}},
		"SLPF A.2 delete unknown": {fixture: "openc2_slpf_a.2_command.json", status: 404},
		"SLPF A.3 update file":    {fixture: "openc2_slpf_a.3_command.json", status: 501, specStatus: "openc2_slpf_a.3_response_501.json"},
	} {
		for _, style := range []string{"v1.1 envelope", "v1.0 bare"} {
			t.Run(name+"/"+style, func(t *testing.T) {
				g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
				if tc.preload != nil {
					tc.preload(g.svc)
				}
				cmd := readOpenC2Fixture(t, tc.fixture)
				var r openC2Reply
				if style == "v1.0 bare" {
					r = g.post(t, v1.OpenC2CommandContentType, "d1ac0489-ed51-4345-9175-f3078f30afe5", cmd)
				} else {
					r = g.command(t, "d1ac0489-ed51-4345-9175-f3078f30afe5", cmd)
				}
				if tc.status == 0 {
					if r.http != tc.http || r.body != "" {
						t.Fatalf("HTTP %d with body %q, want %d and no response (response_requested none)", r.http, r.body, tc.http)
					}
					return
				}
				r.wantStatus(t, tc.status)
				if tc.specStatus != "" {
					if spec := specResponse(t, tc.specStatus); spec.Status != r.resp.Status {
						t.Errorf("status %d, the specification answers %d", r.resp.Status, spec.Status)
					}
				}
				if got := r.header.Get(v1.OpenC2RequestIDHeader); got != "d1ac0489-ed51-4345-9175-f3078f30afe5" {
					t.Errorf("X-Request-ID %q", got)
				}
				if tc.check != nil {
					tc.check(t, g.svc, r)
				}
			})
		}
	}
}

func specResponse(t *testing.T, name string) v1.OpenC2Response {
	t.Helper()
	var r v1.OpenC2Response
	if err := json.Unmarshal([]byte(readOpenC2Fixture(t, name)), &r); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// TestOpenC2QueryFeaturesShape checks the answers to query features
// against the specifications' example answers: the same members, each of
// the same JSON type, and pairs naming only actions and targets the
// specification's matrix has (LS 4.1, SLPF A.4).
func TestOpenC2QueryFeaturesShape(t *testing.T) {
	for _, name := range []string{"openc2_ls_4.2.1", "openc2_ls_4.2.2", "openc2_slpf_a.4.2", "openc2_slpf_a.4.3", "openc2_slpf_a.4.4"} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, 30)
			r := g.post(t, v1.OpenC2CommandContentType, "q-1", readOpenC2Fixture(t, name+"_command.json"))
			r.wantStatus(t, 200)
			var got, spec map[string]any
			if err := json.Unmarshal([]byte(r.body), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(readOpenC2Fixture(t, name+"_response.json")), &spec); err != nil {
				t.Fatal(err)
			}
			if err := sameShape("", got, spec); err != nil {
				t.Errorf("%v\nours: %s", err, r.body)
			}
		})
	}
	t.Run("values", func(t *testing.T) {
		g := newOpenC2Rig(t, 30)
		r := g.command(t, "q-2", `{"action":"query","target":{"features":["versions","profiles","pairs","rate_limit","versions"]}}`)
		r.wantStatus(t, 200)
		res := r.resp.Results
		want := &v1.OpenC2Results{Versions: []string{"1.0"}, Profiles: []string{"slpf", "x-warden"}, RateLimit: 30,
			Pairs: map[string][]string{
				"allow":  {"ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection"},
				"deny":   {"ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection"},
				"delete": {"slpf:rule_number"},
				"query":  {"features"},
			}}
		if !reflect.DeepEqual(res, want) {
			t.Errorf("results %+v, want %+v", res, want)
		}
	})
	t.Run("no rate limit", func(t *testing.T) {
		g := newOpenC2Rig(t, 0)
		r := g.command(t, "q-3", `{"action":"query","target":{"features":["rate_limit"]}}`)
		r.wantStatus(t, 200)
		if r.resp.Results != nil {
			t.Errorf("rate_limit without a limit: %s (LS 4.1 lets it be unpopulated)", r.body)
		}
	})
}

// specPairs are the SLPF Command Matrix's pairs (SLPF Table 2.3-1).
var specPairs = map[string][]string{
	"allow":  {"ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection"},
	"deny":   {"ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection"},
	"query":  {"features"},
	"delete": {"slpf:rule_number"},
	"update": {"file"},
}

// sameShape: got has exactly spec's members, each of the same JSON type;
// under pairs, got's actions and targets are the SLPF matrix's.
func sameShape(path string, got, spec any) error {
	if reflect.TypeOf(got) != reflect.TypeOf(spec) {
		return fmt.Errorf("%s: %T, the specification has %T", path, got, spec)
	}
	switch s := spec.(type) {
	case map[string]any:
		g := got.(map[string]any)
		if strings.HasSuffix(path, ".results.pairs") {
			for action, targets := range g {
				for _, tg := range targets.([]any) {
					if !slices.Contains(specPairs[action], tg.(string)) {
						return fmt.Errorf("pairs: %s %v is not in the SLPF Command Matrix", action, tg)
					}
				}
			}
			return nil
		}
		if !reflect.DeepEqual(sortedKeys(g), sortedKeys(s)) {
			return fmt.Errorf("%s: members %v, the specification has %v", path, sortedKeys(g), sortedKeys(s))
		}
		for k := range s {
			if err := sameShape(path+"."+k, g[k], s[k]); err != nil {
				return err
			}
		}
	case []any:
		g := got.([]any)
		if len(g) == 0 || len(s) == 0 {
			return fmt.Errorf("%s: an empty list", path)
		}
		return sameShape(path+"[0]", g[0], s[0])
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenC2DenyPairs: every deny target becomes one block of the right
// remote range, named for OpenC2 and the request.
func TestOpenC2DenyPairs(t *testing.T) {
	for name, tc := range map[string]struct {
		target      string
		want        string
		notEnforced string
	}{
		"ipv4_net address":          {`{"ipv4_net":"203.0.113.9"}`, "203.0.113.9/32", ""},
		"ipv4_net range":            {`{"ipv4_net":"203.0.113.0/24"}`, "203.0.113.0/24", ""},
		"ipv4_net range, host bits": {`{"ipv4_net":"203.0.113.7/24"}`, "203.0.113.0/24", ""},
		"ipv6_net address":          {`{"ipv6_net":"2001:db8::1"}`, "2001:db8::1/128", ""},
		"ipv6_net range":            {`{"ipv6_net":"2001:db8:7::/48"}`, "2001:db8:7::/48", ""},
		"ipv4_connection dst only":  {`{"ipv4_connection":{"dst_addr":"203.0.113.9","dst_port":443,"protocol":"tcp"}}`, "203.0.113.9/32", "dst_port 443, protocol tcp"},
		"ipv4_connection src only":  {`{"ipv4_connection":{"src_addr":"203.0.113.9"}}`, "203.0.113.9/32", ""},
		"ipv4_connection egress":    {`{"ipv4_connection":{"src_addr":"10.1.2.3","dst_addr":"203.0.113.9","dst_port":443}}`, "203.0.113.9/32", "dst_port 443, src_addr 10.1.2.3/32"},
		"ipv4_connection from a fleet LAN outside the private ranges": {`{"ipv4_connection":{"src_addr":"198.18.2.10","dst_addr":"203.0.113.66","dst_port":7}}`, "203.0.113.66/32", "dst_port 7, src_addr 198.18.2.10/32"},
		"ipv4_connection from CGNAT":                                  {`{"ipv4_connection":{"src_addr":"100.64.3.4","dst_addr":"198.51.100.7"}}`, "198.51.100.7/32", "src_addr 100.64.3.4/32"},
		"ipv4_connection ingress":                                     {`{"ipv4_connection":{"src_addr":"203.0.113.9","dst_addr":"192.168.1.10","dst_port":22}}`, "203.0.113.9/32", "dst_addr 192.168.1.10/32, dst_port 22"},
		"ipv4_connection both public":                                 {`{"ipv4_connection":{"src_addr":"203.0.113.9","dst_addr":"198.51.100.7"}}`, "203.0.113.9/32", "dst_addr 198.51.100.7/32"},
		"ipv6_connection egress":                                      {`{"ipv6_connection":{"src_addr":"fd00::5","dst_addr":"2001:db8::9","protocol":"udp"}}`, "2001:db8::9/128", "protocol udp, src_addr fd00::5/128"},
	} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			r := g.command(t, "req-"+strings.ReplaceAll(name, " ", "-"), `{"action":"deny","target":`+tc.target+`}`)
			r.wantStatus(t, 200)
			req := g.svc.lastRequest(t)
			if !slices.Equal(req.Prefixes, []netip.Prefix{netip.MustParsePrefix(tc.want)}) {
				t.Errorf("blocked %v, want %s", req.Prefixes, tc.want)
			}
			if req.Source != "openc2" || req.Ref != "req-"+strings.ReplaceAll(name, " ", "-") || req.Kind != indicator.C2Beacon {
				t.Errorf("source %q ref %q kind %q", req.Source, req.Ref, req.Kind)
			}
			if !req.ValidFrom.Equal(openC2Now) || !req.ValidUntil.IsZero() {
				t.Errorf("window %s..%s, want now and the default lifetime", req.ValidFrom, req.ValidUntil)
			}
			if got := req.Labels["openc2.not_enforced"]; got != tc.notEnforced {
				t.Errorf("not_enforced %q, want %q", got, tc.notEnforced)
			}
			if req.Labels["openc2.target"] == "" || !strings.Contains(req.Name, tc.want) {
				t.Errorf("labels %v name %q", req.Labels, req.Name)
			}
			if g.svc.actors[0] != openC2Actor {
				t.Errorf("actor %q", g.svc.actors[0])
			}
			res := r.resp.Results
			if res == nil || res.SLPF == nil || res.SLPF.RuleNumber != 101 || res.Warden.State != "active" || res.Warden.ExpiresAt == 0 {
				t.Errorf("results %s", r.body)
			}
			if tc.notEnforced != "" && !strings.Contains(r.resp.StatusText, "the whole address is blocked") {
				t.Errorf("status_text %q does not say the ports were not enforced", r.resp.StatusText)
			}
		})
	}
	t.Run("x-warden kind and name", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		g.command(t, "k-1", `{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"args":{"x-warden":{"kind":"exfiltration","name":"drop site of campaign X"}}}`).wantStatus(t, 200)
		if req := g.svc.lastRequest(t); req.Kind != indicator.Exfiltration || req.Name != "drop site of campaign X" {
			t.Errorf("kind %q name %q", req.Kind, req.Name)
		}
	})
	t.Run("command_id recorded", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		g.command(t, "c-1", `{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"command_id":"cmd-7"}`).wantStatus(t, 200)
		if req := g.svc.lastRequest(t); req.Ref != "c-1" || req.Labels["openc2.command_id"] != "cmd-7" {
			t.Errorf("ref %q labels %v", req.Ref, req.Labels)
		}
	})
}

// TestOpenC2DenyWindow: start_time, stop_time and duration bound the
// block (LS 3.3.1.4).
func TestOpenC2DenyWindow(t *testing.T) {
	ms := func(d time.Duration) int64 { return openC2Now.Add(d).UnixMilli() }
	at := func(d time.Duration) time.Time { return openC2Now.Add(d) }
	for name, tc := range map[string]struct {
		args        string
		from, until time.Time
		status      int
	}{
		"none":             {args: ``, from: openC2Now},
		"start":            {args: fmt.Sprintf(`"start_time":%d`, ms(time.Hour)), from: at(time.Hour)},
		"stop":             {args: fmt.Sprintf(`"stop_time":%d`, ms(2*time.Hour)), from: openC2Now, until: at(2 * time.Hour)},
		"duration":         {args: `"duration":3600000`, from: openC2Now, until: at(time.Hour)},
		"start stop":       {args: fmt.Sprintf(`"start_time":%d,"stop_time":%d`, ms(time.Hour), ms(3*time.Hour)), from: at(time.Hour), until: at(3 * time.Hour)},
		"start duration":   {args: fmt.Sprintf(`"start_time":%d,"duration":60000`, ms(time.Hour)), from: at(time.Hour), until: at(time.Hour + time.Minute)},
		"stop duration":    {args: fmt.Sprintf(`"stop_time":%d,"duration":3600000`, ms(3*time.Hour)), from: at(2 * time.Hour), until: at(3 * time.Hour)},
		"past start":       {args: fmt.Sprintf(`"start_time":%d,"duration":7200000`, ms(-time.Hour)), from: at(-time.Hour), until: at(time.Hour)},
		"all three":        {args: fmt.Sprintf(`"start_time":%d,"stop_time":%d,"duration":1000`, ms(0), ms(time.Hour)), status: 400},
		"zero duration":    {args: `"duration":0`, status: 400},
		"stop in the past": {args: fmt.Sprintf(`"stop_time":%d`, ms(-time.Minute)), status: 400},
		"stop before start": {args: fmt.Sprintf(`"start_time":%d,"stop_time":%d`, ms(2*time.Hour), ms(time.Hour)),
			status: 400},
		"ends in the past": {args: fmt.Sprintf(`"start_time":%d,"duration":1000`, ms(-time.Hour)), status: 400},
		"negative":         {args: `"duration":-5`, status: 400},
		"fraction":         {args: `"duration":1.5`, status: 400},
		"string":           {args: `"stop_time":"2030-01-01T00:00:00Z"`, status: 400},
		"year 10000":       {args: `"stop_time":253402300800000`, status: 400},
		"null":             {args: `"duration":null`, status: 400},
	} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			cmd := `{"action":"deny","target":{"ipv4_net":"203.0.113.9"}}`
			if tc.args != "" {
				cmd = `{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"args":{` + tc.args + `}}`
			}
			r := g.command(t, "w-1", cmd)
			if tc.status != 0 {
				r.wantStatus(t, tc.status)
				if g.svc.calls() != 0 {
					t.Errorf("a refused window reached the block unit")
				}
				return
			}
			r.wantStatus(t, 200)
			req := g.svc.lastRequest(t)
			if !req.ValidFrom.Equal(tc.from) || !req.ValidUntil.Equal(tc.until) {
				t.Errorf("window %s..%s, want %s..%s", req.ValidFrom, req.ValidUntil, tc.from, tc.until)
			}
		})
	}
}

// TestOpenC2Lifetime: the status text says when the block's end is
// Warden's, not the command's.
func TestOpenC2Lifetime(t *testing.T) {
	for name, tc := range map[string]struct{ args, text string }{
		"no end":       {`{"response_requested":"complete"}`, "Warden's default lifetime"},
		"beyond max":   {fmt.Sprintf(`{"stop_time":%d}`, openC2Now.Add(200*24*time.Hour).UnixMilli()), "maximum lifetime is shorter"},
		"within bound": {`{"duration":3600000}`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			r := g.command(t, "t-1", `{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"args":`+tc.args+`}`)
			r.wantStatus(t, 200)
			if tc.text == "" && strings.Contains(r.resp.StatusText, "lifetime") || !strings.Contains(r.resp.StatusText, tc.text) {
				t.Errorf("status_text %q, want %q", r.resp.StatusText, tc.text)
			}
		})
	}
}

// TestOpenC2Refusals: what the profile forbids or Warden cannot honour
// is refused with the profile's or the language's status and text, and
// never reaches the block unit.
func TestOpenC2Refusals(t *testing.T) {
	deny := func(args string) string {
		return `{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"args":` + args + `}`
	}
	for name, tc := range map[string]struct {
		cmd    string
		status int
		text   string
	}{
		"drop_process reject":       {deny(`{"slpf":{"drop_process":"reject"}}`), 501, "Option not supported"},
		"drop_process false_ack":    {deny(`{"slpf":{"drop_process":"false_ack"}}`), 501, "Option not supported"},
		"drop_process unknown":      {deny(`{"slpf":{"drop_process":"tarpit"}}`), 400, "drop_process"},
		"persistent false":          {deny(`{"slpf":{"persistent":false}}`), 501, "Option not supported: slpf persistent false"},
		"persistent not a boolean":  {deny(`{"slpf":{"persistent":"yes"}}`), 400, "args.slpf"},
		"direction ingress":         {deny(`{"slpf":{"direction":"ingress"}}`), 501, "cannot narrow"},
		"direction egress":          {deny(`{"slpf":{"direction":"egress"}}`), 501, "cannot narrow"},
		"direction unknown":         {deny(`{"slpf":{"direction":"sideways"}}`), 400, "direction"},
		"insert_rule":               {deny(`{"slpf":{"insert_rule":7}}`), 501, "Option not supported: slpf insert_rule"},
		"slpf draft argument":       {deny(`{"slpf":{"running":true}}`), 400, "unknown field"},
		"flat slpf argument":        {deny(`{"slpf:drop_process":"none"}`), 400, `{"slpf": {"drop_process"`},
		"other namespace":           {deny(`{"x-acme":{"speed":9}}`), 501, "Option not supported"},
		"unknown argument":          {deny(`{"priority":1}`), 400, "not an OpenC2 argument"},
		"empty args":                {deny(`{}`), 400, "at least one argument"},
		"response_requested bad":    {deny(`{"response_requested":"later"}`), 400, "response_requested"},
		"x-warden kind unknown":     {deny(`{"x-warden":{"kind":"bad_vibes"}}`), 400, "not an indicator kind"},
		"x-warden unknown member":   {deny(`{"x-warden":{"gateway":"gw-1"}}`), 400, "unknown field"},
		"drop_process on allow":     {`{"action":"allow","target":{"ipv4_net":"203.0.113.9"},"args":{"slpf":{"drop_process":"none"}}}`, 400, "deny only"},
		"x-warden on allow":         {`{"action":"allow","target":{"ipv4_net":"203.0.113.9"},"args":{"x-warden":{"kind":"c2_beacon"}}}`, 400, "does not apply"},
		"duration on allow":         {`{"action":"allow","target":{"ipv4_net":"203.0.113.9"},"args":{"duration":1000}}`, 501, "Option not supported"},
		"future start on allow":     {fmt.Sprintf(`{"action":"allow","target":{"ipv4_net":"203.0.113.9"},"args":{"start_time":%d}}`, openC2Now.Add(time.Hour).UnixMilli()), 501, "Option not supported"},
		"duration on delete":        {`{"action":"delete","target":{"slpf:rule_number":5},"args":{"duration":1000}}`, 400, "does not apply"},
		"future start on delete":    {fmt.Sprintf(`{"action":"delete","target":{"slpf:rule_number":5},"args":{"start_time":%d}}`, openC2Now.Add(time.Hour).UnixMilli()), 501, "Option not supported"},
		"query with ack":            {`{"action":"query","target":{"features":[]},"args":{"response_requested":"ack"}}`, 400, "LS 4.1"},
		"query with start_time":     {`{"action":"query","target":{"features":[]},"args":{"start_time":1}}`, 400, "LS 4.1"},
		"unknown feature":           {`{"action":"query","target":{"features":["schema"]}}`, 400, "not a feature"},
		"eleven features":           {`{"action":"query","target":{"features":["versions","versions","versions","versions","versions","versions","versions","versions","versions","versions","versions"]}}`, 400, "at most 10"},
		"update file":               {`{"action":"update","target":{"file":{"name":"fw.conf"}}}`, 501, "Command not supported"},
		"contain device":            {`{"action":"contain","target":{"device":{"device_id":"x"}}}`, 501, "Command not supported"},
		"deny domain_name":          {`{"action":"deny","target":{"domain_name":"evil.example"}}`, 501, "Target type not supported"},
		"query ipv4_net":            {`{"action":"query","target":{"ipv4_net":"203.0.113.9"}}`, 501, "Target type not supported"},
		"delete ipv4_net":           {`{"action":"delete","target":{"ipv4_net":"203.0.113.9"}}`, 501, "Target type not supported"},
		"extension target":          {`{"action":"deny","target":{"x-acme:widget":1}}`, 501, "Target type not supported"},
		"misspelt target":           {`{"action":"deny","target":{"ip_conection":{"src_addr":"1.2.3.4"}}}`, 400, "Validation Error: Target"},
		"unknown slpf target":       {`{"action":"delete","target":{"slpf:rule":5}}`, 400, "Validation Error: Target"},
		"unknown action":            {`{"action":"block","target":{"ipv4_net":"203.0.113.9"}}`, 400, "Validation Error: Action"},
		"no action":                 {`{"target":{"ipv4_net":"203.0.113.9"}}`, 400, "action is required"},
		"no target":                 {`{"action":"deny"}`, 400, "exactly one member"},
		"two targets":               {`{"action":"deny","target":{"ipv4_net":"203.0.113.9","ipv6_net":"2001:db8::1"}}`, 400, "exactly one member"},
		"unknown command member":    {`{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"priority":1}`, 400, "unknown field"},
		"null target":               {`{"action":"deny","target":{"ipv4_net":null}}`, 400, "must not be null"},
		"ipv6 in ipv4_net":          {`{"action":"deny","target":{"ipv4_net":"2001:db8::1"}}`, 400, "not an IPv4 range"},
		"ipv4 in ipv6_net":          {`{"action":"deny","target":{"ipv6_net":"203.0.113.9"}}`, 400, "not an IPv6 range"},
		"mapped in ipv6_net":        {`{"action":"deny","target":{"ipv6_net":"::ffff:203.0.113.9"}}`, 400, "IPv4-mapped"},
		"bad cidr":                  {`{"action":"deny","target":{"ipv4_net":"203.0.113.9/33"}}`, 400, "not a CIDR range"},
		"bad address":               {`{"action":"deny","target":{"ipv4_net":"203.0.113"}}`, 400, "not an address"},
		"zone":                      {`{"action":"deny","target":{"ipv6_net":"fe80::1%eth0"}}`, 400, "not an address"},
		"ipv4_net not a string":     {`{"action":"deny","target":{"ipv4_net":["203.0.113.9"]}}`, 400, "must be a string"},
		"connection ports only":     {`{"action":"deny","target":{"ipv4_connection":{"protocol":"tcp","dst_port":445}}}`, 501, "Rule not updated"},
		"connection empty":          {`{"action":"deny","target":{"ipv4_connection":{}}}`, 400, "at least one property"},
		"connection bad port":       {`{"action":"deny","target":{"ipv4_connection":{"dst_addr":"203.0.113.9","dst_port":70000}}}`, 400, "not a port"},
		"connection bad protocol":   {`{"action":"deny","target":{"ipv4_connection":{"dst_addr":"203.0.113.9","protocol":"gre"}}}`, 400, "protocol"},
		"connection icmp_type":      {`{"action":"deny","target":{"ipv4_connection":{"dst_addr":"203.0.113.9","icmp_type":8}}}`, 400, "unknown field"},
		"connection wrong family":   {`{"action":"deny","target":{"ipv6_connection":{"dst_addr":"203.0.113.9"}}}`, 400, "dst_addr"},
		"rule number not a number":  {`{"action":"delete","target":{"slpf:rule_number":"5"}}`, 400, "whole number"},
		"rule number zero":          {`{"action":"delete","target":{"slpf:rule_number":0}}`, 400, "positive"},
		"other actuator":            {`{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"actuator":{"er":{"hostname":"h"}}}`, 501, "Actuator not supported"},
		"two actuators":             {`{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"actuator":{"slpf":{},"er":{}}}`, 400, "exactly one member"},
		"unknown specifier":         {`{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"actuator":{"slpf":{"rack":"4"}}}`, 400, "actuator.slpf"},
		"command_id with spaces":    {`{"action":"query","target":{"features":[]},"command_id":"a b"}`, 400, "command_id"},
		"command_id too long":       {`{"action":"query","target":{"features":[]},"command_id":"` + strings.Repeat("c", 37) + `"}`, 400, "command_id"},
		"asset_tuple of eleven":     {`{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"actuator":{"slpf":{"asset_tuple":["1","2","3","4","5","6","7","8","9","10","11"]}}}`, 400, "more than 10"},
		"response none, refused":    {deny(`{"response_requested":"none","slpf":{"drop_process":"reject"}}`), -501, ""},
		"response none, bad target": {`{"action":"deny","target":{"ipv4_net":"nope"},"args":{"response_requested":"none"}}`, -400, ""},
	} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			r := g.command(t, "r-1", tc.cmd)
			switch {
			case tc.status < 0:
				// response_requested none: no Response (SLPF 3.2.1.7.1),
				// the status line alone.
				if r.http != -tc.status || r.body != "" {
					t.Fatalf("HTTP %d body %q, want %d and no body", r.http, r.body, -tc.status)
				}
			default:
				r.wantStatus(t, tc.status)
				if !strings.Contains(r.resp.StatusText, tc.text) {
					t.Errorf("status_text %q does not contain %q", r.resp.StatusText, tc.text)
				}
			}
			if g.svc.calls() != 0 {
				t.Errorf("a refused command reached the block unit")
			}
		})
	}
}

// TestOpenC2Honoured: the SLPF arguments' defaults, spelt out, are
// honoured (SLPF 2.1.3.2).
func TestOpenC2Honoured(t *testing.T) {
	for name, args := range map[string]string{
		"drop_process none": `{"slpf":{"drop_process":"none"}}`,
		"persistent true":   `{"slpf":{"persistent":true}}`,
		"direction both":    `{"slpf":{"direction":"both"}}`,
		"all defaults":      `{"response_requested":"complete","slpf":{"drop_process":"none","persistent":true,"direction":"both"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			g.command(t, "h-1", `{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"args":`+args+`,"actuator":{"slpf":{}}}`).wantStatus(t, 200)
			if g.svc.calls() != 1 {
				t.Errorf("%d calls", g.svc.calls())
			}
			if _, ok := g.svc.lastRequest(t).Labels["openc2.actuator"]; ok {
				t.Errorf("an actuator without specifiers was recorded")
			}
		})
	}
}

// TestOpenC2PendingApproval: a block the safety rules hold for a person
// is answered 102, "accepted, not complete" (LS 3.3.2.1), with why.
func TestOpenC2PendingApproval(t *testing.T) {
	for _, rt := range []string{"", `,"args":{"response_requested":"complete"}`, `,"args":{"response_requested":"status"}`} {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		g.svc.unsafe = func(r controller.BlockRequest) []string {
			if r.Prefixes[0].Bits() < 16 {
				return []string{r.Prefixes[0].String() + " is wider than /16"}
			}
			return nil
		}
		r := g.command(t, "p-1", `{"action":"deny","target":{"ipv4_net":"203.0.0.0/8"}`+rt+`}`)
		r.wantStatus(t, http.StatusProcessing)
		if !strings.Contains(r.resp.StatusText, "waits for a person's approval") || !strings.Contains(r.resp.StatusText, "wider than /16") {
			t.Errorf("status_text %q", r.resp.StatusText)
		}
		if res := r.resp.Results; res == nil || res.SLPF.RuleNumber != 101 || res.Warden.State != "pending_approval" || len(res.Warden.Unsafe) != 1 {
			t.Errorf("results %s", r.body)
		}
	}
}

// TestOpenC2ResponseRequested: none, ack, status and complete (LS
// 3.3.1.4, SLPF 3.2.1.7).
func TestOpenC2ResponseRequested(t *testing.T) {
	for rt, want := range map[string]struct {
		status, http int
		body         bool
	}{
		"none":     {http: http.StatusAccepted},
		"ack":      {status: http.StatusProcessing, http: http.StatusAccepted, body: true},
		"status":   {status: 200, http: 200, body: true},
		"complete": {status: 200, http: 200, body: true},
	} {
		t.Run(rt, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			r := g.command(t, "rr-"+rt, `{"action":"deny","target":{"ipv4_net":"203.0.113.9"},"args":{"response_requested":"`+rt+`"}}`)
			if r.http != want.http || (r.body != "") != want.body {
				t.Fatalf("HTTP %d body %q", r.http, r.body)
			}
			if want.body && (r.resp.Status != want.status || r.resp.Results.SLPF.RuleNumber != 101) {
				t.Errorf("answer %s", r.body)
			}
			if !want.body && r.header.Get("Content-Type") != "" {
				t.Errorf("Content-Type %q without a body", r.header.Get("Content-Type"))
			}
			if g.svc.calls() != 1 {
				t.Errorf("the command was carried out %d times", g.svc.calls())
			}
		})
	}
}

// TestOpenC2Idempotent: a request id names one block; sent again it is
// the same rule, whatever became of it.
func TestOpenC2Idempotent(t *testing.T) {
	g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
	cmd := `{"action":"deny","target":{"ipv4_net":"203.0.113.9"}}`
	first := g.command(t, "same", cmd)
	first.wantStatus(t, 200)
	again := g.command(t, "same", cmd)
	again.wantStatus(t, 200)
	if again.resp.Results.SLPF.RuleNumber != first.resp.Results.SLPF.RuleNumber || !strings.Contains(again.resp.StatusText, "already recorded") {
		t.Errorf("second answer %s", again.body)
	}
	if len(g.svc.blocks) != 1 {
		t.Errorf("%d blocks", len(g.svc.blocks))
	}
	g.command(t, "del", `{"action":"delete","target":{"slpf:rule_number":101}}`).wantStatus(t, 200)
	withdrawn := g.command(t, "same", cmd)
	withdrawn.wantStatus(t, 400)
	if !strings.Contains(withdrawn.resp.StatusText, "new request_id") {
		t.Errorf("status_text %q", withdrawn.resp.StatusText)
	}
	g.svc.blocks[101].State, g.svc.blocks[101].DecidedBy = controller.BlockRefused, "user:ann"
	refused := g.command(t, "same", cmd)
	refused.wantStatus(t, 403)
	if !strings.Contains(refused.resp.StatusText, "user:ann refused") {
		t.Errorf("status_text %q", refused.resp.StatusText)
	}
}

// TestOpenC2Allow: allow lifts Warden's blocks of exactly the target and
// says which others still cover it (SLPF 2.3.1).
func TestOpenC2Allow(t *testing.T) {
	g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
	g.svc.add(1, controller.BlockActive, "203.0.113.9/32")
	g.svc.add(2, controller.BlockPending, "203.0.113.9/32")
	g.svc.add(3, controller.BlockActive, "203.0.113.0/24")
	g.svc.add(4, controller.BlockActive, "198.51.100.1/32", "203.0.113.9/32")
	g.svc.add(5, controller.BlockWithdrawn, "203.0.113.9/32")
	g.svc.add(6, controller.BlockActive, "198.51.100.1/32")

	r := g.command(t, "a-1", `{"action":"allow","target":{"ipv4_net":"203.0.113.9"}}`)
	r.wantStatus(t, 200)
	if r.resp.Results.SLPF.RuleNumber != 1 || !slices.Equal(r.resp.Results.Warden.RuleNumbers, []int64{1, 2}) {
		t.Errorf("results %s", r.body)
	}
	if !strings.Contains(r.resp.StatusText, "rules 3, 4 also cover") {
		t.Errorf("status_text %q does not name the covering rules", r.resp.StatusText)
	}
	for n, want := range map[int64]controller.BlockState{1: controller.BlockWithdrawn, 2: controller.BlockWithdrawn, 3: controller.BlockActive,
		4: controller.BlockActive, 5: controller.BlockWithdrawn, 6: controller.BlockActive} {
		if got := g.svc.state(n); got != want {
			t.Errorf("rule %d is %s, want %s", n, got, want)
		}
	}
	if !strings.Contains(g.svc.reasons[0], "OpenC2 allow ipv4_net 203.0.113.9/32 (request_id a-1)") {
		t.Errorf("reason %q", g.svc.reasons[0])
	}

	again := g.command(t, "a-2", `{"action":"allow","target":{"ipv4_net":"203.0.113.9"}}`)
	again.wantStatus(t, 404)
	if !strings.Contains(again.resp.StatusText, "nothing to allow") || !strings.Contains(again.resp.StatusText, "rules 3, 4") {
		t.Errorf("status_text %q", again.resp.StatusText)
	}
	g.command(t, "a-3", `{"action":"allow","target":{"ipv4_net":"192.0.2.1"}}`).wantStatus(t, 404)

	conn := g.command(t, "a-4", fmt.Sprintf(`{"action":"allow","target":{"ipv4_connection":{"src_addr":"10.0.0.8","dst_addr":"198.51.100.1","dst_port":443}},"args":{"start_time":%d}}`, openC2Now.UnixMilli()))
	conn.wantStatus(t, 200)
	if g.svc.state(6) != controller.BlockWithdrawn || g.svc.state(4) != controller.BlockActive {
		t.Errorf("allow of a connection lifted 6: %s, 4: %s", g.svc.state(6), g.svc.state(4))
	}
}

// TestOpenC2AllowPairs: each allow target lifts the block of its range.
func TestOpenC2AllowPairs(t *testing.T) {
	for target, blocked := range map[string]string{
		`{"ipv4_net":"203.0.113.0/24"}`:                                       "203.0.113.0/24",
		`{"ipv6_net":"2001:db8:7::/48"}`:                                      "2001:db8:7::/48",
		`{"ipv4_connection":{"dst_addr":"203.0.113.9","protocol":"udp"}}`:     "203.0.113.9/32",
		`{"ipv6_connection":{"src_addr":"2001:db8::9","dst_addr":"fd00::5"}}`: "2001:db8::9/128",
	} {
		t.Run(target, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			g.svc.add(42, controller.BlockActive, blocked)
			r := g.command(t, "ap-1", `{"action":"allow","target":`+target+`}`)
			r.wantStatus(t, 200)
			if g.svc.state(42) != controller.BlockWithdrawn || r.resp.Results.SLPF.RuleNumber != 42 {
				t.Errorf("rule 42 is %s; answer %s", g.svc.state(42), r.body)
			}
		})
	}
}

// TestOpenC2Delete: delete slpf:rule_number (SLPF 2.3.4.1).
func TestOpenC2Delete(t *testing.T) {
	g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
	g.svc.add(7, controller.BlockActive, "203.0.113.9/32")
	g.svc.add(8, controller.BlockExpired, "203.0.113.10/32")
	r := g.command(t, "d-1", `{"action":"delete","target":{"slpf:rule_number":7}}`)
	r.wantStatus(t, 200)
	if r.resp.Results.SLPF.RuleNumber != 7 || r.resp.Results.Warden.State != "withdrawn" || g.svc.state(7) != controller.BlockWithdrawn {
		t.Errorf("answer %s, rule 7 %s", r.body, g.svc.state(7))
	}
	if g.svc.reasons[0] != "OpenC2 delete slpf:rule_number 7 (request_id d-1)" || g.svc.actors[0] != openC2Actor {
		t.Errorf("reason %q actor %q", g.svc.reasons[0], g.svc.actors[0])
	}
	if again := g.command(t, "d-1b", `{"action":"delete","target":{"slpf:rule_number":7}}`); again.resp.Status != 200 || again.resp.Results.Warden.State != "withdrawn" {
		t.Errorf("deleting a withdrawn rule again: %s", again.body)
	}
	g.command(t, "d-2", `{"action":"delete","target":{"slpf:rule_number":9}}`).wantStatus(t, 404)
	if r := g.command(t, "d-3", `{"action":"delete","target":{"slpf:rule_number":8}}`); r.resp.Status != 404 || !strings.Contains(r.resp.StatusText, "not in force") {
		t.Errorf("deleting an expired rule: %s", r.body)
	}
}

// TestOpenC2ServiceErrors: the block unit's errors become OpenC2 status
// codes; an unexpected one is not shown to the producer.
func TestOpenC2ServiceErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		err    error
		status int
	}{
		"invalid":     {fmt.Errorf("prefixes: %w", controller.ErrInvalid), 400},
		"forbidden":   {fmt.Errorf("not yours: %w", controller.ErrForbidden), 403},
		"not running": {fmt.Errorf("stopping: %w", controller.ErrNotRunning), 503},
		"not found":   {fmt.Errorf("gone: %w", store.ErrNotFound), 404},
		"internal":    {errors.New("sqlite: disk I/O error at /var/lib/warden/warden.db"), 500},
	} {
		for _, cmd := range []string{
			`{"action":"deny","target":{"ipv4_net":"203.0.113.9"}}`,
			`{"action":"allow","target":{"ipv4_net":"203.0.113.9"}}`,
			`{"action":"delete","target":{"slpf:rule_number":3}}`,
		} {
			t.Run(name+"/"+strings.Split(cmd, `"`)[3], func(t *testing.T) {
				g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
				g.svc.err = tc.err
				r := g.command(t, "e-1", cmd)
				want := tc.status
				if strings.Contains(cmd, "delete") && errors.Is(tc.err, store.ErrNotFound) {
					want = 404
				}
				r.wantStatus(t, want)
				if strings.Contains(r.body, "/var/lib") {
					t.Errorf("the answer shows an internal error: %s", r.body)
				}
			})
		}
	}
}

// TestOpenC2Transport: content types, the envelope, request ids and
// headers (HTTPS v1.0 3.2-3.3, v1.1 3.2-3.4).
func TestOpenC2Transport(t *testing.T) {
	query := `{"action":"query","target":{"features":["versions"]}}`
	t.Run("v1.1 envelope", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		r := g.post(t, "application/openc2+json;version=1.0", "rid-1", envelope("rid-1", query))
		r.wantStatus(t, 200)
		if r.message == nil || r.message.Headers.RequestID != "rid-1" || r.message.Headers.Created != openC2Now.UnixMilli() {
			t.Errorf("envelope headers %+v", r.message)
		}
		if r.header.Get("Content-Type") != v1.OpenC2ContentType || r.header.Get("Cache-Control") != "no-cache" || r.header.Get("X-Request-ID") != "rid-1" {
			t.Errorf("headers %v", r.header)
		}
	})
	t.Run("v1.1 envelope, X-Request-ID only", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		r := g.post(t, v1.OpenC2ContentType, "rid-2", `{"body":{"openc2":{"request":`+query+`}}}`)
		r.wantStatus(t, 200)
		if r.message.Headers.RequestID != "rid-2" {
			t.Errorf("request_id %q: HTTPS v1.1 3.3.3 copies X-Request-ID", r.message.Headers.RequestID)
		}
	})
	t.Run("v1.1 envelope, request_id only", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		r := g.post(t, v1.OpenC2ContentType, "", envelope("rid-3", query))
		if r.header.Get("X-Request-ID") != "rid-3" || r.message.Headers.RequestID != "rid-3" {
			t.Errorf("answer %v %s", r.header, r.body)
		}
	})
	t.Run("v1.1 envelope, the E.1.1 example", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		r := g.post(t, v1.OpenC2ContentType, "d1ac0489-ed51-4345-9175-f3078f30afe5", readOpenC2Fixture(t, "openc2_https11_e.1.1_message.json"))
		r.wantStatus(t, 200)
		var spec, ours map[string]any
		_ = json.Unmarshal([]byte(readOpenC2Fixture(t, "openc2_https11_e.1.2_message.json")), &spec)
		_ = json.Unmarshal([]byte(r.body), &ours)
		// from and to are optional (HTTPS v1.1 3.3.2): Warden leaves them out.
		delete(spec["headers"].(map[string]any), "from")
		delete(spec["headers"].(map[string]any), "to")
		if err := sameShape("", ours, spec); err != nil {
			t.Errorf("%v\nours: %s", err, r.body)
		}
	})
	t.Run("v1.1 envelope, command_id only", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		r := g.post(t, v1.OpenC2ContentType, "", `{"body":{"openc2":{"request":{"action":"query","target":{"features":[]},"command_id":"cmd-1"}}}}`)
		r.wantStatus(t, 200)
		if r.message.Headers.RequestID != "cmd-1" {
			t.Errorf("request_id %q", r.message.Headers.RequestID)
		}
	})
	t.Run("v1.0 bare", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		r := g.post(t, "application/openc2-cmd+json;version=1.0", "rid-4", query)
		r.wantStatus(t, 200)
		if r.message != nil || r.header.Get("Content-Type") != v1.OpenC2ResponseContentType || r.header.Get("X-Request-ID") != "rid-4" {
			t.Errorf("answer %v %s", r.header, r.body)
		}
	})
	t.Run("v1.0 bare without an id", func(t *testing.T) {
		g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
		r := g.post(t, v1.OpenC2CommandContentType, "", `{"action":"deny","target":{"ipv4_net":"203.0.113.9"}}`)
		r.wantStatus(t, 200)
		id := r.header.Get("X-Request-ID")
		if len(id) != 36 || g.svc.lastRequest(t).Ref != id {
			t.Errorf("made-up request id %q, block ref %q", id, g.svc.lastRequest(t).Ref)
		}
	})
	for name, tc := range map[string]struct {
		contentType, body string
		envelope          bool
	}{
		"application/json envelope": {"application/json", envelope("rid-5", query), true},
		"application/json bare":     {"application/json; charset=utf-8", query, false},
		"no Content-Type envelope":  {"", envelope("rid-5", query), true},
		"no Content-Type bare":      {"", query, false},
		"version 1.1":               {"application/openc2+json;version=1.1", envelope("rid-5", query), true},
	} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			r := g.post(t, tc.contentType, "rid-5", tc.body)
			r.wantStatus(t, 200)
			if (r.message != nil) != tc.envelope {
				t.Errorf("answered in the wrong style: %s", r.body)
			}
		})
	}
	for name, tc := range map[string]struct {
		contentType, xrid, body, text string
	}{
		"text/plain":             {"text/plain", "r", query, "Content-Type"},
		"version 2.0":            {"application/openc2+json;version=2.0", "r", envelope("r", query), "version"},
		"bad media type":         {"application/openc2+json;;", "r", envelope("r", query), "Content-Type"},
		"a response":             {v1.OpenC2ContentType, "r", `{"headers":{"request_id":"r"},"body":{"openc2":{"response":{"status":200}}}}`, "Consumer"},
		"a notification":         {v1.OpenC2ContentType, "r", `{"headers":{"request_id":"r"},"body":{"openc2":{"notification":{}}}}`, "Consumer"},
		"no openc2":              {v1.OpenC2ContentType, "r", `{"headers":{"request_id":"r"},"body":{}}`, "body.openc2 is required"},
		"null request":           {v1.OpenC2ContentType, "r", `{"headers":{"request_id":"r"},"body":{"openc2":{"request":null}}}`, "request is required"},
		"no request id":          {v1.OpenC2ContentType, "", `{"body":{"openc2":{"request":` + query + `}}}`, "no request id"},
		"unknown header":         {v1.OpenC2ContentType, "r", `{"headers":{"request_id":"r","priority":1},"body":{"openc2":{"request":` + query + `}}}`, "unknown field"},
		"two messages":           {v1.OpenC2ContentType, "r", envelope("r", query) + envelope("r", query), "one OpenC2 message"},
		"not JSON":               {v1.OpenC2ContentType, "r", `{"headers":`, "decoding"},
		"neither":                {"application/json", "r", `{"status":200}`, "neither"},
		"request id with spaces": {v1.OpenC2ContentType, "a b", `{"body":{"openc2":{"request":` + query + `}}}`, "request id"},
		"request id too long":    {v1.OpenC2ContentType, "", envelope(strings.Repeat("x", 129), query), "request id"},
		"too large":              {v1.OpenC2ContentType, "r", envelope("r", `{"action":"query","target":{"features":[]},"command_id":"`+strings.Repeat("x", 70000)+`"}`), "larger than"},
	} {
		t.Run(name, func(t *testing.T) {
			g := newOpenC2Rig(t, DefaultOpenC2RateLimit)
			r := g.post(t, tc.contentType, tc.xrid, tc.body)
			r.wantStatus(t, 400)
			if !strings.Contains(r.resp.StatusText, tc.text) {
				t.Errorf("status_text %q does not contain %q", r.resp.StatusText, tc.text)
			}
			if strings.ContainsAny(r.header.Get("X-Request-ID"), " \r\n") {
				t.Errorf("echoed an invalid request id %q", r.header.Get("X-Request-ID"))
			}
		})
	}
}

// TestOpenC2RateLimit: beyond the rate query features reports, commands
// get 503 with Retry-After until the minute allows more.
func TestOpenC2RateLimit(t *testing.T) {
	g := newOpenC2Rig(t, 2)
	q := `{"action":"query","target":{"features":["rate_limit"]}}`
	first := g.command(t, "l-1", q)
	first.wantStatus(t, 200)
	if first.resp.Results.RateLimit != 2 {
		t.Errorf("rate_limit %v", first.resp.Results.RateLimit)
	}
	g.command(t, "l-2", q).wantStatus(t, 200)
	over := g.command(t, "l-3", `{"action":"deny","target":{"ipv4_net":"203.0.113.9"}}`)
	over.wantStatus(t, 503)
	if over.header.Get("Retry-After") != "30" || g.svc.calls() != 0 {
		t.Errorf("Retry-After %q, %d calls", over.header.Get("Retry-After"), g.svc.calls())
	}
	g.clock.Advance(30 * time.Second)
	g.command(t, "l-4", q).wantStatus(t, 200)
	g.command(t, "l-5", q).wantStatus(t, 503)
}

// openC2Creds is a credential store of three tokens.
type openC2Creds map[string]auth.Credential

func (c openC2Creds) CredentialByHash(_ context.Context, hash string) (auth.Credential, error) {
	if cred, ok := c[hash]; ok {
		return cred, nil
	}
	return auth.Credential{}, auth.ErrUnknownToken
}

// TestOpenC2Route: the server serves the actuator at /.well-known/openc2
// to callers whose role may respond, naming them as the actor.
func TestOpenC2Route(t *testing.T) {
	creds := openC2Creds{
		auth.HashToken("responder-token"): {User: "soar", Role: auth.Responder, TokenID: "t1"},
		auth.HashToken("intake-token"):    {User: "ids", Role: auth.Intake, TokenID: "t2"},
	}
	a, err := auth.NewAuthenticator(auth.Options{Store: creds, Limiter: auth.NewLimiter(1<<20, time.Millisecond, 1<<16)})
	if err != nil {
		t.Fatal(err)
	}
	svc := newFakeBlocks(time.Now())
	s, err := New(Options{Auth: a, Blocks: svc})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Routes(), Route{Method: "POST", Path: "/.well-known/openc2", Permission: auth.Respond}) {
		t.Errorf("routes %v", s.Routes())
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	send := func(method, token string) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+OpenC2Path,
			strings.NewReader(envelope("route-1", `{"action":"deny","target":{"ipv4_net":"203.0.113.9"}}`)))
		req.Header.Set("Content-Type", v1.OpenC2ContentType)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	resp, body := send("POST", "responder-token")
	r := readOpenC2Reply(t, resp.StatusCode, resp.Header, body)
	r.wantStatus(t, 200)
	if svc.actors[0] != "user:soar" {
		t.Errorf("actor %q", svc.actors[0])
	}
	for name, tc := range map[string]struct {
		method, token string
		status        int
	}{
		"no token":     {"POST", "", 401},
		"intake role":  {"POST", "intake-token", 403},
		"GET":          {"GET", "responder-token", 405},
		"unknown key":  {"POST", "nope", 401},
		"PUT no token": {"PUT", "", 405},
	} {
		t.Run(name, func(t *testing.T) {
			resp, _ := send(tc.method, tc.token)
			if resp.StatusCode != tc.status {
				t.Errorf("HTTP %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if svc.calls() != 1 {
		t.Errorf("%d calls reached the block unit", svc.calls())
	}
	t.Run("no block unit, no route", func(t *testing.T) {
		s, err := New(Options{Auth: a})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range s.Routes() {
			if r.Path == OpenC2Path {
				t.Errorf("route %v without a block unit", r)
			}
		}
	})
}

// FuzzDecodeOpenC2Command: whatever the body, the decoder answers 400 or
// 501 or a command Warden implements, with a valid request id, a masked
// range of the target's family and a block window that has not ended;
// and the handler answers one OpenC2 response of a Language
// Specification status.
func FuzzDecodeOpenC2Command(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "openc2_*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no OpenC2 fixtures: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for ct := range uint8(4) {
			f.Add(ct, b)
		}
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `{"action":"deny","target":{"ipv4_connection":{"src_addr":"10.0.0.1","dst_addr":"203.0.113.9"}},"args":{"stop_time":1534775470000}}`,
		`{"action":"allow","target":{"ipv6_net":"2001:db8::/32"},"args":{"slpf":{"persistent":true}}}`,
		`{"body":{"openc2":{"request":{"action":"delete","target":{"slpf:rule_number":9223372036854775807}}}}}`} {
		f.Add(uint8(0), []byte(s))
	}
	types := []string{"", v1.OpenC2ContentType, v1.OpenC2CommandContentType, "application/json"}
	lsStatus := []int{102, 200, 400, 401, 403, 404, 500, 501, 503}
	f.Fuzz(func(t *testing.T, ct uint8, body []byte) {
		contentType := types[int(ct)%len(types)]
		req, fail := decodeOpenC2(contentType, body, "fuzz-1")
		if fail != nil {
			if fail.status != 400 || fail.text == "" {
				t.Fatalf("decoding failed with %d %q", fail.status, fail.text)
			}
		} else {
			checkFuzzedCommand(t, req)
		}
		g := newOpenC2Rig(t, 0)
		r := g.post(t, contentType, "fuzz-1", string(body))
		if r.body == "" {
			if r.http != http.StatusAccepted && !slices.Contains(lsStatus, r.http) {
				t.Fatalf("HTTP %d without a response", r.http)
			}
			return
		}
		if !slices.Contains(lsStatus, r.resp.Status) || r.resp.Status == 500 {
			t.Fatalf("status %d: %s", r.resp.Status, r.body)
		}
	})
}

func checkFuzzedCommand(t *testing.T, req openC2Request) {
	t.Helper()
	if !validRequestID(req.requestID) {
		t.Fatalf("accepted request id %q", req.requestID)
	}
	cmd, fail := parseOpenC2Command(req, openC2Now, nil)
	if fail != nil {
		if (fail.status != 400 && fail.status != 501) || fail.text == "" {
			t.Fatalf("parsing failed with %d %q", fail.status, fail.text)
		}
		return
	}
	if !slices.Contains(openC2Pairs[cmd.action], cmd.target) {
		t.Fatalf("accepted %s %s", cmd.action, cmd.target)
	}
	switch cmd.action {
	case "deny", "allow":
		v6 := strings.HasPrefix(cmd.target, "ipv6")
		if !cmd.prefix.IsValid() || cmd.prefix != cmd.prefix.Masked() || cmd.prefix.Addr().Is6() != v6 || cmd.prefix.Addr().Is4In6() {
			t.Fatalf("%s %s: range %s", cmd.action, cmd.target, cmd.prefix)
		}
		if cmd.action == "deny" && (cmd.from.IsZero() || (!cmd.until.IsZero() && (!cmd.until.After(cmd.from) || !cmd.until.After(openC2Now)))) {
			t.Fatalf("window %s..%s", cmd.from, cmd.until)
		}
		if !cmd.kind.Valid() {
			t.Fatalf("kind %q", cmd.kind)
		}
	case "delete":
		if cmd.rule <= 0 {
			t.Fatalf("rule %d", cmd.rule)
		}
	case "query":
		if len(cmd.features) > 4 || cmd.response != respondComplete {
			t.Fatalf("features %v response %s", cmd.features, cmd.response)
		}
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/store"
)

// The fleet routes refuse vague or incomplete requests with a 4xx naming
// the problem; none of them starts anything.
func TestFleetRoutesRefuseBadInput(t *testing.T) {
	s := newStack(t, nil, nil)
	tests := map[string]struct {
		path, body string
		status     int
		contains   string
	}{
		"drift without gateway":        {"/v1/drift/check", `{}`, 400, "gateway"},
		"drift with a wildcard":        {"/v1/drift/check", `{"gateway":"gw-*"}`, 400, "wildcard"},
		"drift without agents":         {"/v1/drift/check", `{"gateway":"all"}`, 400, "baseline checker"},
		"drift unknown field":          {"/v1/drift/check", `{"gateway":"all","colour":"red"}`, 400, "colour"},
		"patch without gateways":       {"/v1/patch/waves", `{"packages":"openssh-server"}`, 400, "gateways"},
		"patch without packages":       {"/v1/patch/waves", `{"gateways":["gw-hq"]}`, 400, "packages"},
		"patch naming someone else":    {"/v1/patch/waves", `{"gateways":["gw-hq"],"packages":"x","by":"alice"}`, 400, `"field": "by"`},
		"drift naming someone else":    {"/v1/drift/check", `{"gateway":"all","by":"alice"}`, 400, `"field": "by"`},
		"patch unknown gateway":        {"/v1/patch/waves", `{"gateways":["gw-mars"],"packages":"x"}`, 400, "gw-mars"},
		"patch wildcard gateway":       {"/v1/patch/waves", `{"gateways":["*"],"packages":"x"}`, 400, "wildcard"},
		"patch gateways of wrong type": {"/v1/patch/waves", `{"gateways":"gw-hq","packages":"x"}`, 400, "gateways"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := s.call(t, "POST", tc.path, []byte(tc.body))
			if r.status != tc.status || !strings.Contains(string(r.body), tc.contains) {
				t.Fatalf("%s, want %d mentioning %q", r, tc.status, tc.contains)
			}
		})
	}
	expectStatus(t, s.call(t, "POST", "/v1/patch/waves", []byte(`{}`), withoutAuth()), http.StatusUnauthorized)
	runs := s.call(t, "GET", "/v1/runs", nil)
	if strings.Contains(string(runs.body), `"id"`) {
		t.Fatalf("a refused request started a run: %s", runs)
	}
}

// A patch wave is accepted at once and followed by its id: here the
// gateways have no agent, so the canary's patch cannot run and the wave
// stops there, leaving the others untouched.
func TestPatchWaveIsAcceptedThenFollowed(t *testing.T) {
	s := newStack(t, nil, nil)
	body := []byte(`{"gateways":["gw-hq","gw-osaka-a"],"packages":"openssh-server"}`)
	if r := s.call(t, "POST", "/v1/patch/waves", body); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a wave with the controller's loops stopped: %s; want 503", r)
	}
	expectStatus(t, s.call(t, "GET", "/v1/patch/waves/wave-nope", nil), http.StatusNotFound)

	ctx, cancel := context.WithCancel(t.Context())
	if err := s.d.AcquireWriter(ctx); err != nil {
		t.Fatal(err)
	}
	s.d.Controller.Start(ctx)
	defer func() { cancel(); s.d.Controller.Wait() }()
	r := s.call(t, "POST", "/v1/patch/waves", body)
	wave := decodeReply[store.PatchWave](t, r)
	if r.status != http.StatusAccepted || wave.ID == "" || r.header.Get("Location") != "/v1/patch/waves/"+wave.ID {
		t.Fatalf("accepting a wave: %s", r)
	}
	for deadline := time.Now().Add(30 * time.Second); !wave.Terminal(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("wave %s still %s", wave.ID, wave.State)
		}
		wave = decodeReply[store.PatchWave](t, s.call(t, "GET", "/v1/patch/waves/"+wave.ID, nil))
	}
	var rep struct {
		Failed     []string `json:"failed"`
		NotTouched []string `json:"not_touched"`
	}
	if err := json.Unmarshal(wave.Report, &rep); err != nil {
		t.Fatal(err)
	}
	if wave.State != store.WaveStopped || len(rep.Failed) != 1 || rep.Failed[0] != "gw-hq" || len(rep.NotTouched) != 1 || !strings.Contains(wave.Error, "gw-hq") {
		t.Fatalf("wave %s (%s), report %s", wave.State, wave.Error, wave.Report)
	}
}

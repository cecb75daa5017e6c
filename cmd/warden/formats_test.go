package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/warden-ir/warden/api/v1"
)

// TestIndicatorSubmitDetectorFormats: `indicator submit --format` sends a
// detector's body as it is (a JSON-lines stream, a TSV log: not one JSON
// document), as a detector's token, and prints the controller's answer; an
// unknown format is refused before anything is sent, listing those known.
func TestIndicatorSubmitDetectorFormats(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	ids := s.user(t, "ids1", "intake")
	for format, fixture := range map[string]string{
		"suricata": "suricata_ike_weak_crypto.json",
		"zeek":     "zeek_notice_bruteforce.log",
		"wazuh":    "wazuh_integrator_5720.json",
		"falco":    "falco_outbound.json",
	} {
		t.Run(format, func(t *testing.T) {
			out, stderr, err := runCLI(t, "indicator", "submit", "--format", format, "-f", filepath.Join("..", "..", "intake", "testdata", fixture),
				"--server", s.url, "--token", ids)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			var got v1.IntakeResponse
			if err := json.Unmarshal([]byte(out), &got); err != nil || got.Accepted == 0 {
				t.Fatalf("answer %q (%v): want at least one alert accepted", out, err)
			}
		})
	}
	_, _, err := runCLI(t, "indicator", "submit", "--format", "snort", "-f", "-", "--server", s.url, "--token", ids)
	if err == nil || !strings.Contains(err.Error(), "suricata") || !strings.Contains(err.Error(), "falco") {
		t.Fatalf("--format snort: %v; want a refusal listing the formats", err)
	}
}

package main

import (
	"regexp"
	"strings"
	"testing"
)

// warden investigate and warden capture start a run as the caller and
// say how to follow it; bad input exits non-zero naming the cause.
func TestInvestigateAndCaptureCommands(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	out, errOut, code := shell(t, s.remote("users", "add", "resp", "--role", "responder", "--token-only")...)
	if code != 0 {
		t.Fatalf("users add: %s", errOut)
	}
	resp := strings.TrimSpace(out)
	as := func(args ...string) []string { return append(args, "--server", s.url, "--token", resp) }

	out, errOut, code = shell(t, as("capture", "start", "gw-hq", "--duration", "5m", "--max-bytes", "1048576", "--filter", "host 203.0.113.9")...)
	if code != 0 || !regexp.MustCompile(`^capture run run-\S+ on gw-hq is \S+\nfollow it with: warden runs show run-\S+\n$`).MatchString(out) {
		t.Errorf("capture start: %d %q %q", code, out, errOut)
	}
	if out, errOut, code = shell(t, as("capture", "stop", "gw-hq")...); code != 0 || !strings.HasPrefix(out, "capture run ") {
		t.Errorf("capture stop: %d %q %q", code, out, errOut)
	}
	for _, tc := range []struct {
		args  []string
		cause string
	}{
		{[]string{"investigate", "inc-nope"}, "inc-nope"},
		{[]string{"investigate", "inc-nope", "--since", "yesterday"}, "since"},
		{[]string{"capture", "start", "gw-hq", "--filter", "host nowhere"}, "filter"},
		{[]string{"capture", "start", "gw-hq", "--duration", "1ms"}, "duration"},
		{[]string{"capture", "start", "gw-hq", "--max-bytes", "10"}, "max_bytes"},
		{[]string{"capture", "stop", "gw-nowhere"}, "gw-nowhere"},
	} {
		_, errOut, code := shell(t, as(tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.cause) {
			t.Errorf("warden %v: exit %d, stderr %q does not name %q", tc.args, code, errOut, tc.cause)
		}
	}
}

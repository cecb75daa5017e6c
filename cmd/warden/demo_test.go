package main

import (
	"strings"
	"testing"
)

// TestPrintDemoReady: a token the demo generated is printed so the person
// can use it; one taken from WARDEN_API_TOKEN never is.
func TestPrintDemoReady(t *testing.T) {
	const url, token = "http://127.0.0.1:8780", "s3cr3t-token"
	tests := map[string]struct {
		fromEnv bool
		want    []string
		notWant string
	}{
		"generated": {false, []string{url, "token " + token, "WARDEN_API_TOKEN=" + token}, ""},
		"from env":  {true, []string{url, "uses the API token from WARDEN_API_TOKEN"}, token},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			printDemoReady(&b, url, token, tc.fromEnv)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("printed %q, want it to contain %q", b.String(), w)
				}
			}
			if tc.notWant != "" && strings.Contains(b.String(), tc.notWant) {
				t.Errorf("printed %q: the token from the environment must not appear", b.String())
			}
		})
	}
}

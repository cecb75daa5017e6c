package main

import (
	"regexp"
	"strings"
	"testing"
)

// warden block: a safe block is in force at once; a dry run of an unsafe
// one says why and records nothing; the unsafe one, asked for, waits and
// its requester cannot approve it; another approver can; withdraw lifts
// it; bad input exits non-zero naming the cause.
func TestBlockCommands(t *testing.T) {
	hermetic(t)
	s := serveController(t)
	tokenOf := func(name, role string) string {
		out, errOut, code := shell(t, s.remote("users", "add", name, "--role", role, "--token-only")...)
		if code != 0 {
			t.Fatalf("users add %s: %s", name, errOut)
		}
		return strings.TrimSpace(out)
	}
	alice, bob := tokenOf("alice", "approver"), tokenOf("bob", "approver")
	as := func(token string, args ...string) []string { return append(args, "--server", s.url, "--token", token) }
	run := func(want int, args ...string) (string, string) {
		t.Helper()
		out, errOut, code := shell(t, args...)
		if code != want {
			t.Fatalf("warden %v exited %d, want %d: %s%s", args, code, want, out, errOut)
		}
		return out, errOut
	}

	out, _ := run(0, as(alice, "block", "add", "203.0.113.66", "--name", "C2")...)
	if !regexp.MustCompile(`^block \d+ \(203\.0\.113\.66/32\): active\n$`).MatchString(out) {
		t.Errorf("block add printed %q", out)
	}
	out, _ = run(0, as(alice, "block", "add", "10.1.2.3", "--dry-run")...)
	if !strings.Contains(out, "dry run: nothing recorded") || !strings.Contains(out, "block - (10.1.2.3/32): pending_approval") ||
		!strings.Contains(out, "private (RFC 1918)") {
		t.Errorf("dry run printed %q", out)
	}
	out, _ = run(0, as(alice, "block", "add", "10.1.2.3")...)
	n := regexp.MustCompile(`^block (\d+) `).FindStringSubmatch(out)
	if n == nil || !strings.Contains(out, "pending_approval") {
		t.Fatalf("unsafe block add printed %q", out)
	}
	_, errOut := run(1, as(alice, "block", "approve", n[1])...)
	if !strings.Contains(errOut, "four eyes") {
		t.Errorf("the requester approving: stderr %q", errOut)
	}
	out, _ = run(0, as(bob, "block", "approve", n[1], "--reason", "lab range")...)
	if !strings.Contains(out, ": active") {
		t.Errorf("approve printed %q", out)
	}
	out, _ = run(0, as(bob, "block", "list", "--state", "active")...)
	if !strings.Contains(out, "203.0.113.66/32") || !strings.Contains(out, "10.1.2.3/32") || strings.Count(out, "\n") != 3 {
		t.Errorf("list printed %q", out)
	}
	out, _ = run(0, as(bob, "block", "withdraw", n[1])...)
	if !strings.Contains(out, ": withdrawn") {
		t.Errorf("withdraw printed %q", out)
	}
	for args, cause := range map[string]string{
		"block add 10.1.2.999":        "prefixes[0]",
		"block approve x":             "not a block number",
		"block add 1.2.3.4 --ttl -1h": "--ttl",
		"block show 9999":             "not found",
	} {
		_, errOut := run(1, as(alice, strings.Fields(args)...)...)
		if !strings.Contains(errOut, cause) {
			t.Errorf("warden %s: stderr %q does not name %q", args, errOut, cause)
		}
	}
}

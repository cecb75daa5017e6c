package patching

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command is one program run: a path and an argument array, never a shell
// line.
type Command struct {
	// Path is the program (looked up in PATH when it has no slash).
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is the complete environment; nothing is inherited.
	Env []string
}

func (c Command) String() string {
	return strings.Join(append([]string{c.Path}, c.Args...), " ")
}

// Runner starts programs. It is the seam tests replace to see the argument
// arrays and to count how often apt would have run.
type Runner interface {
	// Run runs cmd to completion and returns its combined output (possibly
	// truncated to its last part). A non-zero exit is an error wrapping
	// *exec.ExitError.
	Run(ctx context.Context, cmd Command) ([]byte, error)
}

// ExecRunner runs programs with os/exec. On cancellation the program gets
// SIGTERM and, after Grace, SIGKILL.
type ExecRunner struct {
	// Grace is how long a cancelled program may take to stop; zero means
	// 30 seconds.
	Grace time.Duration
}

var _ Runner = ExecRunner{}

// maxOutput bounds what is kept of a program's output (its end, where apt
// writes its errors).
const maxOutput = 256 << 10

// Run implements Runner.
func (r ExecRunner) Run(ctx context.Context, c Command) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = append([]string{}, c.Env...) // never nil: nil would inherit ours
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = r.Grace
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 30 * time.Second
	}
	out := &tailBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("running %s: %w", c.Path, err)
	}
	return out.Bytes(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cut {
		return append([]byte("[…]\n"), t.buf...)
	}
	return bytes.Clone(t.buf)
}

// credentialsInURL matches the user:password part of a URL.
var credentialsInURL = regexp.MustCompile(`(://)[^/@\s]+@`)

// redact hides credentials embedded in URLs (a source such as
// https://user:token@repo.example/debian) before text reaches a log or an
// error.
func redact(s string) string {
	return credentialsInURL.ReplaceAllString(s, "${1}***@")
}

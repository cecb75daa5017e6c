package sensors

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
)

// sensorsContext is t.Context() with its own cancel.
func sensorsContext(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}

// sensorsCheckValidate fails the test unless err, what a config's
// Validate returned, is nil when want is empty (or only ""), or else names
// every one of want.
func sensorsCheckValidate(t *testing.T, err error, want ...string) {
	t.Helper()
	want = slices.DeleteFunc(slices.Clone(want), func(w string) bool { return w == "" })
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Validate() = nil, want an error naming %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %q, want it to contain %q", err, w)
		}
	}
}

// sensorsNext waits for a finding; the timeout only guards against a hang.
func sensorsNext(t testing.TB, found <-chan wire.Finding) wire.Finding {
	t.Helper()
	select {
	case f := <-found:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no finding within 10s")
		return wire.Finding{}
	}
}

// sensorsStart runs run in the background until the test ends and returns
// once started is closed (failing the test if run stops first or nothing
// starts within 10s). stop cancels run and returns what it returned, the
// same on every call.
func sensorsStart(t *testing.T, started <-chan struct{}, run func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		cancel()
		t.Fatalf("Run stopped before starting: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("Run did not start within 10s")
	}
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("Run did not return within 10s of its context ending")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// sensorsPump moves clk by step until done holds, giving the goroutines
// that wait on clk a moment between steps. It fails the test after ten
// seconds of real time: a bound on a hang, not a measured duration.
func sensorsPump(t *testing.T, clk *clocktest.Fake, step time.Duration, done func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !done() {
		clk.Advance(step)
		select {
		case <-deadline:
			t.Fatal("condition not reached after 10s of pumping the clock")
		case <-time.After(time.Millisecond):
		}
	}
}

// sensorsFake is a Sensor that emits what it is told and stops with err.
type sensorsFake struct {
	name  string
	emits []wire.Finding
	err   error // returned at once after emitting; nil waits for ctx
}

func (s sensorsFake) Name() string { return s.name }

func (s sensorsFake) Run(ctx context.Context, emit func(wire.Finding)) error {
	for _, f := range s.emits {
		emit(f)
	}
	if s.err != nil {
		return s.err
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestRunAll(t *testing.T) {
	broken := errors.New("netlink socket closed")
	ctx, cancel := sensorsContext(t)
	var mu sync.Mutex
	var got []wire.Finding
	emit := func(f wire.Finding) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, f)
		if len(got) == 2 {
			cancel() // both emitted: the healthy sensor may stop now
		}
	}
	err := RunAll(ctx, nil, emit,
		sensorsFake{name: "conn", emits: []wire.Finding{{Key: "a"}}, err: broken},
		sensorsFake{name: "auth", emits: []wire.Finding{{Key: "b", Sensor: "custom"}}},
	)
	if !errors.Is(err, broken) || !strings.Contains(err.Error(), "sensor conn") {
		t.Errorf("RunAll = %v, want the broken sensor's error naming it", err)
	}
	if strings.Contains(err.Error(), "auth") {
		t.Errorf("RunAll reported the sensor that stopped with its context: %v", err)
	}
	sensorOf := map[string]string{}
	for _, f := range got {
		sensorOf[f.Key] = f.Sensor
	}
	if sensorOf["a"] != "conn" || sensorOf["b"] != "custom" {
		t.Errorf("sensors stamped %v, want a by its sensor's name (conn) and b left as it said (custom)", sensorOf)
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := map[string]struct {
		in      []string
		want    []string
		wantErr string
	}{
		"cidrs masked":     {in: []string{"10.1.2.3/8", "2001:db8::1/32"}, want: []string{"10.0.0.0/8", "2001:db8::/32"}},
		"bare addresses":   {in: []string{"192.0.2.1", "::ffff:198.51.100.1"}, want: []string{"192.0.2.1/32", "198.51.100.1/32"}},
		"bad entry named":  {in: []string{"10.0.0.0/8", "10.0.0/8"}, wantErr: `sensors.test.networks[1]: "10.0.0/8"`},
		"empty is no list": {in: nil, want: nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParsePrefixes("sensors.test.networks", tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if strings.Join(s, " ") != strings.Join(tc.want, " ") {
				t.Errorf("ParsePrefixes = %v, want %v", s, tc.want)
			}
		})
	}
	nets, _ := ParsePrefixes("x", []string{"10.0.0.0/8"})
	if !InPrefixes(nets, netip.MustParseAddr("::ffff:10.9.9.9")) {
		t.Error("an IPv4-mapped address in 10/8 is not in it")
	}
	if InPrefixes(nets, netip.MustParseAddr("11.0.0.1")) {
		t.Error("11.0.0.1 is in 10/8")
	}
}

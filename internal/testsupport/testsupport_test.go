package testsupport

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(&b, "line %d\n", i)
			_ = b.String()
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 8 {
		t.Errorf("got %d lines, want 8:\n%s", got, b.String())
	}
}

func TestStepClockAdvancesOnEveryReading(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewStepClock(start, time.Second)
	if got := c.Now(); !got.Equal(start.Add(time.Second)) {
		t.Errorf("first Now = %v, want %v", got, start.Add(time.Second))
	}
	if got := <-c.After(time.Hour); !got.Equal(start.Add(2 * time.Second)) {
		t.Errorf("After fired at %v, want %v", got, start.Add(2*time.Second))
	}
}

func TestStepClockAfterFuncFiresAtOnce(t *testing.T) {
	c := NewStepClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), time.Second)
	fired := make(chan struct{})
	tm := c.AfterFunc(time.Hour, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("AfterFunc(1h) did not call f at once")
	}
	if tm.Stop() {
		t.Error("Stop of a fired timer = true, want false")
	}
}

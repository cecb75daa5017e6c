package sensors

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// TestQueueOffersAFindingBeforeItsFsync: the sender is woken, and can take
// the finding, as soon as it is written; Append still returns only once
// it is on disk. An alert's delivery (and so its containment) does not
// wait for the queue's fsync.
func TestQueueOffersAFindingBeforeItsFsync(t *testing.T) {
	q, err := OpenQueue(filepath.Join(t.TempDir(), "queue"), QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	syncing, release := make(chan struct{}), make(chan struct{})
	beforeSync = func() {
		close(syncing)
		<-release
	}
	t.Cleanup(func() { beforeSync = nil })
	appended := make(chan error, 1)
	go func() {
		appended <- q.Append(wire.Finding{Kind: KindAuthFailureBurst, Severity: SeverityHigh, Key: "k", Sensor: "auth", ObservedAt: time.Now()})
	}()
	select {
	case <-q.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the sender was not woken before the append's fsync")
	}
	<-syncing
	es, err := q.Peek(10, 1<<20)
	if err != nil || len(es) != 1 || es[0].Finding.Key != "k" {
		t.Fatalf("Peek during the fsync = %+v, %v; want the finding", es, err)
	}
	select {
	case err := <-appended:
		t.Fatalf("Append returned (%v) before its fsync", err)
	default:
	}
	close(release)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
}

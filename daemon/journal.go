package daemon

import (
	"context"

	"github.com/warden-ir/warden/journal"
)

// JournalDir is the intake journal's folder for a SQLite store at path.
func JournalDir(path string) string { return path + ".intake" }

// startJournal opens the intake journal beside the SQLite store, hands it
// to the controller (bulk intake is then answered once journaled) and
// runs the decider until ctx ends; the returned func waits for it and
// closes the journal. Only the holder of the writer lease calls it, so one
// process appends to the journal. Without it (intake.journal off, or
// PostgreSQL) it does nothing: intake commits to the store before every
// answer. On PostgreSQL the journal would be one replica's file, and an
// acknowledged alert would wait on that replica's disk for its decision;
// every replica commits to the shared database instead.
func (d *Daemon) startJournal(ctx context.Context) (func(), error) {
	if !d.Config.Intake.Journal || d.Config.Store.Postgres() {
		return func() {}, nil
	}
	j, err := journal.Open(JournalDir(d.Config.Store.Path))
	if err != nil {
		return nil, err
	}
	if err := d.Controller.UseJournal(j); err != nil {
		_ = j.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Controller.RunDecider(ctx); err != nil {
			d.Log.Error("the intake decider stopped", "err", err)
		}
	}()
	return func() {
		<-done
		_ = j.Close()
	}, nil
}

package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/store"
)

var t0 = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

type seqIDs struct {
	mu sync.Mutex
	n  int
}

func (s *seqIDs) next() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return fmt.Sprintf("evd-%04d", s.n)
}

func newLedger(t *testing.T) (*Ledger, *store.Store) {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "w.db"), "normal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// The clock moves a millisecond per reading, so every event has its
	// own, predictable time.
	clk, ids := testsupport.NewStepClock(t0, time.Millisecond), &seqIDs{}
	l, err := Open(t.Context(), st.DB(), filepath.Join(t.TempDir(), "evidence"), WithClock(clk), WithIDs(ids.next))
	if err != nil {
		t.Fatal(err)
	}
	return l, st
}

func item(name, content string) Item {
	return Item{Incident: "inc-1", Gateway: "gw-osaka", Name: name, MediaType: "text/plain", Kind: KindVolatile,
		Source: "capture_volatile", CollectedAt: t0, CollectedBy: "agent:gw-osaka", CollectedFrom: "gw-osaka:/proc/net", Content: []byte(content)}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestAddStoresBlobByHashReadOnly(t *testing.T) {
	l, _ := newLedger(t)
	const content = "tcp 10.20.0.1:51820 203.0.113.66:443 ESTABLISHED\n"
	rec, err := l.Add(t.Context(), item("connections.txt", content))
	if err != nil {
		t.Fatal(err)
	}
	want := sum(content)
	if rec.SHA256 != want || rec.Size != int64(len(content)) || rec.ID != "evd-0001" || rec.Name != "connections.txt" {
		t.Fatalf("record %+v", rec)
	}
	p := filepath.Join(l.Dir(), "sha256", want[:2], want)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("blob not at %s: %v", p, err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("blob mode %v, want 0400", fi.Mode().Perm())
	}
	for _, d := range []string{l.Dir(), filepath.Join(l.Dir(), "sha256"), filepath.Dir(p)} {
		di, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("directory %s mode %v, want 0700", d, di.Mode().Perm())
		}
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != content {
		t.Fatalf("blob content %q %v", got, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".incoming-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func blobCount(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "sha256"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAddDeduplicates(t *testing.T) {
	tests := map[string]struct {
		second      Item
		wantSameRec bool
		wantName    string
		wantBlobs   int
	}{
		"same content, same name, same incident: same record": {
			second: item("routes.txt", "default via 10.20.0.254\n"), wantSameRec: true, wantName: "routes.txt", wantBlobs: 1,
		},
		"same content, other name: new record, one blob": {
			second: item("routes-again.txt", "default via 10.20.0.254\n"), wantName: "routes-again.txt", wantBlobs: 1,
		},
		"same content, other incident: new record, one blob": {
			second:   func() Item { it := item("routes.txt", "default via 10.20.0.254\n"); it.Incident = "inc-2"; return it }(),
			wantName: "routes.txt", wantBlobs: 1,
		},
		"other content, same name: kept under a free name": {
			second: item("routes.txt", "default via 10.20.0.1\n"), wantName: "routes-2.txt", wantBlobs: 2,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, _ := newLedger(t)
			first, err := l.Add(t.Context(), item("routes.txt", "default via 10.20.0.254\n"))
			if err != nil {
				t.Fatal(err)
			}
			second, err := l.Add(t.Context(), tc.second)
			if err != nil {
				t.Fatal(err)
			}
			if (second.ID == first.ID) != tc.wantSameRec {
				t.Errorf("second record %s, first %s, want same=%t", second.ID, first.ID, tc.wantSameRec)
			}
			if second.Name != tc.wantName {
				t.Errorf("name %q, want %q", second.Name, tc.wantName)
			}
			if n := blobCount(t, l.Dir()); n != tc.wantBlobs {
				t.Errorf("%d blobs on disk, want %d", n, tc.wantBlobs)
			}
			all, err := l.List(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			wantRecs := 2
			if tc.wantSameRec {
				wantRecs = 1
			}
			if len(all) != wantRecs {
				t.Errorf("%d records, want %d", len(all), wantRecs)
			}
		})
	}
}

func TestAddRejectsIncompleteItems(t *testing.T) {
	tests := map[string]func(*Item){
		"no incident":             func(it *Item) { it.Incident = " " },
		"no collector":            func(it *Item) { it.CollectedBy = "" },
		"unknown kind":            func(it *Item) { it.Kind = "memory" },
		"content and reference":   func(it *Item) { it.Reference = map[string]string{"snapshot": "s1"} },
		"unencodable reference":   func(it *Item) { it.Content = nil; it.Reference = map[string]any{"f": func() {}} },
		"kind missing altogether": func(it *Item) { it.Kind = "" },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			l, _ := newLedger(t)
			it := item("x.txt", "x")
			mutate(&it)
			if _, err := l.Add(t.Context(), it); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
		})
	}
}

func TestReferenceIsCanonicalJSON(t *testing.T) {
	l, _ := newLedger(t)
	a := Item{Incident: "inc-1", Gateway: "gw-osaka", Name: "snapshot.json", Kind: KindSnapshot, CollectedBy: "controller",
		Reference: map[string]any{"vm": "gw-osaka", "snapshot": "warden-inc-1", "memory": true, "datastore": "[ds1] gw-osaka/"}}
	rec, err := l.Add(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	type ref struct {
		Snapshot  string `json:"snapshot"`
		VM        string `json:"vm"`
		Memory    bool   `json:"memory"`
		Datastore string `json:"datastore"`
	}
	b := a
	b.Name = "snapshot-again.json"
	b.Reference = ref{Snapshot: "warden-inc-1", VM: "gw-osaka", Memory: true, Datastore: "[ds1] gw-osaka/"}
	rec2, err := l.Add(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"datastore":"[ds1] gw-osaka/","memory":true,"snapshot":"warden-inc-1","vm":"gw-osaka"}`
	if rec.SHA256 != sum(want) || rec2.SHA256 != rec.SHA256 {
		t.Fatalf("reference hashes %s / %s, want sha256 of %s", rec.SHA256, rec2.SHA256, want)
	}
	if rec.MediaType != MediaTypeReference {
		t.Errorf("media type %q", rec.MediaType)
	}
}

func TestCustodyEventsAreAudited(t *testing.T) {
	l, st := newLedger(t)
	const marker = "CONTENT-MUST-NOT-REACH-AUDIT"
	rec, err := l.Add(t.Context(), item("auth.log", marker+" Failed password for root\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, chain, err := l.Show(t.Context(), rec.ID, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Open(t.Context(), rec.ID, "cli:bob")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !strings.HasPrefix(string(got), marker) {
		t.Fatalf("read %q %v", got, err)
	}
	if _, err := l.Verify(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, chain, err = l.Show(t.Context(), rec.ID, "cli:carol")
	if err != nil {
		t.Fatal(err)
	}
	var acts, actors []string
	for _, c := range chain {
		acts, actors = append(acts, c.Action), append(actors, c.Actor)
	}
	wantActs := "collected,stored,accessed,accessed,verified,accessed"
	if strings.Join(acts, ",") != wantActs {
		t.Errorf("custody %v, want %s", acts, wantActs)
	}
	wantActors := "agent:gw-osaka,controller,cli:alice,cli:bob,controller,cli:carol"
	if strings.Join(actors, ",") != wantActors {
		t.Errorf("custody actors %v, want %s", actors, wantActors)
	}
	entries, err := audit.List(t.Context(), st.DB(), "inc-1")
	if err != nil {
		t.Fatal(err)
	}
	var auditActs []string
	for _, e := range entries {
		auditActs = append(auditActs, e.Action)
		if strings.Contains(string(e.Data), marker) {
			t.Errorf("audit entry %d carries artefact content: %s", e.Seq, e.Data)
		}
		if !strings.Contains(string(e.Data), rec.SHA256) || !strings.Contains(string(e.Data), `"name":"auth.log"`) {
			t.Errorf("audit entry %d lacks name or hash: %s", e.Seq, e.Data)
		}
	}
	wantAudit := "evidence.collected,evidence.stored,evidence.accessed,evidence.accessed,evidence.verified,evidence.accessed"
	if strings.Join(auditActs, ",") != wantAudit {
		t.Errorf("audit %v, want %s", auditActs, wantAudit)
	}
	if rep, err := audit.Verify(t.Context(), st.DB()); err != nil || rep.Entries != 6 {
		t.Fatalf("audit chain: %+v %v", rep, err)
	}
}

func TestShowAndOpenNeedKnownIDAndActor(t *testing.T) {
	l, _ := newLedger(t)
	if _, _, err := l.Show(t.Context(), "evd-none", "cli:alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("show unknown: %v", err)
	}
	if _, err := l.Open(t.Context(), "evd-none", "cli:alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("open unknown: %v", err)
	}
	rec, err := l.Add(t.Context(), item("a.txt", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Show(t.Context(), rec.ID, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("show without actor: %v", err)
	}
	if _, err := l.Open(t.Context(), rec.ID, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("open without actor: %v", err)
	}
}

// tamper helpers act on the blob of rec as an intruder with root would.
func blobPath(l *Ledger, rec Record) string {
	return filepath.Join(l.Dir(), "sha256", rec.SHA256[:2], rec.SHA256)
}

func flipByte(t *testing.T, p string, at int) {
	t.Helper()
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 0x01
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesTamperedArtefact(t *testing.T) {
	tests := map[string]struct {
		tamper      func(t *testing.T, l *Ledger, st *store.Store, rec Record)
		wantMissing bool
	}{
		"one byte changed": {tamper: func(t *testing.T, l *Ledger, _ *store.Store, rec Record) { flipByte(t, blobPath(l, rec), 3) }},
		"truncated": {tamper: func(t *testing.T, l *Ledger, _ *store.Store, rec Record) {
			if err := os.Truncate(blobPath(l, rec), 2); err != nil {
				t.Fatal(err)
			}
		}},
		"blob deleted": {wantMissing: true, tamper: func(t *testing.T, l *Ledger, _ *store.Store, rec Record) {
			if err := os.Remove(blobPath(l, rec)); err != nil {
				t.Fatal(err)
			}
		}},
		"hash column edited to a path": {wantMissing: false, tamper: func(t *testing.T, _ *Ledger, st *store.Store, rec Record) {
			if _, err := st.DB().ExecContext(t.Context(), `UPDATE evidence SET sha256 = '../../../../etc/passwd' WHERE id = ?`, rec.ID); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, st := newLedger(t)
			if _, err := l.Add(t.Context(), item("processes.txt", "1 init\n2 sshd\n")); err != nil {
				t.Fatal(err)
			}
			rec, err := l.Add(t.Context(), item("sockets.txt", "udp 0.0.0.0:51820\n"))
			if err != nil {
				t.Fatal(err)
			}
			if bad, err := l.Verify(t.Context()); err != nil || len(bad) != 0 {
				t.Fatalf("intact ledger: %v %v", bad, err)
			}
			tc.tamper(t, l, st, rec)
			bad, err := l.Verify(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) != 1 {
				t.Fatalf("mismatches %+v, want exactly sockets.txt", bad)
			}
			m := bad[0]
			if m.ID != rec.ID || m.Name != "sockets.txt" || m.Incident != "inc-1" || m.Missing != tc.wantMissing {
				t.Errorf("mismatch %+v", m)
			}
			if !tc.wantMissing && (m.Actual == "" || m.Actual == m.Expected) {
				t.Errorf("actual hash not reported: %+v", m)
			}
			if !strings.Contains(m.String(), "sockets.txt") {
				t.Errorf("message does not name the artefact: %s", m)
			}
			if _, err := l.Export(t.Context(), "inc-1", io.Discard, "cli:alice"); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "sockets.txt") {
				t.Errorf("export of tampered evidence: %v", err)
			}
			if rep, err := audit.Verify(t.Context(), st.DB()); err != nil {
				t.Errorf("audit chain after verify: %+v %v", rep, err)
			}
		})
	}
}

func TestOpenDetectsTamperWhileReading(t *testing.T) {
	l, _ := newLedger(t)
	rec, err := l.Add(t.Context(), item("conntrack.txt", strings.Repeat("ESTABLISHED 203.0.113.66\n", 100)))
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, blobPath(l, rec), 1000)
	rc, err := l.Open(t.Context(), rec.ID, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrTampered) {
		t.Fatalf("reading tampered blob: %v", err)
	}
}

func TestSanitizeName(t *testing.T) {
	tests := map[string]string{
		"connections.txt":        "connections.txt",
		"../../etc/passwd":       "____etc_passwd",
		"/etc/shadow":            "_etc_shadow",
		"a/b/c":                  "a_b_c",
		`..\..\windows\system32`: "____windows_system32",
		"x\x00y":                 "x_y",
		"..":                     "artefact_",
		".":                      "_.",
		"":                       "artefact",
		".bashrc":                "_.bashrc",
		"line\nbreak\r.txt":      "line_break_.txt",
		"a b 'c' \"d\".log":      "a_b__c___d_.log",
		"揮発性情報.txt":              "揮発性情報.txt",
		"snap...shot":            "snap_.shot",
		"ok-name_1+2@host=x,y":   "ok-name_1+2@host=x,y",
		"\xff\xfe":               "artefact__",
	}
	for in, want := range tests {
		t.Run(fmt.Sprintf("%q", in), func(t *testing.T) {
			got := SanitizeName(in)
			if got != want {
				t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
			}
			if strings.ContainsAny(got, "/\\\x00\n") || strings.Contains(got, "..") || got == "" {
				t.Errorf("unsafe result %q", got)
			}
		})
	}
	long := SanitizeName(strings.Repeat("長", 100))
	if len(long) > maxNameBytes || !strings.HasPrefix(long, "長") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("long name cut badly: %d bytes %q", len(long), long)
	}
}

func TestHostileNameStaysInsideEvidenceDir(t *testing.T) {
	l, _ := newLedger(t)
	rec, err := l.Add(t.Context(), item("../../../root/.ssh/authorized_keys\x00.txt", "ssh-ed25519 AAAA attacker\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(rec.Name, "/\x00") || strings.Contains(rec.Name, "..") {
		t.Fatalf("stored name %q", rec.Name)
	}
	var buf bytes.Buffer
	if _, err := l.Export(t.Context(), "inc-1", &buf, "cli:alice"); err != nil {
		t.Fatal(err)
	}
	for _, m := range readArchive(t, buf.Bytes()) {
		if strings.Contains(m.name, "..") || strings.HasPrefix(m.name, "/") || strings.ContainsRune(m.name, 0) {
			t.Errorf("archive member %q escapes", m.name)
		}
	}
}

func TestConcurrentIdenticalAddsKeepOneRecord(t *testing.T) {
	l, _ := newLedger(t)
	errs := make(chan error, 8)
	ids := make(chan string, 8)
	for range 8 {
		go func() {
			rec, err := l.Add(t.Context(), item("routes.txt", "default via 10.20.0.254\n"))
			errs <- err
			ids <- rec.ID
		}()
	}
	seen := map[string]bool{}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		seen[<-ids] = true
	}
	if len(seen) != 1 || blobCount(t, l.Dir()) != 1 {
		t.Fatalf("ids %v, %d blobs; want one record and one blob", seen, blobCount(t, l.Dir()))
	}
}

func TestDamagedBlobIsKeptAsideNotOverwritten(t *testing.T) {
	l, _ := newLedger(t)
	first, err := l.Add(t.Context(), item("a.txt", "original content\n"))
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, blobPath(l, first), 0)
	damaged, err := os.ReadFile(blobPath(l, first))
	if err != nil {
		t.Fatal(err)
	}
	it := item("b.txt", "original content\n")
	second, err := l.Add(t.Context(), it)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(blobPath(l, second)); string(got) != "original content\n" {
		t.Fatalf("blob not restored: %q", got)
	}
	aside, _ := filepath.Glob(blobPath(l, first) + ".mismatch-*")
	if len(aside) != 1 {
		t.Fatalf("damaged blob not kept aside: %v", aside)
	}
	if kept, _ := os.ReadFile(aside[0]); !bytes.Equal(kept, damaged) {
		t.Error("the blob kept aside is not the damaged one")
	}
	_, chain, err := l.Show(t.Context(), second.ID, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(chain[1].Detail, "kept aside") {
		t.Errorf("custody does not record the damaged blob: %+v", chain[1])
	}
}

// TestCustodyOfListsWithoutRecording: an incident's chains of custody are
// read without adding an access to them, and only that incident's.
func TestCustodyOfListsWithoutRecording(t *testing.T) {
	l, _ := newLedger(t)
	ctx := t.Context()
	a, err := l.Add(ctx, item("connections.txt", "tcp 10.0.0.1:22"))
	if err != nil {
		t.Fatal(err)
	}
	other := item("routes.txt", "default via 10.0.0.254")
	other.Incident = "inc-2"
	b, err := l.Add(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Show(ctx, a.ID, "user:resp1"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		chains, err := l.CustodyOf(ctx, "inc-1")
		if err != nil {
			t.Fatal(err)
		}
		got := chains[a.ID]
		if len(chains) != 1 || len(got) != 3 || got[0].Action != CustodyCollected || got[1].Action != CustodyStored ||
			got[2].Action != CustodyAccessed || got[2].Actor != "user:resp1" {
			t.Fatalf("custody of inc-1: %+v; want %s collected, stored, then accessed by resp1, nothing of %s", chains, a.ID, b.ID)
		}
	}
}

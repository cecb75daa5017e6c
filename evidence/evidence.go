package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/clock"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/warden-ir/warden/audit"
	"github.com/warden-ir/warden/internal/sqlrows"
)

// Kinds of evidence.
const (
	KindVolatile = "volatile" // connections, processes, routes, SAs… captured by the agent
	KindSnapshot = "snapshot" // a reference to a hypervisor snapshot (no content)
	KindConfig   = "config"   // configuration before/after a change
	KindLog      = "log"      // logs, the original alert
)

// Custody actions.
const (
	CustodyCollected = "collected"
	CustodyStored    = "stored"
	CustodyAccessed  = "accessed"
	CustodyExported  = "exported"
	CustodyVerified  = "verified"
)

// MediaTypeReference is the media type of a canonical JSON reference (a
// snapshot is evidence held by the hypervisor; the ledger keeps what
// identifies it).
const MediaTypeReference = "application/vnd.warden.reference+json"

// ErrNotFound is returned for an unknown evidence id.
var ErrNotFound = errors.New("evidence not found")

// ErrUnknownIncident is returned when evidence of an incident is asked for
// and nobody knows that incident: the ledger holds nothing filed under it
// and the Incidents given to the ledger (WithIncidents) do not know it
// either. A typo must never look like an incident without evidence.
var ErrUnknownIncident = errors.New("unknown incident")

// ErrInvalid marks an Item that cannot be recorded as given.
var ErrInvalid = errors.New("invalid evidence item")

// ErrTampered is wrapped when a blob's content no longer matches the
// SHA-256 it was stored under, or the blob is missing.
var ErrTampered = errors.New("evidence does not match its recorded SHA-256")

// Schema creates the evidence and custody tables. It is safe to run on
// every start.
const Schema = `
CREATE TABLE IF NOT EXISTS evidence (
	id             TEXT PRIMARY KEY,
	incident       TEXT NOT NULL,
	gateway        TEXT NOT NULL DEFAULT '',
	name           TEXT NOT NULL,
	media_type     TEXT NOT NULL,
	sha256         TEXT NOT NULL,
	size           INTEGER NOT NULL,
	source         TEXT NOT NULL DEFAULT '',
	collected_at   TEXT NOT NULL,
	collected_by   TEXT NOT NULL,
	collected_from TEXT NOT NULL DEFAULT '',
	stored_at      TEXT NOT NULL,
	kind           TEXT NOT NULL,
	note           TEXT NOT NULL DEFAULT '',
	UNIQUE (incident, name)
);
CREATE INDEX IF NOT EXISTS evidence_incident ON evidence(incident, collected_at);
CREATE INDEX IF NOT EXISTS evidence_sha256 ON evidence(sha256);
CREATE TABLE IF NOT EXISTS custody (
	id          INTEGER PRIMARY KEY,
	evidence_id TEXT NOT NULL REFERENCES evidence(id),
	at          TEXT NOT NULL,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS custody_evidence ON custody(evidence_id, id);
`

// Item is one artefact handed to Add.
type Item struct {
	Incident  string
	Gateway   string
	Name      string // sanitised before use; see SanitizeName
	MediaType string // default application/octet-stream
	Kind      string // volatile, snapshot, config, log
	Source    string // what produced it ("capture_volatile", "vsphere", "alertmanager")
	// CollectedAt defaults to now; CollectedBy ("agent:gw-osaka",
	// "controller", "cli:alice") is required; CollectedFrom says where
	// (host, VM, path).
	CollectedAt   time.Time
	CollectedBy   string
	CollectedFrom string
	// StoredBy is recorded on the "stored" custody event; default
	// "controller".
	StoredBy string
	Note     string
	// Content is the artefact. For evidence that cannot be copied (a VM
	// snapshot with memory lives in the datastore) leave it empty and set
	// Reference: its canonical JSON (sorted keys, compact) becomes the
	// stored blob and its SHA-256 the evidence hash.
	Content   []byte
	Reference any
}

// Record is stored evidence.
type Record struct {
	ID            string    `json:"id"`
	Incident      string    `json:"incident"`
	Gateway       string    `json:"gateway,omitempty"`
	Name          string    `json:"name"`
	MediaType     string    `json:"media_type"`
	Kind          string    `json:"kind"`
	SHA256        string    `json:"sha256"`
	Size          int64     `json:"size"`
	Source        string    `json:"source,omitempty"`
	CollectedAt   time.Time `json:"collected_at"`
	CollectedBy   string    `json:"collected_by"`
	CollectedFrom string    `json:"collected_from,omitempty"`
	StoredAt      time.Time `json:"stored_at"`
	Note          string    `json:"note,omitempty"`
}

// Custody is one chain-of-custody event.
type Custody struct {
	ID         int64     `json:"id"`
	EvidenceID string    `json:"evidence_id"`
	At         time.Time `json:"at"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	Detail     string    `json:"detail,omitempty"`
}

// Ledger is the evidence store: blobs on disk, metadata and custody in the
// database.
type Ledger struct {
	db        *sql.DB
	blobs     BlobStore
	clk       clock.Clock
	newID     func() string
	incidents Incidents
}

// Incidents tells the ledger whether an incident exists. The store owns
// incidents; the ledger only files evidence under their ids (or under a
// run's id for work outside any incident), so it asks rather than reads
// another package's tables.
type Incidents interface {
	IncidentExists(ctx context.Context, id string) (bool, error)
}

// Option adjusts a Ledger.
type Option func(*Ledger)

// WithClock makes the ledger read time from now (tests use a fixed clock).
func WithClock(c clock.Clock) Option { return func(l *Ledger) { l.clk = c } }

// WithIDs makes the ledger name records with newID (tests use fixed ids).
func WithIDs(newID func() string) Option { return func(l *Ledger) { l.newID = newID } }

// WithIncidents lets the ledger tell an incident without evidence from an
// id nobody knows: List refuses the latter (ErrUnknownIncident) instead of
// listing nothing. Without it, List cannot tell them apart and lists
// nothing for both, and Export knows only incidents it holds evidence of.
func WithIncidents(in Incidents) Option { return func(l *Ledger) { l.incidents = in } }

// Open prepares the ledger: it creates dir (0700) and the tables (Schema,
// and audit.Schema which it appends to). db is the store's handle
// (store.DB()).
func Open(ctx context.Context, db *sql.DB, dir string, opts ...Option) (*Ledger, error) {
	if db == nil {
		return nil, errors.New("opening evidence ledger: a database is required")
	}
	var bs BlobStore
	if dir != "" {
		fb, err := OpenFileBlobs(dir)
		if err != nil {
			return nil, fmt.Errorf("opening evidence ledger: %w", err)
		}
		bs = fb
	}
	if _, err := db.ExecContext(ctx, Schema+audit.Schema); err != nil {
		return nil, fmt.Errorf("creating evidence tables: %w", err)
	}
	l := &Ledger{db: db, blobs: bs, clk: clock.Real, newID: newEvidenceID}
	for _, o := range opts {
		o(l)
	}
	if l.blobs == nil {
		return nil, errors.New("opening evidence ledger: an evidence directory (or another blob store) is required")
	}
	return l, nil
}

// Dir is where the blobs are kept (the folder of FileBlobs).
func (l *Ledger) Dir() string { return l.blobs.Where() }

// WithBlobs keeps the blobs in bs rather than the folder Open is given
// (which may then be empty).
func WithBlobs(bs BlobStore) Option { return func(l *Ledger) { l.blobs = bs } }

func newEvidenceID() string {
	u, err := uuid.NewV7()
	if err != nil {
		u = uuid.New()
	}
	return "evd-" + strings.ReplaceAll(u.String(), "-", "")[:20]
}

func (l *Ledger) clock() time.Time { return l.clk.Now().UTC().Truncate(time.Microsecond) }

// tsLayout is fixed-width so that stored times sort as text (RFC 3339 with
// trimmed fractions does not: "07Z" sorts after "07.038Z").
const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

func ts(t time.Time) string { return t.UTC().Format(tsLayout) }

func parseTS(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

var kinds = map[string]bool{KindVolatile: true, KindSnapshot: true, KindConfig: true, KindLog: true}

// content returns the bytes to store for it and the media type.
func (it Item) content() ([]byte, string, error) {
	if it.Reference == nil {
		mt := it.MediaType
		if mt == "" {
			mt = "application/octet-stream"
		}
		return it.Content, mt, nil
	}
	if len(it.Content) > 0 {
		return nil, "", fmt.Errorf("%w: %s: give either content or a reference, not both", ErrInvalid, it.Name)
	}
	b, err := CanonicalJSON(it.Reference)
	if err != nil {
		return nil, "", fmt.Errorf("%w: encoding reference of %s: %v", ErrInvalid, it.Name, err)
	}
	mt := it.MediaType
	if mt == "" {
		mt = MediaTypeReference
	}
	return b, mt, nil
}

// CanonicalJSON encodes v compactly with object keys sorted at every level
// and numbers kept as written, so equal references hash equally.
func CanonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(generic); err != nil { // maps marshal with sorted keys
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Add stores an artefact and records its collection. The blob is written
// (or found already present) before the metadata commits, so a record never
// points at a missing blob; a crash in between leaves only an unreferenced
// blob. Adding the same content under the same name for the same incident
// again returns the existing record and records nothing new (idempotent);
// different content under a name already used for the incident is kept
// under a free variant of the name ("x-2.txt").
func (l *Ledger) Add(ctx context.Context, it Item) (Record, error) {
	if strings.TrimSpace(it.Incident) == "" {
		return Record{}, fmt.Errorf("%w: incident is required", ErrInvalid)
	}
	if strings.TrimSpace(it.CollectedBy) == "" {
		return Record{}, fmt.Errorf("%w: collected_by is required (chain of custody starts with who collected it)", ErrInvalid)
	}
	if !kinds[it.Kind] {
		return Record{}, fmt.Errorf("%w: kind %q is not one of volatile, snapshot, config, log", ErrInvalid, it.Kind)
	}
	data, mediaType, err := it.content()
	if err != nil {
		return Record{}, err
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	kept, err := l.blobs.Put(ctx, hexSum, data)
	if err != nil {
		return Record{}, fmt.Errorf("storing blob for %s: %w", SanitizeName(it.Name), err)
	}
	now := l.clock()
	rec := Record{
		Incident: it.Incident, Gateway: it.Gateway, Name: SanitizeName(it.Name), MediaType: mediaType, Kind: it.Kind,
		SHA256: hexSum, Size: int64(len(data)), Source: it.Source, CollectedAt: it.CollectedAt.UTC().Truncate(time.Microsecond),
		CollectedBy: it.CollectedBy, CollectedFrom: it.CollectedFrom, StoredAt: now, Note: it.Note,
	}
	if rec.CollectedAt.IsZero() {
		rec.CollectedAt = now
	}
	storedBy := it.StoredBy
	if storedBy == "" {
		storedBy = "controller"
	}
	err = l.tx(ctx, func(tx *sql.Tx) error {
		name, existing, found, err := freeName(ctx, tx, rec.Incident, rec.Name, rec.SHA256)
		if err != nil {
			return err
		}
		if found {
			rec = existing
			return nil
		}
		requested := rec.Name
		rec.Name = name
		rec.ID = l.newID()
		if _, err := tx.ExecContext(ctx, `INSERT INTO evidence(id, incident, gateway, name, media_type, sha256, size, source, collected_at, collected_by, collected_from, stored_at, kind, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			rec.ID, rec.Incident, rec.Gateway, rec.Name, rec.MediaType, rec.SHA256, rec.Size, rec.Source, ts(rec.CollectedAt), rec.CollectedBy, rec.CollectedFrom, ts(rec.StoredAt), rec.Kind, rec.Note); err != nil {
			return fmt.Errorf("recording evidence %s: %w", rec.Name, err)
		}
		collected := "collected"
		if rec.CollectedFrom != "" {
			collected += " from " + rec.CollectedFrom
		}
		if rec.Source != "" {
			collected += " by " + rec.Source
		}
		if name != requested {
			collected += fmt.Sprintf("; name %q was taken for this incident, stored as %q", requested, name)
		}
		if err := l.custody(ctx, tx, rec, Custody{At: rec.CollectedAt, Actor: rec.CollectedBy, Action: CustodyCollected, Detail: collected}, nil); err != nil {
			return err
		}
		stored := fmt.Sprintf("stored at sha256/%s/%s", rec.SHA256[:2], rec.SHA256)
		if kept != "" {
			stored += "; the blob found at that address did not match its hash and was kept aside as " + kept
		}
		return l.custody(ctx, tx, rec, Custody{At: now, Actor: storedBy, Action: CustodyStored, Detail: stored}, nil)
	})
	if err != nil {
		return Record{}, err
	}
	return rec, nil
}

// freeName finds the name to record under: the requested one, or a
// numbered variant when the incident already holds different content
// under it. found is true when the same content is already recorded under
// the name (or a variant of it).
func freeName(ctx context.Context, tx *sql.Tx, incident, name, sum string) (string, Record, bool, error) {
	for n := 1; ; n++ {
		candidate := numberedName(name, n)
		rec, err := scanRecord(tx.QueryRowContext(ctx, `SELECT `+recordCols+` FROM evidence WHERE incident = ? AND name = ?`, incident, candidate))
		if errors.Is(err, sql.ErrNoRows) {
			return candidate, Record{}, false, nil
		}
		if err != nil {
			return "", Record{}, false, fmt.Errorf("looking up evidence name %s: %w", candidate, err)
		}
		if rec.SHA256 == sum {
			return candidate, rec, true, nil
		}
	}
}

func numberedName(name string, n int) string {
	if n == 1 {
		return name
	}
	stem, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		stem, ext = name[:i], name[i:]
	}
	return fmt.Sprintf("%s-%d%s", stem, n, ext)
}

func (l *Ledger) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning evidence transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing evidence transaction: %w", err)
	}
	return nil
}

// custody records one event and its audit entry in tx. extra adds fields to
// the audit data; content never goes there.
func (l *Ledger) custody(ctx context.Context, tx *sql.Tx, rec Record, c Custody, extra map[string]any) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO custody(evidence_id, at, actor, action, detail) VALUES (?,?,?,?,?)`,
		rec.ID, ts(c.At), c.Actor, c.Action, c.Detail); err != nil {
		return fmt.Errorf("recording custody (%s) of %s: %w", c.Action, rec.Name, err)
	}
	data := map[string]any{"evidence": rec.ID, "name": rec.Name, "sha256": rec.SHA256, "size": rec.Size, "actor": c.Actor,
		"kind": rec.Kind, "detail": c.Detail}
	if c.Action == CustodyCollected {
		data["collected_at"] = rec.CollectedAt
	}
	for k, v := range extra {
		data[k] = v
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encoding custody audit data: %w", err)
	}
	if _, err := audit.Append(ctx, tx, audit.Entry{At: l.clock(), Actor: c.Actor, Action: "evidence." + c.Action,
		Incident: rec.Incident, Subject: rec.Gateway, Data: b}); err != nil {
		return fmt.Errorf("auditing custody (%s) of %s: %w", c.Action, rec.Name, err)
	}
	return nil
}

const recordCols = `id, incident, gateway, name, media_type, sha256, size, source, collected_at, collected_by, collected_from, stored_at, kind, note`

func scanRecord(sc interface{ Scan(...any) error }) (Record, error) {
	var r Record
	var collected, stored string
	err := sc.Scan(&r.ID, &r.Incident, &r.Gateway, &r.Name, &r.MediaType, &r.SHA256, &r.Size, &r.Source, &collected, &r.CollectedBy, &r.CollectedFrom, &stored, &r.Kind, &r.Note)
	r.CollectedAt, r.StoredAt = parseTS(collected), parseTS(stored)
	return r, err
}

// List returns an incident's evidence (every incident's when incident is
// empty), oldest collection first. Listing metadata is not an access to
// the content and records no custody event. When the ledger was given
// Incidents (WithIncidents), an incident with no evidence that they do not
// know either is an error wrapping ErrUnknownIncident; without them it
// lists nothing, as for a known incident with no evidence yet.
func (l *Ledger) List(ctx context.Context, incident string) ([]Record, error) {
	recs, err := l.list(ctx, incident)
	if err != nil || incident == "" || len(recs) > 0 || l.incidents == nil {
		return recs, err
	}
	if err := l.KnownIncident(ctx, incident); err != nil {
		return nil, err
	}
	return recs, nil
}

// KnownIncident returns nil when the ledger holds evidence filed under
// incident or its Incidents (WithIncidents) know it, and an error wrapping
// ErrUnknownIncident otherwise. It records nothing.
func (l *Ledger) KnownIncident(ctx context.Context, incident string) error {
	if strings.TrimSpace(incident) == "" {
		return fmt.Errorf("%w: an incident id is required", ErrInvalid)
	}
	var n int
	if err := l.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM evidence WHERE incident = ?`, incident).Scan(&n); err != nil {
		return fmt.Errorf("looking up evidence of %s: %w", incident, err)
	}
	if n > 0 {
		return nil
	}
	if l.incidents == nil {
		return fmt.Errorf("incident %q: %w: no evidence is filed under it", incident, ErrUnknownIncident)
	}
	ok, err := l.incidents.IncidentExists(ctx, incident)
	if err != nil {
		return fmt.Errorf("looking up incident %s: %w", incident, err)
	}
	if !ok {
		return fmt.Errorf("incident %q: %w: no such incident, and no evidence is filed under it", incident, ErrUnknownIncident)
	}
	return nil
}

func (l *Ledger) list(ctx context.Context, incident string) ([]Record, error) {
	q := `SELECT ` + recordCols + ` FROM evidence`
	var args []any
	if incident != "" {
		q += ` WHERE incident = ?`
		args = append(args, incident)
	}
	q += ` ORDER BY collected_at, stored_at, id`
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing evidence: %w", err)
	}
	return sqlrows.Collect(rows, func(rows *sql.Rows) (Record, error) {
		r, err := scanRecord(rows)
		if err != nil {
			return r, fmt.Errorf("reading evidence record: %w", err)
		}
		return r, nil
	})
}

func (l *Ledger) record(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (Record, error) {
	r, err := scanRecord(q.QueryRowContext(ctx, `SELECT `+recordCols+` FROM evidence WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, fmt.Errorf("evidence %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, fmt.Errorf("reading evidence %s: %w", id, err)
	}
	return r, nil
}

func custodyOf(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, where string, args ...any) ([]Custody, error) {
	rows, err := q.QueryContext(ctx, `SELECT custody.id, custody.evidence_id, custody.at, custody.actor, custody.action, custody.detail FROM custody `+where+` ORDER BY custody.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing custody: %w", err)
	}
	return sqlrows.Collect(rows, func(rows *sql.Rows) (Custody, error) {
		var c Custody
		var at string
		if err := rows.Scan(&c.ID, &c.EvidenceID, &at, &c.Actor, &c.Action, &c.Detail); err != nil {
			return c, fmt.Errorf("reading custody: %w", err)
		}
		c.At = parseTS(at)
		return c, nil
	})
}

// CustodyOf returns the chain of custody of every artefact filed under
// incident, by evidence id, oldest event first. It only reads: listing who
// handled the evidence is not handling it, so unlike Show it records no
// access (the console shows it on every view of an incident).
func (l *Ledger) CustodyOf(ctx context.Context, incident string) (map[string][]Custody, error) {
	events, err := custodyOf(ctx, l.db, `JOIN evidence ON evidence.id = custody.evidence_id WHERE evidence.incident = ?`, incident)
	if err != nil {
		return nil, err
	}
	out := map[string][]Custody{}
	for _, c := range events {
		out[c.EvidenceID] = append(out[c.EvidenceID], c)
	}
	return out, nil
}

// Show returns a record and its chain of custody, and records that actor
// looked at it (an "accessed" event, included in the returned chain).
func (l *Ledger) Show(ctx context.Context, id, actor string) (Record, []Custody, error) {
	if strings.TrimSpace(actor) == "" {
		return Record{}, nil, fmt.Errorf("%w: showing evidence needs an actor for the chain of custody", ErrInvalid)
	}
	var rec Record
	var chain []Custody
	err := l.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if rec, err = l.record(ctx, tx, id); err != nil {
			return err
		}
		if err := l.custody(ctx, tx, rec, Custody{At: l.clock(), Actor: actor, Action: CustodyAccessed, Detail: "record and chain of custody shown"}, nil); err != nil {
			return err
		}
		chain, err = custodyOf(ctx, tx, `WHERE evidence_id = ?`, id)
		return err
	})
	return rec, chain, err
}

// Open returns the artefact's content and records that actor opened it. The
// reader re-hashes what it reads: at the end it returns an error wrapping
// ErrTampered instead of io.EOF if the content is not what was stored.
func (l *Ledger) Open(ctx context.Context, id, actor string) (io.ReadCloser, error) {
	if strings.TrimSpace(actor) == "" {
		return nil, fmt.Errorf("%w: opening evidence needs an actor for the chain of custody", ErrInvalid)
	}
	var rec Record
	var rc io.ReadCloser
	err := l.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if rec, err = l.record(ctx, tx, id); err != nil {
			return err
		}
		if rc, err = l.blobs.Open(ctx, rec.SHA256); err != nil {
			return fmt.Errorf("opening evidence %s (%s): %w", rec.ID, rec.Name, err)
		}
		return l.custody(ctx, tx, rec, Custody{At: l.clock(), Actor: actor, Action: CustodyAccessed, Detail: "content opened"}, nil)
	})
	if err != nil {
		if rc != nil {
			rc.Close()
		}
		return nil, err
	}
	return &verifyingReader{rc: rc, h: sha256.New(), want: rec.SHA256, what: rec.ID + " (" + rec.Name + ")"}, nil
}

type verifyingReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	want string
	what string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, fmt.Errorf("reading evidence %s: %w: expected %s, read %s", v.what, ErrTampered, v.want, got)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.rc.Close() }

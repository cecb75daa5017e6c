package rotation

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/internal/sqlrows"
	"github.com/warden-ir/warden/inventory"
)

// Credential kinds.
const (
	// KindWireGuardPSK is a per-pair WireGuard preshared key (32 bytes).
	KindWireGuardPSK = "wireguard-psk"
	// KindWireGuardKey is a site's WireGuard private key; its public key
	// is kept in clear.
	KindWireGuardKey = "wireguard-key"
	// KindStrongSwanPSK is a per-pair IKE pre-shared key (32 bytes).
	KindStrongSwanPSK = "strongswan-psk"
	// KindStrongSwanCert is a site's IKE certificate, known by its serial
	// number (hex, in PublicKey); Warden never holds its private key.
	KindStrongSwanCert = "strongswan-cert"
)

// State is where a credential is in its life.
type State string

// Credential states.
const (
	StatePending State = "pending" // generated, being installed
	StateActive  State = "active"  // in use
	StateRetired State = "retired" // replaced by a newer credential
	StateRevoked State = "revoked" // held by a compromised gateway: never to be used again
	StateFailed  State = "failed"  // never came into use (its rotation failed)
)

// Errors of the vault, for errors.Is.
var (
	ErrNoCredential = errors.New("no such tunnel credential")
	ErrNoSecret     = errors.New("Warden holds no secret for this credential")
	ErrWrongKey     = errors.New("credential sealed under another master key")
)

// Schema creates the credential table. It is safe to run on every start.
// sealed is the AES-256-GCM ciphertext of the secret (with its tag), nonce
// its nonce, key_id the master key's ID; the additional data binds each
// ciphertext to its row's id, kind and subject.
const Schema = `
CREATE TABLE IF NOT EXISTS tunnel_credentials (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	subject    TEXT NOT NULL,
	public_key TEXT NOT NULL DEFAULT '',
	state      TEXT NOT NULL,
	origin     TEXT NOT NULL,
	batch      TEXT NOT NULL DEFAULT '',
	key_id     TEXT NOT NULL DEFAULT '',
	nonce      BLOB,
	sealed     BLOB,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tunnel_credentials_subject ON tunnel_credentials(kind, subject, state);
`

// Credential describes one credential. It never holds the secret.
type Credential struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Pair is set for preshared keys, Site for site keys.
	Pair Pair   `json:"pair,omitzero"`
	Site string `json:"site,omitempty"`
	// PublicKey is a WireGuard site key's public key (base64), or a
	// certificate's serial number (hex).
	PublicKey string `json:"public_key,omitempty"`
	State     State  `json:"state"`
	// Origin is "generated" (by Warden) or "imported" (found in place).
	Origin string `json:"origin"`
	// Batch names the rotation that generated the credential (a step's
	// idempotency key); empty for imported ones.
	Batch string `json:"batch,omitempty"`
	// HasSecret says whether Warden holds the secret (sealed).
	HasSecret bool      `json:"has_secret"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Vault keeps the credential inventory and the sealed secrets in the
// store's database.
type Vault struct {
	db    *sql.DB
	aead  cipher.AEAD
	keyID string
	clock clock.Clock
}

// OpenVault creates the table if needed and returns a vault sealing with
// key. c may be nil (clock.Real).
func OpenVault(ctx context.Context, db *sql.DB, key MasterKey, c clock.Clock) (*Vault, error) {
	if len(key.k) != masterKeyLen {
		return nil, errors.New("opening the credential vault: no master key")
	}
	block, err := aes.NewCipher(key.k)
	if err != nil {
		return nil, fmt.Errorf("opening the credential vault: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("opening the credential vault: %w", err)
	}
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		return nil, fmt.Errorf("creating the credential table: %w", err)
	}
	// Tables created before rotations were tagged lack the batch column.
	if _, err := db.ExecContext(ctx, `SELECT batch FROM tunnel_credentials LIMIT 0`); err != nil {
		if _, err := db.ExecContext(ctx, `ALTER TABLE tunnel_credentials ADD COLUMN batch TEXT NOT NULL DEFAULT ''`); err != nil {
			return nil, fmt.Errorf("adding the batch column to the credential table: %w", err)
		}
	}
	if c == nil {
		c = clock.Real
	}
	return &Vault{db: db, aead: aead, keyID: key.ID(), clock: c}, nil
}

func newCredentialID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a credential id: %w", err)
	}
	return "cred-" + hex.EncodeToString(b), nil
}

// subjectOf is the table's subject of a credential.
func subjectOf(c Credential) (string, error) {
	switch c.Kind {
	case KindWireGuardPSK, KindStrongSwanPSK:
		if c.Pair.A == "" || c.Pair.B == "" {
			return "", fmt.Errorf("a %s credential needs a pair", c.Kind)
		}
		return c.Pair.subject(), nil
	case KindWireGuardKey, KindStrongSwanCert:
		if c.Site == "" {
			return "", fmt.Errorf("a %s credential needs a site", c.Kind)
		}
		return "site:" + c.Site, nil
	}
	return "", fmt.Errorf("unknown credential kind %q", c.Kind)
}

func aad(id, kind, subject string) []byte { return []byte(id + "\x00" + kind + "\x00" + subject) }

// Generate creates a credential of kind for a pair (preshared keys) or a
// site (WireGuard site keys) with a fresh secret from crypto/rand, stores
// it sealed, in state pending, and returns it with its secret.
func (v *Vault) Generate(ctx context.Context, kind string, pair Pair, site string) (Credential, Secret, error) {
	return v.generate(ctx, "", kind, pair, site)
}

// generate is Generate, tagging the credential with batch.
func (v *Vault) generate(ctx context.Context, batch, kind string, pair Pair, site string) (Credential, Secret, error) {
	c := Credential{Kind: kind, Pair: pair, Site: site, State: StatePending, Origin: "generated", Batch: batch}
	var s Secret
	switch kind {
	case KindWireGuardPSK, KindStrongSwanPSK:
		var err error
		if s, err = NewSecret(32); err != nil {
			return Credential{}, Secret{}, err
		}
		c.Site = ""
	case KindWireGuardKey:
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return Credential{}, Secret{}, fmt.Errorf("generating a WireGuard key: %w", err)
		}
		s = SecretFrom(k[:])
		c.PublicKey = k.PublicKey().String()
		clear(k[:])
		c.Pair = Pair{}
	default:
		return Credential{}, Secret{}, fmt.Errorf("generating a credential: unknown kind %q", kind)
	}
	out, err := v.insert(ctx, c, s)
	if err != nil {
		s.Destroy()
		return Credential{}, Secret{}, err
	}
	return out, s, nil
}

// Import records a credential found in place (the tunnels' configuration
// before Warden rotated anything) as active, with its secret if known
// (a zero Secret records the credential without one). An earlier active
// credential of the same kind and subject is retired.
func (v *Vault) Import(ctx context.Context, c Credential, s Secret) (Credential, error) {
	c.State, c.Origin = StateActive, "imported"
	out, err := v.insert(ctx, c, s)
	if err != nil {
		return Credential{}, err
	}
	if err := v.Activate(ctx, out.ID); err != nil {
		return Credential{}, err
	}
	return v.Get(ctx, out.ID)
}

func (v *Vault) insert(ctx context.Context, c Credential, s Secret) (Credential, error) {
	subject, err := subjectOf(c)
	if err != nil {
		return Credential{}, fmt.Errorf("storing a credential: %w", err)
	}
	if c.ID, err = newCredentialID(); err != nil {
		return Credential{}, err
	}
	var nonce, sealed []byte
	keyID := ""
	if !s.IsZero() {
		nonce = make([]byte, v.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return Credential{}, fmt.Errorf("generating a nonce: %w", err)
		}
		sealed = v.aead.Seal(nil, nonce, s.b, aad(c.ID, c.Kind, subject))
		keyID = v.keyID
	}
	now := v.clock.Now().UTC()
	c.CreatedAt, c.UpdatedAt, c.HasSecret = now, now, !s.IsZero()
	_, err = v.db.ExecContext(ctx, `INSERT INTO tunnel_credentials
		(id, kind, subject, public_key, state, origin, batch, key_id, nonce, sealed, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Kind, subject, c.PublicKey, string(c.State), c.Origin, c.Batch, keyID, nonce, sealed,
		now.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	if err != nil {
		return Credential{}, fmt.Errorf("storing credential %s: %w", c.ID, err)
	}
	return c, nil
}

const credentialColumns = `id, kind, subject, public_key, state, origin, batch, sealed IS NOT NULL, created_at, updated_at`

func scanCredential(row interface{ Scan(...any) error }) (Credential, error) {
	var c Credential
	var subject, state, created, updated string
	if err := row.Scan(&c.ID, &c.Kind, &subject, &c.PublicKey, &state, &c.Origin, &c.Batch, &c.HasSecret, &created, &updated); err != nil {
		return Credential{}, err
	}
	c.State = State(state)
	c.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
	c.UpdatedAt, _ = time.Parse(time.RFC3339Nano, updated)
	if site, ok := strings.CutPrefix(subject, "site:"); ok {
		c.Site = site
	} else if kind, ends, ok := strings.Cut(subject, ":"); ok {
		a, b, _ := strings.Cut(ends, "|")
		c.Pair = Pair{A: a, B: b, Kind: kind}
	}
	return c, nil
}

// Get returns a credential by id.
func (v *Vault) Get(ctx context.Context, id string) (Credential, error) {
	c, err := scanCredential(v.db.QueryRowContext(ctx, `SELECT `+credentialColumns+` FROM tunnel_credentials WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Credential{}, fmt.Errorf("%w: %s", ErrNoCredential, id)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("reading credential %s: %w", id, err)
	}
	return c, nil
}

// Current returns the active credential of kind for a pair or a site, or
// an error wrapping ErrNoCredential.
func (v *Vault) Current(ctx context.Context, kind string, pair Pair, site string) (Credential, error) {
	subject, err := subjectOf(Credential{Kind: kind, Pair: pair, Site: site})
	if err != nil {
		return Credential{}, err
	}
	c, err := scanCredential(v.db.QueryRowContext(ctx, `SELECT `+credentialColumns+` FROM tunnel_credentials
		WHERE kind = ? AND subject = ? AND state = ? ORDER BY created_at DESC LIMIT 1`, kind, subject, string(StateActive)))
	if errors.Is(err, sql.ErrNoRows) {
		return Credential{}, fmt.Errorf("%w: no active %s for %s", ErrNoCredential, kind, subject)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("reading the active %s for %s: %w", kind, subject, err)
	}
	return c, nil
}

// Latest returns the newest credential of kind for a pair or a site that
// is in one of states, or an error wrapping ErrNoCredential.
func (v *Vault) Latest(ctx context.Context, kind string, pair Pair, site string, states ...State) (Credential, error) {
	subject, err := subjectOf(Credential{Kind: kind, Pair: pair, Site: site})
	if err != nil {
		return Credential{}, err
	}
	list, err := v.List(ctx)
	if err != nil {
		return Credential{}, err
	}
	for i := len(list) - 1; i >= 0; i-- {
		c := list[i]
		if s, _ := subjectOf(c); c.Kind == kind && s == subject && slices.Contains(states, c.State) {
			return c, nil
		}
	}
	return Credential{}, fmt.Errorf("%w: no %s for %s in state %v", ErrNoCredential, kind, subject, states)
}

// Secret unseals a credential's secret. It fails with ErrNoSecret when
// Warden never held it and ErrWrongKey when it was sealed under another
// master key.
func (v *Vault) Secret(ctx context.Context, id string) (Secret, error) {
	var kind, subject, keyID string
	var nonce, sealed []byte
	err := v.db.QueryRowContext(ctx, `SELECT kind, subject, key_id, nonce, sealed FROM tunnel_credentials WHERE id = ?`, id).
		Scan(&kind, &subject, &keyID, &nonce, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return Secret{}, fmt.Errorf("%w: %s", ErrNoCredential, id)
	}
	if err != nil {
		return Secret{}, fmt.Errorf("reading credential %s: %w", id, err)
	}
	if sealed == nil {
		return Secret{}, fmt.Errorf("%w: %s", ErrNoSecret, id)
	}
	if keyID != v.keyID {
		return Secret{}, fmt.Errorf("%w: %s was sealed under master key %s, this vault has %s", ErrWrongKey, id, keyID, v.keyID)
	}
	plain, err := v.aead.Open(nil, nonce, sealed, aad(id, kind, subject))
	if err != nil {
		return Secret{}, fmt.Errorf("unsealing credential %s: the ciphertext or its row was altered", id)
	}
	return Secret{b: plain}, nil
}

// SetState moves a credential to state.
func (v *Vault) SetState(ctx context.Context, id string, s State) error {
	res, err := v.db.ExecContext(ctx, `UPDATE tunnel_credentials SET state = ?, updated_at = ? WHERE id = ?`,
		string(s), v.clock.Now().UTC().Format(time.RFC3339Nano), id)
	if err != nil {
		return fmt.Errorf("setting credential %s to %s: %w", id, s, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNoCredential, id)
	}
	return nil
}

// Activate makes id the active credential of its kind and subject and
// retires the one it replaces, in one transaction.
func (v *Vault) Activate(ctx context.Context, id string) error {
	tx, err := v.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("activating credential %s: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	var kind, subject string
	if err := tx.QueryRowContext(ctx, `SELECT kind, subject FROM tunnel_credentials WHERE id = ?`, id).Scan(&kind, &subject); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrNoCredential, id)
		}
		return fmt.Errorf("activating credential %s: %w", id, err)
	}
	now := v.clock.Now().UTC().Format(time.RFC3339Nano)
	if _, err := tx.ExecContext(ctx, `UPDATE tunnel_credentials SET state = ?, updated_at = ?
		WHERE kind = ? AND subject = ? AND state = ? AND id <> ?`,
		string(StateRetired), now, kind, subject, string(StateActive), id); err != nil {
		return fmt.Errorf("retiring the credential %s replaces: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tunnel_credentials SET state = ?, updated_at = ? WHERE id = ?`,
		string(StateActive), now, id); err != nil {
		return fmt.Errorf("activating credential %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("activating credential %s: %w", id, err)
	}
	return nil
}

// List returns every credential (never a secret), oldest first.
func (v *Vault) List(ctx context.Context) ([]Credential, error) {
	rows, err := v.db.QueryContext(ctx, `SELECT `+credentialColumns+` FROM tunnel_credentials ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	return sqlrows.Collect(rows, func(rows *sql.Rows) (Credential, error) {
		c, err := scanCredential(rows)
		if err != nil {
			return c, fmt.Errorf("listing credentials: %w", err)
		}
		return c, nil
	})
}

// TunnelCredentials is one tunnel's entry in the credential inventory.
type TunnelCredentials struct {
	Pair Pair `json:"pair"`
	// KeyA and KeyB are each end's active WireGuard site key (public part
	// only); nil when unknown or for strongSwan.
	KeyA *Credential `json:"key_a,omitempty"`
	KeyB *Credential `json:"key_b,omitempty"`
	// PSK is the pair's active preshared key; nil when none is known
	// (optional for WireGuard).
	PSK *Credential `json:"psk,omitempty"`
}

// Inventory returns, per tunnel, its kind and active credentials. It never
// returns a secret.
func (v *Vault) Inventory(ctx context.Context, tunnels []inventory.Tunnel) ([]TunnelCredentials, error) {
	var out []TunnelCredentials
	seen := map[Pair]bool{}
	current := func(kind string, pair Pair, site string) (*Credential, error) {
		c, err := v.Current(ctx, kind, pair, site)
		if errors.Is(err, ErrNoCredential) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return &c, nil
	}
	for _, t := range tunnels {
		p := PairOf(t)
		if seen[p] {
			continue
		}
		seen[p] = true
		tc := TunnelCredentials{Pair: p}
		var err error
		switch p.Kind {
		case inventory.KindWireGuard:
			if tc.KeyA, err = current(KindWireGuardKey, Pair{}, p.A); err != nil {
				return nil, err
			}
			if tc.KeyB, err = current(KindWireGuardKey, Pair{}, p.B); err != nil {
				return nil, err
			}
			if tc.PSK, err = current(KindWireGuardPSK, p, ""); err != nil {
				return nil, err
			}
		case inventory.KindStrongSwan:
			if tc.PSK, err = current(KindStrongSwanPSK, p, ""); err != nil {
				return nil, err
			}
		}
		out = append(out, tc)
	}
	return out, nil
}

// pskKind is the preshared key kind of a tunnel kind.
func pskKind(tunnelKind string) (string, error) {
	switch tunnelKind {
	case inventory.KindWireGuard:
		return KindWireGuardPSK, nil
	case inventory.KindStrongSwan:
		return KindStrongSwanPSK, nil
	}
	return "", fmt.Errorf("unknown tunnel kind %q", tunnelKind)
}

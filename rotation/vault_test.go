package rotation

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	_ "modernc.org/sqlite"

	"github.com/warden-ir/warden/inventory"
)

// openDB opens a SQLite database file the way the store does.
func openDB(t testing.TB) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "warden.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db, path
}

func newVault(t testing.TB) (*Vault, *sql.DB, string) {
	t.Helper()
	db, path := openDB(t)
	mk, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := OpenVault(t.Context(), db, mk, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v, db, path
}

func TestVaultLifecycle(t *testing.T) {
	v, db, path := newVault(t)
	ctx := t.Context()
	p := NewPair(inventory.KindWireGuard, "osaka", "hq")
	if p.A != "hq" || p.B != "osaka" {
		t.Fatalf("NewPair did not sort its ends: %+v", p)
	}
	if _, err := v.Current(ctx, KindWireGuardPSK, p, ""); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("Current on an empty vault = %v, want ErrNoCredential", err)
	}
	imported, err := v.Import(ctx, Credential{Kind: KindWireGuardPSK, Pair: p}, SecretFrom([]byte("0123456789abcdef0123456789abcdef")))
	if err != nil {
		t.Fatal(err)
	}
	gen, secret, err := v.Generate(ctx, KindWireGuardPSK, p, "")
	if err != nil {
		t.Fatal(err)
	}
	if gen.State != StatePending || secret.Len() != 32 {
		t.Fatalf("generated %+v with a %d-byte secret", gen, secret.Len())
	}
	if cur, _ := v.Current(ctx, KindWireGuardPSK, p, ""); cur.ID != imported.ID {
		t.Fatalf("a pending credential replaced the active one")
	}
	if err := v.Activate(ctx, gen.ID); err != nil {
		t.Fatal(err)
	}
	cur, err := v.Current(ctx, KindWireGuardPSK, p, "")
	if err != nil || cur.ID != gen.ID || cur.Pair != p || !cur.HasSecret {
		t.Fatalf("Current = %+v, %v; want the activated one", cur, err)
	}
	if old, _ := v.Get(ctx, imported.ID); old.State != StateRetired {
		t.Errorf("the replaced credential is %s, want retired", old.State)
	}
	got, err := v.Secret(ctx, gen.ID)
	if err != nil || string(got.b) != string(secret.b) {
		t.Fatalf("Secret = %v; want the generated secret back", err)
	}

	// At rest the secret is sealed: neither the database file nor its WAL
	// holds it in any encoding.
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if leaks(string(b), secret.b) || leaks(string(b), []byte("0123456789abcdef0123456789abcdef")) {
			t.Fatalf("%s holds a secret in clear", f)
		}
	}

	site, sk, err := v.Generate(ctx, KindWireGuardKey, Pair{}, "hq")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := wgtypes.NewKey(sk.b)
	if site.PublicKey != k.PublicKey().String() || site.Site != "hq" {
		t.Fatalf("site key credential %+v does not match its secret", site)
	}
	list, err := v.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("List = %d credentials, %v; want 3", len(list), err)
	}
}

func TestVaultRejectsTamperingAndOtherKeys(t *testing.T) {
	v, db, _ := newVault(t)
	ctx := t.Context()
	p1 := NewPair(inventory.KindStrongSwan, "a", "b")
	p2 := NewPair(inventory.KindStrongSwan, "a", "c")
	c1, _, err := v.Generate(ctx, KindStrongSwanPSK, p1, "")
	if err != nil {
		t.Fatal(err)
	}
	c2, _, err := v.Generate(ctx, KindStrongSwanPSK, p2, "")
	if err != nil {
		t.Fatal(err)
	}
	// Moving c2's ciphertext into c1's row must not yield c2's key for p1.
	if _, err := db.ExecContext(ctx, `UPDATE tunnel_credentials SET nonce = (SELECT nonce FROM tunnel_credentials WHERE id = ?),
		sealed = (SELECT sealed FROM tunnel_credentials WHERE id = ?) WHERE id = ?`, c2.ID, c2.ID, c1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Secret(ctx, c1.ID); err == nil {
		t.Fatal("a ciphertext moved to another row was accepted")
	}
	other, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := OpenVault(ctx, db, other, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Secret(ctx, c2.ID); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Secret under another master key = %v, want ErrWrongKey", err)
	}
	noSecret, err := v.Import(ctx, Credential{Kind: KindWireGuardKey, Site: "a", PublicKey: "pub"}, Secret{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Secret(ctx, noSecret.ID); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("Secret of a credential without one = %v, want ErrNoSecret", err)
	}
}

func TestVaultInventory(t *testing.T) {
	v, _, _ := newVault(t)
	ctx := context.Background()
	tunnels := []inventory.Tunnel{
		{A: "hq", B: "osaka", Kind: inventory.KindWireGuard},
		{A: "osaka", B: "hq", Kind: inventory.KindWireGuard}, // the same tunnel again
		{A: "hq", B: "dc", Kind: inventory.KindStrongSwan},
	}
	for _, site := range []string{"hq", "osaka"} {
		if _, err := v.Import(ctx, Credential{Kind: KindWireGuardKey, Site: site, PublicKey: site + "-pub"}, Secret{}); err != nil {
			t.Fatal(err)
		}
	}
	ss, err := v.Import(ctx, Credential{Kind: KindStrongSwanPSK, Pair: NewPair(inventory.KindStrongSwan, "hq", "dc")}, SecretFrom([]byte("psk")))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := v.Inventory(ctx, tunnels)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv) != 2 {
		t.Fatalf("Inventory has %d tunnels, want 2: %+v", len(inv), inv)
	}
	wg, sw := inv[0], inv[1]
	if wg.KeyA == nil || wg.KeyA.PublicKey != "hq-pub" || wg.KeyB == nil || wg.KeyB.PublicKey != "osaka-pub" || wg.PSK != nil {
		t.Errorf("WireGuard entry = %+v", wg)
	}
	if sw.PSK == nil || sw.PSK.ID != ss.ID || sw.KeyA != nil {
		t.Errorf("strongSwan entry = %+v", sw)
	}
}

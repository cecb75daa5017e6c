package rotation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/strongswan"
)

// fakeWG models WireGuard devices: who lists whom, and each end's copy of
// each pair's preshared key. A refusing site stores a different key than
// it is sent.
type fakeWG struct {
	mu     sync.Mutex
	pub    map[string]wgtypes.Key
	peers  map[string]map[wgtypes.Key]bool
	psk    map[[2]string]wgtypes.Key // (site, peer) -> that end's key
	refuse map[string]bool
	known  map[wgtypes.Key]bool // keys in place before the test: never refused
	calls  []string
}

func newFakeWG(t *testing.T, sites ...string) *fakeWG {
	f := &fakeWG{pub: map[string]wgtypes.Key{}, peers: map[string]map[wgtypes.Key]bool{}, psk: map[[2]string]wgtypes.Key{}, refuse: map[string]bool{}, known: map[wgtypes.Key]bool{}}
	for _, s := range sites {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		f.pub[s] = k.PublicKey()
	}
	for _, a := range sites {
		f.peers[a] = map[wgtypes.Key]bool{}
		for _, b := range sites {
			if a != b {
				f.peers[a][f.pub[b]] = true
			}
		}
	}
	return f
}

func (f *fakeWG) PublicKey(_ context.Context, site string) (wgtypes.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pub[site], nil
}

func (f *fakeWG) HasPeer(_ context.Context, site string, key wgtypes.Key) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers[site][key], nil
}

func (f *fakeWG) RevokePeer(_ context.Context, site string, key wgtypes.Key) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "revoke "+site)
	had := f.peers[site][key]
	delete(f.peers[site], key)
	return had, nil
}

func (f *fakeWG) RotatePSK(_ context.Context, a, b string, psk wgtypes.Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "psk "+a+"-"+b)
	for _, end := range [][2]string{{a, b}, {b, a}} {
		k := psk
		if f.refuse[end[0]] && !f.known[psk] {
			k[0] ^= 0xff
		}
		f.psk[end] = k
	}
	return nil
}

func (f *fakeWG) RotateSiteKey(_ context.Context, site string, peers []string, old, next wgtypes.Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "sitekey "+site)
	f.pub[site] = next.PublicKey()
	for _, p := range peers {
		if f.refuse[p] {
			continue // this peer never takes the new key
		}
		delete(f.peers[p], old)
		f.peers[p][next.PublicKey()] = true
	}
	return nil
}

func (f *fakeWG) VerifyHandshake(_ context.Context, a, b string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.psk[[2]string{a, b}] != f.psk[[2]string{b, a}] || !f.peers[a][f.pub[b]] || !f.peers[b][f.pub[a]] {
		return fmt.Errorf("%s <-> %s: %w", a, b, actions.ErrNotVerified)
	}
	return nil
}

// fakeSS models charons: each end's loaded key ids for the pair.
type fakeSS struct {
	mu      sync.Mutex
	keys    map[[2]string]string // (site, peer) -> key id in use
	refuse  map[string]bool
	revoked map[[2]string]bool
	crls    map[string][]byte // site -> the CRL loaded there
}

func (f *fakeSS) RevokePeer(_ context.Context, site, peer string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := [2]string{site, peer}
	if f.revoked[k] {
		return false, nil
	}
	f.revoked[k] = true
	return true, nil
}

func (f *fakeSS) VerifyRevoked(_ context.Context, site, peer string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.revoked[[2]string{site, peer}] {
		return actions.ErrNotVerified
	}
	return nil
}

func (f *fakeSS) RotatePSK(_ context.Context, a, b, keyID string, _ []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse[a] || f.refuse[b] {
		return errors.New("reauthentication with the new key failed")
	}
	f.keys[[2]string{a, b}], f.keys[[2]string{b, a}] = keyID, keyID
	return nil
}

func (f *fakeSS) VerifyPSK(_ context.Context, a, b, keyID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys[[2]string{a, b}] != keyID || f.keys[[2]string{b, a}] != keyID {
		return actions.ErrNotVerified
	}
	return nil
}

func (f *fakeSS) LoadCRL(_ context.Context, site string, crl []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crls == nil {
		f.crls = map[string][]byte{}
	}
	f.crls[site] = crl
	return nil
}

func (f *fakeSS) VerifyCRL(_ context.Context, site string, issuer *x509.Certificate, serial *big.Int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strongswan.CRLRevokes(f.crls[site], issuer, serial) {
		return actions.ErrNotVerified
	}
	return nil
}

// fakeProbe passes traffic when the fake WireGuard pair agrees on its key.
type fakeProbe struct{ wg *fakeWG }

func (p fakeProbe) Probe(ctx context.Context, pair Pair) error {
	if pair.Kind != inventory.KindWireGuard {
		return nil
	}
	return p.wg.VerifyHandshake(ctx, pair.A, pair.B, time.Time{})
}

type fixture struct {
	r    *Rotator
	v    *Vault
	wg   *fakeWG
	ss   *fakeSS
	logs *bytes.Buffer
}

func newFixture(t *testing.T, sites ...string) *fixture {
	t.Helper()
	v, _, _ := newVault(t)
	wg := newFakeWG(t, sites...)
	ss := &fakeSS{keys: map[[2]string]string{}, refuse: map[string]bool{}, revoked: map[[2]string]bool{}}
	logs := &bytes.Buffer{}
	r := &Rotator{
		Vault:     v,
		Providers: Providers{WireGuard: wg, StrongSwan: ss},
		Probe:     fakeProbe{wg},
		Clock:     testsupport.NewStepClock(time.Unix(1_700_000_000, 0), time.Millisecond),
		Log:       slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	// The mesh as found: every site key and pair key imported, with secrets.
	for _, s := range sites {
		if _, err := v.Import(t.Context(), Credential{Kind: KindWireGuardKey, Site: s, PublicKey: wg.pub[s].String()}, Secret{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, a := range sites {
		for _, b := range sites[i+1:] {
			k, _ := wgtypes.GenerateKey()
			wg.psk[[2]string{a, b}], wg.psk[[2]string{b, a}] = k, k
			wg.known[k] = true
			if _, err := v.Import(t.Context(), Credential{Kind: KindWireGuardPSK, Pair: NewPair(inventory.KindWireGuard, a, b)}, SecretFrom(k[:])); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &fixture{r: r, v: v, wg: wg, ss: ss, logs: logs}
}

// assertNoSecrets checks that no secret the vault holds appears in the
// logs, the report's JSON or the error.
func (f *fixture) assertNoSecrets(t *testing.T, rep Report, err error) {
	t.Helper()
	js, jerr := json.Marshal(rep)
	if jerr != nil {
		t.Fatal(jerr)
	}
	list, lerr := f.v.List(t.Context())
	if lerr != nil {
		t.Fatal(lerr)
	}
	inv, _ := json.Marshal(list)
	text := f.logs.String() + string(js) + string(inv)
	if err != nil {
		text += err.Error()
	}
	for _, c := range list {
		s, serr := f.v.Secret(t.Context(), c.ID)
		if serr != nil {
			continue
		}
		if leaks(text, s.b) {
			t.Fatalf("the secret of %s appears in logs, report or error", c.ID)
		}
	}
}

func pairsOf(kind string, sites ...string) []Pair {
	var out []Pair
	for i, a := range sites {
		for _, b := range sites[i+1:] {
			out = append(out, NewPair(kind, a, b))
		}
	}
	return out
}

func TestRotateWaves(t *testing.T) {
	f := newFixture(t, "a", "b", "c", "d")
	pairs := pairsOf(inventory.KindWireGuard, "a", "b", "c", "d") // 6 pairs
	canary := pairs[3]
	rep, err := f.r.Rotate(t.Context(), pairs, WaveOptions{Canary: canary.String(), WaveSize: 2})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if len(rep.Rows) != 6 || rep.Count(StatusRotated) != 6 || rep.Stopped {
		t.Fatalf("report = %+v", rep)
	}
	if rep.Rows[0].Pair != canary || rep.Rows[0].Wave != 0 {
		t.Errorf("first row = %+v, want the canary in wave 0", rep.Rows[0])
	}
	for i, want := range []int{0, 1, 1, 2, 2, 3} {
		if rep.Rows[i].Wave != want {
			t.Errorf("row %d wave = %d, want %d", i, rep.Rows[i].Wave, want)
		}
	}
	for _, row := range rep.Rows {
		cur, err := f.v.Current(t.Context(), KindWireGuardPSK, row.Pair, "")
		if err != nil || cur.ID != row.NewCredential || row.OldCredential == "" || row.OldCredential == row.NewCredential {
			t.Errorf("%s: active %s (%v), row %+v", row.Pair, cur.ID, err, row)
		}
		if old, _ := f.v.Get(t.Context(), row.OldCredential); old.State != StateRetired {
			t.Errorf("%s: old credential is %s, want retired", row.Pair, old.State)
		}
	}
	f.assertNoSecrets(t, rep, err)
}

func TestRotateStopsAtFirstFailureAndRollsBack(t *testing.T) {
	f := newFixture(t, "a", "b", "c", "d")
	f.wg.refuse["d"] = true // d stores a different key than it is sent
	pairs := []Pair{
		NewPair(inventory.KindWireGuard, "a", "b"), // canary
		NewPair(inventory.KindWireGuard, "a", "c"), // wave 1
		NewPair(inventory.KindWireGuard, "b", "c"), // wave 1
		NewPair(inventory.KindWireGuard, "a", "d"), // wave 2: fails
		NewPair(inventory.KindWireGuard, "b", "d"), // wave 2: fails too (same wave)
		NewPair(inventory.KindWireGuard, "c", "d"), // wave 3: skipped
	}
	before := map[Pair]string{}
	for _, p := range pairs {
		c, _ := f.v.Current(t.Context(), KindWireGuardPSK, p, "")
		before[p] = c.ID
	}
	cdKey := f.wg.psk[[2]string{"c", "d"}]
	rep, err := f.r.Rotate(t.Context(), pairs, WaveOptions{WaveSize: 2, Timeout: time.Second})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Rotate error = %v, want ErrStopped", err)
	}
	if !rep.Stopped || rep.StoppedAt != pairs[3].String() {
		t.Errorf("stopped=%v at %q, want at %s", rep.Stopped, rep.StoppedAt, pairs[3])
	}
	want := []Status{StatusRotated, StatusRotated, StatusRotated, StatusRolledBack, StatusRolledBack, StatusSkipped}
	for i, row := range rep.Rows {
		if row.Status != want[i] {
			t.Errorf("row %d (%s) status = %s, want %s (error %q)", i, row.Pair, row.Status, want[i], row.Error)
		}
	}
	// The rolled-back and the skipped pairs are on their old, working key.
	for _, p := range pairs[3:] {
		cur, _ := f.v.Current(t.Context(), KindWireGuardPSK, p, "")
		if cur.ID != before[p] {
			t.Errorf("%s: active credential changed to %s", p, cur.ID)
		}
		f.wg.refuse["d"] = false
		if err := f.wg.VerifyHandshake(t.Context(), p.A, p.B, time.Time{}); err != nil {
			t.Errorf("%s does not work after the failed wave: %v", p, err)
		}
		f.wg.refuse["d"] = true
	}
	if f.wg.psk[[2]string{"c", "d"}] != cdKey {
		t.Error("the skipped pair's key was touched")
	}
	if rep.Rows[5].OldCredential != before[pairs[5]] || rep.Rows[5].NewCredential != "" {
		t.Errorf("skipped row = %+v", rep.Rows[5])
	}
	f.assertNoSecrets(t, rep, err)
}

func TestRotateStrongSwan(t *testing.T) {
	f := newFixture(t)
	f.ss.refuse["c"] = true
	pairs := pairsOf(inventory.KindStrongSwan, "a", "b", "c")
	rep, err := f.r.Rotate(t.Context(), pairs, WaveOptions{Timeout: time.Second})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Rotate = %v, want ErrStopped", err)
	}
	want := []Status{StatusRotated, StatusRolledBack, StatusSkipped}
	for i, row := range rep.Rows {
		if row.Status != want[i] || row.Credential != KindStrongSwanPSK {
			t.Errorf("row %d = %+v, want %s", i, row, want[i])
		}
	}
	if got := f.ss.keys[[2]string{"a", "b"}]; got != rep.Rows[0].NewCredential {
		t.Errorf("a<->b uses key id %q, want the new credential's id", got)
	}
	f.assertNoSecrets(t, rep, err)
}

func TestRotateRejectsUnknownCanary(t *testing.T) {
	f := newFixture(t, "a", "b")
	_, err := f.r.Rotate(t.Context(), pairsOf(inventory.KindWireGuard, "a", "b"), WaveOptions{Canary: "wireguard:x<->y"})
	if err == nil {
		t.Fatal("an unknown canary was accepted")
	}
	if len(f.wg.calls) != 0 {
		t.Errorf("providers were called: %v", f.wg.calls)
	}
}

func TestRotateSiteKeys(t *testing.T) {
	f := newFixture(t, "a", "b", "c", "d")
	// a is revoked: site keys rotate among b, c, d only.
	pairs := pairsOf(inventory.KindWireGuard, "b", "c", "d")
	rep, err := f.r.RotateSiteKeys(t.Context(), []string{"b", "c", "d"}, pairs, WaveOptions{Canary: "c", WaveSize: 2})
	if err != nil {
		t.Fatalf("RotateSiteKeys: %v", err)
	}
	if rep.Count(StatusRotated) != 6 || rep.Rows[0].Site != "c" {
		t.Fatalf("report = %+v", rep)
	}
	for _, s := range []string{"b", "c", "d"} {
		cur, err := f.v.Current(t.Context(), KindWireGuardKey, Pair{}, s)
		if err != nil || cur.PublicKey != f.wg.pub[s].String() || cur.Origin != "generated" {
			t.Errorf("site %s: vault %+v (%v), device key %s", s, cur, err, f.wg.pub[s])
		}
	}
	if f.wg.peers["a"][f.wg.pub["b"]] {
		t.Error("the revoked site a was given b's new key")
	}
	f.assertNoSecrets(t, rep, err)
}

func TestRotateSiteKeysStops(t *testing.T) {
	f := newFixture(t, "b", "c", "d")
	f.wg.refuse["d"] = true // d never takes new site keys
	pairs := pairsOf(inventory.KindWireGuard, "b", "c", "d")
	rep, err := f.r.RotateSiteKeys(t.Context(), []string{"b", "c"}, pairs, WaveOptions{Timeout: time.Second})
	if !errors.Is(err, ErrStopped) || rep.StoppedAt != "b" {
		t.Fatalf("RotateSiteKeys = %v, stopped at %q; want ErrStopped at b", err, rep.StoppedAt)
	}
	for _, row := range rep.Rows {
		switch row.Site {
		case "b":
			if row.Status != StatusFailed {
				t.Errorf("b row = %+v, want failed (no old secret to roll back to)", row)
			}
		case "c":
			if row.Status != StatusSkipped {
				t.Errorf("c row = %+v, want skipped", row)
			}
		}
	}
	f.assertNoSecrets(t, rep, err)
}

func TestRevoke(t *testing.T) {
	f := newFixture(t, "a", "b", "c")
	inv := &inventory.Inventory{Tunnels: []inventory.Tunnel{
		{A: "a", B: "b", Kind: inventory.KindWireGuard},
		{A: "c", B: "a", Kind: inventory.KindWireGuard},
		{A: "b", B: "c", Kind: inventory.KindWireGuard},
		{A: "a", B: "x", Kind: inventory.KindStrongSwan},
	}}
	aKey := f.wg.pub["a"]
	for i, want := range []Status{StatusRevoked, StatusUnchanged} {
		rep, err := f.r.Revoke(t.Context(), inv, "a")
		if err != nil {
			t.Fatalf("Revoke run %d: %v", i+1, err)
		}
		if len(rep.Rows) != 3 {
			t.Fatalf("rows = %+v, want one per tunnel of a", rep.Rows)
		}
		for _, row := range rep.Rows {
			if row.Status != want || row.Pair.Has("b") && row.Pair.Has("c") {
				t.Errorf("run %d: row %+v, want %s", i+1, row, want)
			}
		}
		f.assertNoSecrets(t, rep, err)
	}
	for _, s := range []string{"b", "c"} {
		if f.wg.peers[s][aKey] {
			t.Errorf("%s still lists a", s)
		}
	}
	if !f.wg.peers["b"][f.wg.pub["c"]] {
		t.Error("b lost c")
	}
	if !f.ss.revoked[[2]string{"x", "a"}] {
		t.Error("x still trusts a over strongSwan")
	}
	if _, err := f.v.Current(t.Context(), KindWireGuardKey, Pair{}, "a"); !errors.Is(err, ErrNoCredential) {
		t.Errorf("a's site key is still active: %v", err)
	}
	if _, err := f.v.Current(t.Context(), KindWireGuardPSK, NewPair(inventory.KindWireGuard, "a", "b"), ""); !errors.Is(err, ErrNoCredential) {
		t.Errorf("the a<->b preshared key is still active: %v", err)
	}
	if _, err := f.v.Current(t.Context(), KindWireGuardPSK, NewPair(inventory.KindWireGuard, "b", "c"), ""); err != nil {
		t.Errorf("the b<->c preshared key was revoked: %v", err)
	}
}

func TestRevokeNeedsTheStoredKey(t *testing.T) {
	f := newFixture(t, "a", "b")
	c, _ := f.v.Current(t.Context(), KindWireGuardKey, Pair{}, "a")
	if err := f.v.SetState(t.Context(), c.ID, StateRetired); err != nil {
		t.Fatal(err)
	}
	inv := &inventory.Inventory{Tunnels: []inventory.Tunnel{{A: "a", B: "b", Kind: inventory.KindWireGuard}}}
	rep, err := f.r.Revoke(t.Context(), inv, "a")
	if err == nil || rep.Rows[0].Status != StatusFailed {
		t.Fatalf("Revoke without a's stored key = %+v, %v; want a failed row", rep, err)
	}
	if len(f.wg.calls) != 0 {
		t.Errorf("the provider was called without a known key: %v", f.wg.calls)
	}
}

func TestSiteKeyWavesNeverHoldTwoPeers(t *testing.T) {
	f := newFixture(t, "a", "b", "c", "d", "e")
	// A hub (a) with spokes b..e; the spokes are not peers of each other.
	var pairs []Pair
	for _, s := range []string{"b", "c", "d", "e"} {
		pairs = append(pairs, NewPair(inventory.KindWireGuard, "a", s))
	}
	pairs = append(pairs, NewPair(inventory.KindWireGuard, "b", "c")) // one spoke-to-spoke tunnel
	rep, err := f.r.RotateSiteKeys(t.Context(), []string{"b", "a", "c", "d", "e"}, pairs, WaveOptions{WaveSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	wave := map[string]int{}
	for _, row := range rep.Rows {
		wave[row.Site] = row.Wave
	}
	for _, p := range pairs {
		if wave[p.A] == wave[p.B] {
			t.Errorf("%s and %s, peers, rotated in the same wave %d", p.A, p.B, wave[p.A])
		}
	}
	// b is the canary; c conflicts with b only through their tunnel, so
	// d and e share a wave and a (everyone's peer) waits.
	if wave["b"] != 0 || wave["d"] != wave["e"] || wave["a"] == wave["d"] {
		t.Errorf("waves = %v", wave)
	}
}

// TestRotateResumesWithThePendingKey is a rotation interrupted between
// generating a unit's key and activating it (the controller killed while a
// device was being configured), then run again by the resumed step with the
// same batch: it must finish with the key the first attempt generated, which
// may already be on a device, and not rotate the unit a second time. A
// pending key of another rotation is not taken over.
func TestRotateResumesWithThePendingKey(t *testing.T) {
	const batch = "run-1/4/rotate_credentials"
	tests := map[string]struct {
		siteKey    bool
		otherBatch bool // the pending key was left by another rotation
	}{
		"preshared key":                    {},
		"site key":                         {siteKey: true},
		"another rotation's preshared key": {otherBatch: true},
		"another rotation's site key":      {siteKey: true, otherBatch: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, "b", "c")
			p := NewPair(inventory.KindWireGuard, "b", "c")
			left := batch
			if tc.otherBatch {
				left = "run-0/4/rotate_credentials"
			}
			kind, site, pair := KindWireGuardPSK, "", p
			if tc.siteKey {
				kind, site, pair = KindWireGuardKey, "b", Pair{}
			}
			pending, secret, err := f.v.generate(ctx, left, kind, pair, site)
			if err != nil {
				t.Fatal(err)
			}
			key, err := wgtypes.NewKey(secret.Bytes())
			secret.Destroy()
			if err != nil {
				t.Fatal(err)
			}
			// What the first attempt got done before the kill.
			if tc.siteKey {
				old := f.wg.pub["b"]
				f.wg.pub["b"] = key.PublicKey() // b switched; c still lists both keys
				f.wg.peers["c"][key.PublicKey()] = true
				defer func() {
					if f.wg.peers["c"][old] {
						t.Error("c still lists b's old key")
					}
				}()
			} else {
				f.wg.psk[[2]string{"c", "b"}] = key // c took the key, b not yet
			}

			var rep Report
			if tc.siteKey {
				rep, err = f.r.RotateSiteKeys(ctx, []string{"b"}, []Pair{p}, WaveOptions{Batch: batch})
			} else {
				rep, err = f.r.Rotate(ctx, []Pair{p}, WaveOptions{Batch: batch})
			}
			if err != nil || rep.Count(StatusRotated) != len(rep.Rows) {
				t.Fatalf("resumed rotation: %+v, %v", rep, err)
			}
			cur, err := f.v.Current(ctx, kind, pair, site)
			if err != nil {
				t.Fatal(err)
			}
			var ours []string
			list, _ := f.v.List(ctx)
			for _, c := range list {
				if c.Batch == batch {
					ours = append(ours, c.ID)
				}
			}
			if len(ours) != 1 || cur.ID != ours[0] || rep.Rows[0].NewCredential != cur.ID {
				t.Fatalf("rotation %s left credentials %v, current %s, row %+v; want exactly one, current", batch, ours, cur.ID, rep.Rows[0])
			}
			first, _ := f.v.Get(ctx, pending.ID)
			switch {
			case !tc.otherBatch && cur.ID != pending.ID:
				t.Errorf("resumed with %s, want the pending %s (now %s)", cur.ID, pending.ID, first.State)
			case tc.otherBatch && (cur.ID == pending.ID || first.State != StatePending):
				t.Errorf("took over another rotation's pending key %s (now %s)", pending.ID, first.State)
			}
			if !tc.otherBatch && !tc.siteKey && (f.wg.psk[[2]string{"b", "c"}] != key || f.wg.psk[[2]string{"c", "b"}] != key) {
				t.Error("the ends do not both hold the pending key")
			}
			if !tc.otherBatch && tc.siteKey && f.wg.pub["b"] != key.PublicKey() {
				t.Error("b does not hold the pending key")
			}
			f.assertNoSecrets(t, rep, err)
		})
	}
}

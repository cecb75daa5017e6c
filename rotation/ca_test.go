package rotation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/strongswan"
)

func testCA(t *testing.T) (*CA, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lab IPsec CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := NewCA(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// certFixture is a strongSwan mesh of a, b, c authenticating with
// certificates whose serials are 0xa0, 0xb0, 0xc0.
func certFixture(t *testing.T) (*fixture, *inventory.Inventory) {
	f := newFixture(t, "a", "b", "c")
	inv := &inventory.Inventory{}
	for _, p := range pairsOf(inventory.KindStrongSwan, "a", "b", "c") {
		inv.Tunnels = append(inv.Tunnels, inventory.Tunnel{A: p.A, B: p.B, Kind: p.Kind})
	}
	for _, s := range []string{"a", "b", "c"} {
		inv.Gateways = append(inv.Gateways, inventory.Gateway{ID: s, Site: s,
			StrongSwan: &inventory.StrongSwanEnd{Identity: s + ".lab", Auth: inventory.AuthPubkey, CertificateSerial: s + "0"}})
	}
	if _, err := f.v.ImportSiteKeys(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
	return f, inv
}

func TestRevokeCertificateWithACRL(t *testing.T) {
	f, inv := certFixture(t)
	ca, _ := testCA(t)
	f.r.CA = ca
	serialA := big.NewInt(0xa0)
	for i, want := range []Status{StatusRevoked, StatusUnchanged} {
		rep, err := f.r.Revoke(t.Context(), inv, "a")
		if err != nil {
			t.Fatalf("Revoke %d: %v", i+1, err)
		}
		for _, row := range rep.Rows {
			if row.Status != want || row.Credential != KindStrongSwanCert {
				t.Errorf("run %d: row %+v", i+1, row)
			}
		}
	}
	for _, peer := range []string{"b", "c"} {
		if !strongswan.CRLRevokes(f.ss.crls[peer], ca.Certificate(), serialA) {
			t.Errorf("%s holds no CRL revoking a's certificate", peer)
		}
		if strongswan.CRLRevokes(f.ss.crls[peer], ca.Certificate(), big.NewInt(0xb0)) {
			t.Errorf("the CRL at %s revokes b too", peer)
		}
	}
	if rep, err := f.r.VerifyRevoked(t.Context(), inv, "a"); err != nil {
		t.Errorf("VerifyRevoked = %+v, %v", rep, err)
	}
	// A CRL that is lost at c is seen.
	delete(f.ss.crls, "c")
	if _, err := f.r.VerifyRevoked(t.Context(), inv, "a"); !errors.Is(err, actions.ErrNotVerified) || !strings.Contains(err.Error(), "at c") {
		t.Errorf("VerifyRevoked with the CRL gone at c = %v", err)
	}
}

func TestRevokeCertificateNeedsACA(t *testing.T) {
	f, inv := certFixture(t)
	rep, err := f.r.Revoke(t.Context(), inv, "a")
	if err == nil || !strings.Contains(err.Error(), "no CA configured") {
		t.Fatalf("Revoke without a CA = %v", err)
	}
	if rep.Count(StatusFailed) != 2 {
		t.Errorf("rows %+v; want both peers failed", rep.Rows)
	}
	// The tunnel itself was still cut.
	if !f.ss.revoked[[2]string{"b", "a"}] {
		t.Error("b still trusts a")
	}
}

func TestRotateLeavesCertificatePairsAlone(t *testing.T) {
	f, inv := certFixture(t)
	act := actions.NewRotateCredentials(&Tunnels{Rotator: f.r, Inventory: inv}, 0, 0)
	req := request(inv, "a", "run-1/step-5", nil)
	plan, err := act.Plan(t.Context(), req)
	if err != nil || !strings.Contains(plan.Summary, "authenticate with certificates") {
		t.Fatalf("plan = %+v, %v", plan, err)
	}
	res, err := act.Apply(t.Context(), req)
	if err != nil || res.Changed || !strings.Contains(res.Summary, "1 authenticate with certificates") {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	if _, err := act.Verify(t.Context(), req); err != nil {
		t.Errorf("Verify = %v", err)
	}
	if len(f.ss.keys) != 0 {
		t.Errorf("a pre-shared key was loaded on a certificate pair: %v", f.ss.keys)
	}
}

func TestCANeverPrintsItsKey(t *testing.T) {
	ca, key := testCA(t)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(ca)
	for _, text := range []string{fmt.Sprint(ca), fmt.Sprintf("%+v %#v", ca, ca), string(js)} {
		if strings.Contains(text, key.D.String()) || strings.Contains(text, string(pkcs8)) {
			t.Fatalf("the CA key shows in %q", text)
		}
	}

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCAFiles(certFile, keyFile); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("a world-readable CA key = %v; want refused", err)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCAFiles(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	der, err := loaded.CRL([]*big.Int{big.NewInt(7)}, big.NewInt(1), time.Now())
	if err != nil || !strongswan.CRLRevokes(der, ca.Certificate(), big.NewInt(7)) {
		t.Errorf("CRL from the loaded CA: %v", err)
	}
	other, _ := testCA(t)
	if _, err := NewCA(ca.Certificate(), other.key); err == nil {
		t.Error("NewCA accepted a key of another certificate")
	}
}

package rotation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/warden-ir/warden/internal/clock"
	"log/slog"
	"math/big"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard is what rotation needs from the WireGuard provider;
// *wireguard.Provider satisfies it. Sites are gateway ids.
type WireGuard interface {
	PublicKey(ctx context.Context, site string) (wgtypes.Key, error)
	HasPeer(ctx context.Context, site string, key wgtypes.Key) (bool, error)
	RevokePeer(ctx context.Context, site string, peer wgtypes.Key) (changed bool, err error)
	RotatePSK(ctx context.Context, a, b string, psk wgtypes.Key) error
	RotateSiteKey(ctx context.Context, site string, peers []string, old, next wgtypes.Key) error
	VerifyHandshake(ctx context.Context, a, b string, since time.Time) error
}

// StrongSwan is what rotation needs from the strongSwan provider;
// *strongswan.Provider satisfies it. Sites are gateway ids.
type StrongSwan interface {
	RevokePeer(ctx context.Context, site, peer string) (changed bool, err error)
	VerifyRevoked(ctx context.Context, site, peer string) error
	// RotatePSK is make-before-break and waits for the new IKE SA; on
	// failure it leaves the old key in use.
	RotatePSK(ctx context.Context, a, b, keyID string, psk []byte) error
	VerifyPSK(ctx context.Context, a, b, keyID string) error
	// LoadCRL makes site's charon check peer certificates against crl
	// (DER).
	LoadCRL(ctx context.Context, site string, crl []byte) error
	// VerifyCRL checks that site's charon holds a CRL signed by issuer
	// that revokes serial; the error wraps actions.ErrNotVerified if not.
	VerifyCRL(ctx context.Context, site string, issuer *x509.Certificate, serial *big.Int) error
}

// Providers holds one provider per tunnel kind; a kind without one cannot
// be revoked or rotated (its rows fail).
type Providers struct {
	WireGuard  WireGuard
	StrongSwan StrongSwan
}

// Prober checks that a pair's tunnel carries traffic now (one round trip
// from one LAN to the other, say). Optional: without one, rotation trusts
// the provider's verification alone.
type Prober interface {
	Probe(ctx context.Context, p Pair) error
}

// GapMeter measures the longest interruption of a pair's traffic while it
// is rotated: Watch starts a window, stop ends it and returns the gap.
// Optional.
type GapMeter interface {
	Watch(p Pair) (stop func() time.Duration)
}

// Rotator revokes and rotates tunnel credentials. Its fields are its
// dependencies; Vault and Providers are required.
type Rotator struct {
	Vault     *Vault
	Providers Providers
	// CA signs the CRLs that revoke gateways authenticating with
	// certificates; without it such a gateway cannot be revoked.
	CA    *CA
	Probe Prober
	Gaps  GapMeter
	Clock clock.Clock
	Log   *slog.Logger
}

func (r *Rotator) clock() clock.Clock {
	if r.Clock == nil {
		return clock.Real
	}
	return r.Clock
}

func (r *Rotator) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// Status of a row of a report.
type Status string

// Row statuses.
const (
	StatusRevoked    Status = "revoked"     // trust removed and verified
	StatusUnchanged  Status = "unchanged"   // nothing to do: already as wanted
	StatusRotated    Status = "rotated"     // the new credential is in use and verified
	StatusRolledBack Status = "rolled_back" // rotation failed; the old credential works again
	StatusFailed     Status = "failed"      // failed, and the pair may not work: needs a person
	StatusSkipped    Status = "skipped"     // not attempted: the waves stopped first; old credential untouched
)

// Row is one pair's line in a report. It never holds a secret: credentials
// appear by id only.
type Row struct {
	Pair Pair `json:"pair"`
	// Site is, for a revocation, the site where trust was removed; for a
	// site key rotation, the site whose key was rotated.
	Site string `json:"site,omitempty"`
	// Credential is the credential kind.
	Credential    string `json:"credential"`
	OldCredential string `json:"old_credential,omitempty"`
	NewCredential string `json:"new_credential,omitempty"`
	// Wave is 0 for the canary, then 1, 2, …
	Wave int `json:"wave"`
	// LongestGap is the longest traffic gap the GapMeter saw on the pair
	// while its unit ran (zero without a meter).
	LongestGap time.Duration `json:"-"`
	Status     Status        `json:"status"`
	Error      string        `json:"error,omitempty"`
}

// MarshalJSON adds the gap in milliseconds.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	return json.Marshal(struct {
		plain
		LongestGapMS float64 `json:"longest_gap_ms"`
	}{plain(r), float64(r.LongestGap.Microseconds()) / 1000})
}

// Report is what a revocation or rotation did, pair by pair.
type Report struct {
	// Operation is "revoke", "rotate_psk" or "rotate_site_keys".
	Operation string `json:"operation"`
	Rows      []Row  `json:"rows"`
	// Stopped is set when the waves stopped at a failing unit; StoppedAt
	// names it.
	Stopped   bool   `json:"stopped,omitempty"`
	StoppedAt string `json:"stopped_at,omitempty"`
}

// Count returns how many rows have status s.
func (rep Report) Count(s Status) int {
	n := 0
	for _, r := range rep.Rows {
		if r.Status == s {
			n++
		}
	}
	return n
}

// Errors of the procedures, for errors.Is.
var (
	// ErrStopped: a rotation stopped at a failing unit (see the report).
	ErrStopped = errors.New("rotation stopped")
	// ErrNoProvider: no provider is configured for a tunnel kind.
	ErrNoProvider = errors.New("no provider for this tunnel kind")
)

// errorText is a row's error: the provider's message, which names sites,
// ids and commands but never key material.
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// waitUntil polls check every poll until it returns nil or timeout passes,
// and returns the last error.
func waitUntil(ctx context.Context, c clock.Clock, timeout, poll time.Duration, check func() error) error {
	deadline := c.After(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-deadline:
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-c.After(poll):
		}
	}
}

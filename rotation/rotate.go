package rotation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/internal/waves"
	"github.com/warden-ir/warden/inventory"
)

// WaveOptions shape a rotation.
type WaveOptions struct {
	// Canary is the unit rotated alone, first: a pair (Pair.String()) for
	// Rotate, a site for RotateSiteKeys. Empty: the first unit given.
	Canary string
	// WaveSize is how many units rotate at the same time after the canary
	// (default 1).
	WaveSize int
	// Timeout bounds how long a unit may take to come back (default 20 s).
	Timeout time.Duration
	// Poll is how often verification is retried while waiting (default
	// 50 ms).
	Poll time.Duration
	// Batch tags every credential this rotation generates (a step's
	// idempotency key). A unit whose active credential already carries the
	// tag was rotated by an earlier attempt of the same rotation and is
	// reported unchanged, so a rotation resumed after a crash does not
	// rotate again what it finished; a unit it was in the middle of
	// resumes with the pending credential the tag names (installing it
	// again is idempotent) instead of a second new one.
	Batch string
}

func (o WaveOptions) withDefaults() WaveOptions {
	if o.WaveSize <= 0 {
		o.WaveSize = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 50 * time.Millisecond
	}
	return o
}

// unit is what one wave slot rotates: a pair's preshared key, or a site's
// key (which touches every pair of the site).
type unit struct {
	name   string
	rotate func(ctx context.Context) []Row
	skip   func(ctx context.Context) []Row
	// peers are the units this one must not rotate at the same time as:
	// a site's key cannot change while a peer's does, or each would stage
	// the other's new key on an entry the other is replacing.
	peers []string
}

// wavesOf is the order a rotation runs units in: the canary alone, then up
// to WaveSize units per wave, never two that conflict.
func wavesOf(units []unit, opt WaveOptions) [][]unit {
	return waves.Plan(units, waves.Layout[unit]{
		Size:      opt.WaveSize,
		Lead:      func(u unit) bool { return u.name == opt.Canary },
		Conflicts: func(a, b unit) bool { return slices.Contains(a.peers, b.name) },
	})
}

// cameBack reports whether every row of a unit ended well.
func cameBack(rows []Row) bool {
	for _, r := range rows {
		if r.Status != StatusRotated && r.Status != StatusUnchanged {
			return false
		}
	}
	return len(rows) > 0
}

// runWaves rotates the canary alone, then the other units WaveSize at a
// time, and stops after the first wave in which a unit did not come back:
// later units are reported as skipped and keep their current credential.
func (r *Rotator) runWaves(ctx context.Context, units []unit, opt WaveOptions) (rows []Row, stoppedAt string) {
	plan := wavesOf(units, opt)
	results := make([][]Row, len(units))
	run := waves.Run(ctx, plan, waves.RunOptions{}, func(ctx context.Context, at waves.Pos, u unit) error {
		res := u.rotate(ctx)
		for i := range res {
			row := &res[i]
			row.Wave = at.Wave
			r.log().InfoContext(ctx, "credential rotation", "pair", row.Pair.String(), "site", row.Site,
				"credential", row.Credential, "old", row.OldCredential, "new", row.NewCredential,
				"wave", at.Wave, "status", string(row.Status), "longest_gap", row.LongestGap, "error", row.Error)
		}
		results[at.Index] = res
		if !cameBack(res) {
			return fmt.Errorf("%s did not come back", u.name)
		}
		return nil
	})
	i := 0
	for w, wave := range plan {
		for _, u := range wave {
			if run.Started[i] {
				rows = append(rows, results[i]...)
				if !cameBack(results[i]) && stoppedAt == "" {
					stoppedAt = u.name
				}
			} else {
				for _, row := range u.skip(ctx) {
					row.Wave, row.Status = w, StatusSkipped
					if stoppedAt == "" {
						row.Error = errorText(ctx.Err())
					}
					rows = append(rows, row)
				}
			}
			i++
		}
	}
	return rows, stoppedAt
}

// Rotate replaces the preshared key of every pair (WireGuard or strongSwan)
// with a fresh one from the vault, canary first, then in waves. A unit has
// come back when the provider verifies the new key in use (WireGuard: a
// handshake after the rotation started at both ends, made with the new key;
// strongSwan: a new IKE SA authenticated with it) and the Prober gets
// traffic through. A unit that does not come back within the timeout is
// rolled back to its old key when Warden holds it (strongSwan's provider
// keeps the old key in use by itself) and the waves stop: pairs not yet
// rotated keep their current, working key. The error wraps ErrStopped then.
func (r *Rotator) Rotate(ctx context.Context, pairs []Pair, opt WaveOptions) (Report, error) {
	opt = opt.withDefaults()
	if opt.Canary != "" && !slices.ContainsFunc(pairs, func(p Pair) bool { return p.String() == opt.Canary }) {
		return Report{Operation: "rotate_psk"}, fmt.Errorf("rotating: canary %q is not one of the pairs", opt.Canary)
	}
	units := make([]unit, 0, len(pairs))
	for _, p := range pairs {
		units = append(units, unit{
			name:   p.String(),
			rotate: func(ctx context.Context) []Row { return []Row{r.rotatePSK(ctx, p, opt)} },
			skip: func(ctx context.Context) []Row {
				row := Row{Pair: p}
				if kind, err := pskKind(p.Kind); err == nil {
					row.Credential = kind
					if c, err := r.Vault.Current(ctx, kind, p, ""); err == nil {
						row.OldCredential = c.ID
					}
				}
				return []Row{row}
			},
		})
	}
	rows, stoppedAt := r.runWaves(ctx, units, opt)
	rep := Report{Operation: "rotate_psk", Rows: rows, Stopped: stoppedAt != "", StoppedAt: stoppedAt}
	if rep.Stopped {
		return rep, fmt.Errorf("%w at %s", ErrStopped, stoppedAt)
	}
	return rep, ctx.Err()
}

// watch starts the gap meter on p, if there is one.
func (r *Rotator) watch(p Pair) func() time.Duration {
	if r.Gaps == nil {
		return func() time.Duration { return 0 }
	}
	return r.Gaps.Watch(p)
}

func (r *Rotator) probe(ctx context.Context, p Pair) error {
	if r.Probe == nil {
		return nil
	}
	if err := r.Probe.Probe(ctx, p); err != nil {
		return fmt.Errorf("probing traffic through %s: %w", p, err)
	}
	return nil
}

// rotatePSK rotates one pair's preshared key; see Rotate.
func (r *Rotator) rotatePSK(ctx context.Context, p Pair, opt WaveOptions) (row Row) {
	row = Row{Pair: p, Status: StatusFailed}
	kind, err := pskKind(p.Kind)
	if err != nil {
		row.Error = errorText(err)
		return row
	}
	row.Credential = kind
	old, err := r.Vault.Current(ctx, kind, p, "")
	hasOld := err == nil
	switch {
	case hasOld:
		row.OldCredential = old.ID
	case !errors.Is(err, ErrNoCredential):
		row.Error = errorText(err)
		return row
	}
	if hasOld && opt.Batch != "" && old.Batch == opt.Batch {
		row.OldCredential, row.NewCredential, row.Status = "", old.ID, StatusUnchanged
		return row
	}
	if (p.Kind == inventory.KindWireGuard && r.Providers.WireGuard == nil) || (p.Kind == inventory.KindStrongSwan && r.Providers.StrongSwan == nil) {
		row.Error = errorText(ErrNoProvider)
		return row
	}
	cred, secret, err := r.batchCredential(ctx, opt.Batch, kind, p, "")
	if err != nil {
		row.Error = errorText(err)
		return row
	}
	defer secret.Destroy()
	row.NewCredential = cred.ID

	stop := r.watch(p)
	defer func() { row.LongestGap = stop() }()
	c := r.clock()
	since := c.Now()
	err = r.installPSK(ctx, p, cred.ID, secret, since, opt)
	if err == nil {
		if err := r.Vault.Activate(ctx, cred.ID); err != nil {
			row.Error = errorText(err)
			return row
		}
		row.Status = StatusRotated
		return row
	}
	row.Error = errorText(err)
	if serr := r.Vault.SetState(context.WithoutCancel(ctx), cred.ID, StateFailed); serr != nil {
		row.Error += "; " + errorText(serr)
	}
	if rerr := r.restorePSK(context.WithoutCancel(ctx), p, old, hasOld, opt); rerr != nil {
		row.Error += "; rolling back: " + errorText(rerr)
		return row
	}
	row.Status = StatusRolledBack
	return row
}

// batchCredential returns the credential of kind for a pair or a site
// that this rotation (batch) generated earlier and left pending, or, when
// there is none, a new one. A rotation interrupted between generating a
// key and activating it (a crash, a kill -9 while a device was being
// configured) may have installed that key at one end or both already:
// installing the same key again is idempotent at the provider, whereas a
// second key would rotate the unit a second time and leave the first key
// pending in the vault for good.
func (r *Rotator) batchCredential(ctx context.Context, batch, kind string, pair Pair, site string) (Credential, Secret, error) {
	if batch == "" {
		return r.Vault.generate(ctx, batch, kind, pair, site)
	}
	c, err := r.Vault.Latest(ctx, kind, pair, site, StatePending)
	switch {
	case errors.Is(err, ErrNoCredential):
	case err != nil:
		return Credential{}, Secret{}, err
	case c.Batch == batch && c.HasSecret:
		s, err := r.Vault.Secret(ctx, c.ID)
		if err != nil {
			return Credential{}, Secret{}, fmt.Errorf("resuming with the pending credential %s: %w", c.ID, err)
		}
		of := site
		if of == "" {
			of = pair.String()
		}
		r.log().InfoContext(ctx, "credential rotation resumes with its pending credential", "credential", c.ID, "kind", kind, "of", of)
		return c, s, nil
	}
	return r.Vault.generate(ctx, batch, kind, pair, site)
}

// installPSK sends the key to both ends through the provider and waits
// until the pair has come back with it.
func (r *Rotator) installPSK(ctx context.Context, p Pair, keyID string, secret Secret, since time.Time, opt WaveOptions) error {
	c := r.clock()
	switch p.Kind {
	case inventory.KindWireGuard:
		wg := r.Providers.WireGuard
		key, err := wgtypes.NewKey(secret.b)
		if err != nil {
			return fmt.Errorf("rotating %s: the generated key does not fit WireGuard", p)
		}
		defer clear(key[:])
		if err := wg.RotatePSK(ctx, p.A, p.B, key); err != nil {
			return err
		}
		return waitUntil(ctx, c, opt.Timeout, opt.Poll, func() error {
			probeErr := r.probe(ctx, p) // traffic also starts the handshake
			return errors.Join(wg.VerifyHandshake(ctx, p.A, p.B, since), probeErr)
		})
	case inventory.KindStrongSwan:
		ss := r.Providers.StrongSwan
		b := secret.Bytes()
		err := ss.RotatePSK(ctx, p.A, p.B, keyID, b)
		clear(b)
		if err != nil {
			return err
		}
		return waitUntil(ctx, c, opt.Timeout, opt.Poll, func() error {
			return errors.Join(ss.VerifyPSK(ctx, p.A, p.B, keyID), r.probe(ctx, p))
		})
	}
	return fmt.Errorf("unknown tunnel kind %q", p.Kind)
}

// restorePSK brings a pair whose rotation failed back to its old key and
// checks it carries traffic again.
func (r *Rotator) restorePSK(ctx context.Context, p Pair, old Credential, hasOld bool, opt WaveOptions) error {
	c := r.clock()
	switch p.Kind {
	case inventory.KindWireGuard:
		var key wgtypes.Key // no old credential: the pair had no preshared key
		if hasOld {
			s, err := r.Vault.Secret(ctx, old.ID)
			if err != nil {
				return fmt.Errorf("cannot restore the old key: %w", err)
			}
			key, err = wgtypes.NewKey(s.b)
			s.Destroy()
			if err != nil {
				return fmt.Errorf("cannot restore the old key of %s: it is not a WireGuard key", p)
			}
		}
		defer clear(key[:])
		since := c.Now()
		if err := r.Providers.WireGuard.RotatePSK(ctx, p.A, p.B, key); err != nil {
			return err
		}
		return waitUntil(ctx, c, opt.Timeout, opt.Poll, func() error {
			probeErr := r.probe(ctx, p)
			return errors.Join(r.Providers.WireGuard.VerifyHandshake(ctx, p.A, p.B, since), probeErr)
		})
	case inventory.KindStrongSwan:
		// The provider unloaded the new key when the reauthentication
		// failed; the old SAs never went away. Check traffic still flows.
		return waitUntil(ctx, c, opt.Timeout, opt.Poll, func() error { return r.probe(ctx, p) })
	}
	return fmt.Errorf("unknown tunnel kind %q", p.Kind)
}

// RotateSiteKeys replaces the WireGuard private key of each site with the
// staged procedure (see wireguard.Provider.RotateSiteKey), canary site
// first, then in waves; only the site's peers in pairs are told the new
// key (leave a revoked gateway out of pairs). A site has come back when
// every one of its pairs shows a handshake with the new key and passes the
// Prober, and no peer still lists the old key. A site that does not come
// back is rolled back to its old key when Warden holds it, and the waves
// stop. Rows are per pair, with Site naming the site whose key changed.
func (r *Rotator) RotateSiteKeys(ctx context.Context, sites []string, pairs []Pair, opt WaveOptions) (Report, error) {
	opt = opt.withDefaults()
	if opt.Canary != "" && !slices.Contains(sites, opt.Canary) {
		return Report{Operation: "rotate_site_keys"}, fmt.Errorf("rotating site keys: canary %q is not one of the sites", opt.Canary)
	}
	units := make([]unit, 0, len(sites))
	for _, site := range sites {
		var own []Pair
		for _, p := range pairs {
			if p.Kind == inventory.KindWireGuard && p.Has(site) {
				own = append(own, p)
			}
		}
		units = append(units, unit{
			name:   site,
			peers:  sitePeers(site, own),
			rotate: func(ctx context.Context) []Row { return r.rotateSiteKey(ctx, site, own, opt) },
			skip: func(ctx context.Context) []Row {
				rows := siteRows(site, own)
				if c, err := r.Vault.Current(ctx, KindWireGuardKey, Pair{}, site); err == nil {
					for i := range rows {
						rows[i].OldCredential = c.ID
					}
				}
				return rows
			},
		})
	}
	rows, stoppedAt := r.runWaves(ctx, units, opt)
	rep := Report{Operation: "rotate_site_keys", Rows: rows, Stopped: stoppedAt != "", StoppedAt: stoppedAt}
	if rep.Stopped {
		return rep, fmt.Errorf("%w at site %s", ErrStopped, stoppedAt)
	}
	return rep, ctx.Err()
}

func siteRows(site string, pairs []Pair) []Row {
	if len(pairs) == 0 {
		return []Row{{Site: site, Credential: KindWireGuardKey}}
	}
	rows := make([]Row, 0, len(pairs))
	for _, p := range pairs {
		rows = append(rows, Row{Pair: p, Site: site, Credential: KindWireGuardKey})
	}
	return rows
}

func (r *Rotator) rotateSiteKey(ctx context.Context, site string, pairs []Pair, opt WaveOptions) []Row {
	rows := siteRows(site, pairs)
	fail := func(err error) []Row {
		for i := range rows {
			rows[i].Status, rows[i].Error = StatusFailed, errorText(err)
		}
		return rows
	}
	wg := r.Providers.WireGuard
	if wg == nil {
		return fail(ErrNoProvider)
	}
	peers := make([]string, 0, len(pairs))
	for _, p := range pairs {
		peers = append(peers, p.Other(site))
	}

	var oldPub wgtypes.Key
	old, err := r.Vault.Current(ctx, KindWireGuardKey, Pair{}, site)
	hasOld := err == nil
	switch {
	case hasOld:
		if oldPub, err = wgtypes.ParseKey(old.PublicKey); err != nil {
			return fail(fmt.Errorf("parsing the stored public key of %s: %w", site, err))
		}
	case errors.Is(err, ErrNoCredential):
		// A healthy site's own device is trusted to say which key it has.
		if oldPub, err = wg.PublicKey(ctx, site); err != nil {
			return fail(err)
		}
	default:
		return fail(err)
	}
	if hasOld && opt.Batch != "" && old.Batch == opt.Batch {
		for i := range rows {
			rows[i].NewCredential, rows[i].Status = old.ID, StatusUnchanged
		}
		return rows
	}
	cred, secret, err := r.batchCredential(ctx, opt.Batch, KindWireGuardKey, Pair{}, site)
	if err != nil {
		return fail(err)
	}
	defer secret.Destroy()
	for i := range rows {
		rows[i].OldCredential, rows[i].NewCredential = old.ID, cred.ID
	}

	stops := make([]func() time.Duration, len(pairs))
	for i, p := range pairs {
		stops[i] = r.watch(p)
	}
	defer func() {
		for i, stop := range stops {
			rows[i].LongestGap = stop()
		}
	}()

	c := r.clock()
	switchKey := func(ctx context.Context, from, to wgtypes.Key) error {
		since := c.Now()
		if err := wg.RotateSiteKey(ctx, site, peers, from, to); err != nil {
			return err
		}
		toPub := to.PublicKey()
		done := make([]bool, len(pairs)) // pairs verified so far
		return waitUntil(ctx, c, opt.Timeout, opt.Poll, func() error {
			errs := make([]error, len(pairs))
			var wg2 sync.WaitGroup
			for i, p := range pairs {
				if done[i] {
					continue
				}
				wg2.Go(func() {
					peer := p.Other(site)
					e := []error{r.probe(ctx, p), wg.VerifyHandshake(ctx, site, peer, since)}
					if has, err := wg.HasPeer(ctx, peer, from); err != nil || has {
						e = append(e, errors.Join(err, fmt.Errorf("%s still lists the old key of %s", peer, site)))
					}
					if has, err := wg.HasPeer(ctx, peer, toPub); err != nil || !has {
						e = append(e, errors.Join(err, fmt.Errorf("%s does not list the new key of %s", peer, site)))
					}
					errs[i] = errors.Join(e...)
				})
			}
			wg2.Wait()
			for i, err := range errs {
				if err == nil {
					done[i] = true
				}
			}
			return errors.Join(errs...)
		})
	}

	next, err := wgtypes.NewKey(secret.b)
	if err != nil {
		return fail(errors.New("the generated key does not fit WireGuard"))
	}
	defer clear(next[:])
	err = switchKey(ctx, oldPub, next)
	if err == nil {
		if err := r.Vault.Activate(ctx, cred.ID); err != nil {
			return fail(err)
		}
		for i := range rows {
			rows[i].Status = StatusRotated
		}
		return rows
	}
	rows = fail(err)
	bg := context.WithoutCancel(ctx)
	_ = r.Vault.SetState(bg, cred.ID, StateFailed)
	if !hasOld || !old.HasSecret {
		for i := range rows {
			rows[i].Error += "; cannot roll back: Warden does not hold the old key"
		}
		return rows
	}
	s, serr := r.Vault.Secret(bg, old.ID)
	if serr != nil {
		for i := range rows {
			rows[i].Error += "; rolling back: " + errorText(serr)
		}
		return rows
	}
	oldKey, kerr := wgtypes.NewKey(s.b)
	s.Destroy()
	defer clear(oldKey[:])
	if kerr == nil {
		kerr = switchKey(bg, next.PublicKey(), oldKey)
	}
	if kerr != nil {
		for i := range rows {
			rows[i].Error += "; rolling back: " + errorText(kerr)
		}
		return rows
	}
	for i := range rows {
		rows[i].Status = StatusRolledBack
	}
	return rows
}

// sitePeers lists the other ends of site's WireGuard pairs.
func sitePeers(site string, pairs []Pair) []string {
	var out []string
	for _, p := range pairs {
		if p.Kind == inventory.KindWireGuard && p.Has(site) {
			out = append(out, p.Other(site))
		}
	}
	return out
}

// PlannedUnit is one pair or site of a rotation plan and its wave (0 is
// the canary).
type PlannedUnit struct {
	Name string
	Wave int
}

// PlanPSKWaves lays pairs out in waves as Rotate would run them.
func PlanPSKWaves(pairs []Pair, opt WaveOptions) []PlannedUnit {
	units := make([]unit, 0, len(pairs))
	for _, p := range pairs {
		units = append(units, unit{name: p.String()})
	}
	return planUnits(units, opt)
}

// PlanSiteKeyWaves lays sites out in waves as RotateSiteKeys would run
// them: never two peers in one wave.
func PlanSiteKeyWaves(sites []string, pairs []Pair, opt WaveOptions) []PlannedUnit {
	units := make([]unit, 0, len(sites))
	for _, s := range sites {
		units = append(units, unit{name: s, peers: sitePeers(s, pairs)})
	}
	return planUnits(units, opt)
}

func planUnits(units []unit, opt WaveOptions) []PlannedUnit {
	opt = opt.withDefaults()
	var out []PlannedUnit
	for w, wave := range wavesOf(units, opt) {
		for _, u := range wave {
			out = append(out, PlannedUnit{Name: u.name, Wave: w})
		}
	}
	return out
}

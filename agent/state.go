package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/warden-ir/warden/agent/wire"
)

const (
	stateFile    = "state.json"
	stateVersion = 1
)

// specRecord is a wire.QuarantineSpec as stored: normalised prefixes,
// sorted, as text.
type specRecord struct {
	Management []string `json:"management"`
	Forensics  []string `json:"forensics,omitempty"`
}

func (s specRecord) equal(o specRecord) bool {
	return slices.Equal(s.Management, o.Management) && slices.Equal(s.Forensics, o.Forensics)
}

// spec parses a stored record; it was validated when written.
func (s specRecord) spec() (wire.QuarantineSpec, error) {
	m, err := parsePrefixes(s.Management)
	if err != nil {
		return wire.QuarantineSpec{}, fmt.Errorf("parsing management networks: %w", err)
	}
	f, err := parsePrefixes(s.Forensics)
	if err != nil {
		return wire.QuarantineSpec{}, fmt.Errorf("parsing forensics networks: %w", err)
	}
	return wire.QuarantineSpec{Management: m, Forensics: f}, nil
}

// record is the agent's durable quarantine state.
type record struct {
	Version     int        `json:"version"`
	Quarantined bool       `json:"quarantined"`
	Confirmed   bool       `json:"confirmed"`
	Generation  int64      `json:"generation"`
	ConfirmBy   time.Time  `json:"confirm_by,omitzero"`
	Spec        specRecord `json:"spec"`
	// Previous is the confirmed quarantine that was in force when a new,
	// still unconfirmed one replaced it: an unconfirmed change reverts to
	// it, not to no quarantine at all.
	Previous         *specRecord `json:"previous,omitempty"`
	QuarantinedAt    time.Time   `json:"quarantined_at,omitzero"`
	LinksDown        []string    `json:"links_down,omitempty"`
	TerminatedSAs    []wire.SA   `json:"terminated_sas,omitempty"`
	LastReverted     time.Time   `json:"last_reverted,omitzero"`
	LastRevertReason string      `json:"last_revert_reason,omitempty"`
	LastHealed       time.Time   `json:"last_healed,omitzero"`
	Heals            int         `json:"heals,omitempty"`
	// FlowsKept: the quarantine was put in force with KeepFlows and its
	// tracked flows are not killed yet; enforcing it (heal, restart) must
	// not kill them either, until kill_flows.
	FlowsKept bool `json:"flows_kept,omitempty"`
	// Nonces are the live nonces of the commands whose change a record
	// holds (isolate, confirm), each until when its command could still be
	// accepted: this write puts them on disk, instead of an fsync of the
	// nonce journal of their own (carryNonce); start remembers them.
	Nonces map[string]time.Time `json:"nonces,omitempty"`
}

// maxCarriedNonces bounds the nonces a record carries: past it, the
// nonce journal is flushed instead (every carried nonce is then on disk
// there) and the record starts again from the command's own.
const maxCarriedNonces = 16

// carryNonce adds the command's nonce n (if any) to r, forgetting the
// nonces carried that can no longer be replayed, and keeps the record
// small (maxCarriedNonces).
func (r *record) carryNonce(n *commandNonce, now time.Time) error {
	if n == nil {
		return nil
	}
	live := make(map[string]time.Time, len(r.Nonces)+1)
	for id, until := range r.Nonces {
		if until.After(now) {
			live[id] = until
		}
	}
	if len(live) >= maxCarriedNonces {
		if err := n.g.flush(); err != nil {
			return err
		}
		clear(live)
	}
	live[n.id] = n.until
	r.Nonces = live
	return nil
}

// pending reports an unconfirmed quarantine.
func (r record) pending() bool { return r.Quarantined && !r.Confirmed }

// clone copies r deeply enough that changing slices of the copy leaves r
// alone.
func (r record) clone() record {
	c := r
	c.Spec.Management = slices.Clone(r.Spec.Management)
	c.Spec.Forensics = slices.Clone(r.Spec.Forensics)
	if r.Previous != nil {
		p := *r.Previous
		c.Previous = &p
	}
	c.LinksDown = slices.Clone(r.LinksDown)
	c.TerminatedSAs = slices.Clone(r.TerminatedSAs)
	c.Nonces = maps.Clone(r.Nonces)
	return c
}

// view is the record as the API shows it.
func (r record) view() wire.State {
	return wire.State{
		Quarantined:      r.Quarantined,
		Confirmed:        r.Confirmed,
		Generation:       r.Generation,
		ConfirmBy:        r.ConfirmBy,
		Management:       slices.Clone(r.Spec.Management),
		Forensics:        slices.Clone(r.Spec.Forensics),
		QuarantinedAt:    r.QuarantinedAt,
		LinksDown:        slices.Clone(r.LinksDown),
		TerminatedSAs:    slices.Clone(r.TerminatedSAs),
		LastReverted:     r.LastReverted,
		LastRevertReason: r.LastRevertReason,
		LastHealed:       r.LastHealed,
		Heals:            r.Heals,
		FlowsKept:        r.FlowsKept,
	}
}

// prepareStateDir creates dir (0700) or tightens an existing one.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("reading state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restricting state directory to its owner: %w", err)
		}
	}
	return nil
}

// loadRecord reads the record; no record on disk is an empty record. A
// record that cannot be read or parsed is an error: without it the agent
// cannot know whether the gateway must stay quarantined, so it refuses to
// start rather than guess. The record is the newest intact one of the two
// slots (see saveRecord), or, before the agent first wrote one, the JSON
// file of earlier agents.
func loadRecord(dir string) (record, error) {
	var r record
	payload, found, err := loadSlots(dir)
	switch {
	case err != nil:
		return record{}, err
	case found:
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return record{}, fmt.Errorf("parsing quarantine state in %s (the agent will not guess whether the gateway is quarantined): %w", dir, err)
		}
	default:
		if found, err := loadJSONFile(filepath.Join(dir, stateFile), "quarantine state", "whether the gateway is quarantined", &r); err != nil {
			return record{}, err
		} else if !found {
			return record{Version: stateVersion}, nil
		}
	}
	if r.Version != stateVersion {
		return record{}, fmt.Errorf("parsing quarantine state: version %d, want %d", r.Version, stateVersion)
	}
	if r.Quarantined {
		if _, err := r.Spec.spec(); err != nil {
			return record{}, fmt.Errorf("parsing quarantine state: %w", err)
		}
	}
	return r, nil
}

// saveRecord replaces the record durably before the caller touches the
// kernel, on the path of every isolate and confirm, so it must be cheap:
// the record goes into the older of two slot files, overwritten in place
// with one write and one fdatasync (a new file, an fsync, a rename and a
// directory fsync cost about 25 times as much on a journalling file
// system). Each slot carries a sequence number and a checksum, so a write
// torn by a crash leaves the other slot, the previous record, as the
// newest intact one: what was on disk before the unfinished save, as with
// a rename. A slot file is created (and its directory fsync'd) once.
func saveRecord(dir string, r record) error {
	r.Version = stateVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding quarantine state: %w", err)
	}
	if err := saveSlot(dir, append(b, '\n')); err != nil {
		return fmt.Errorf("saving quarantine state: %w", err)
	}
	// The JSON file of earlier agents is superseded by the slots.
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the superseded %s: %w", stateFile, err)
	}
	return nil
}

// loadJSONFile decodes the file at path into v, strictly (unknown fields
// are errors); found is false when there is no file. what names the file
// in errors, and unknown says what the agent would otherwise have to guess.
func loadJSONFile(path, what, unknown string, v any) (found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", what, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false, fmt.Errorf("parsing %s %s (fix or remove it by hand; the agent will not guess %s): %w", what, path, unknown, err)
	}
	return true, nil
}

// saveJSONFile replaces dir/name with v, indented, through writeFileAtomic;
// what names the file in errors.
func saveJSONFile(dir, name, what string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", what, err)
	}
	if err := writeFileAtomic(dir, name, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving %s: %w", what, err)
	}
	return nil
}

// writeFileAtomic writes name in dir through a temporary file, fsync,
// rename and a directory fsync.
func writeFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := writeSynced(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmpName, filepath.Join(dir, name)); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// writeSynced writes data to f, fsyncs it and closes it; f is closed
// whatever fails.
func writeSynced(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// normalisePrefix validates p for a quarantine allow-list: valid, IPv4
// mapped addresses unmapped, host bits cleared, never /0.
func normalisePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("prefix %v is not valid", p)
	}
	p = wire.CanonicalPrefix(p)
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("prefix %v would allow everything", p)
	}
	return p, nil
}

// parsePrefixes parses CIDRs (or bare addresses, taken as host prefixes).
func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, fmt.Errorf("parsing network %q: %w", s, err)
		}
		if p, err = normalisePrefix(p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// prefixStrings sorts and deduplicates prefixes as text.
func prefixStrings(groups ...[]netip.Prefix) []string {
	var ps []netip.Prefix
	for _, g := range groups {
		ps = append(ps, g...)
	}
	ps = sortPrefixes(ps)
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

const (
	blocksFile    = "blocks.json"
	blocksVersion = 1
)

// blockRecord is the agent's durable blocklist: each revoked peer with its
// networks (normalised, sorted, as text). It lives in its own file, not in
// the quarantine record: blocks outlast every quarantine, release and
// revert, and a quarantine state file written before blocks existed stays
// loadable as it is.
type blockRecord struct {
	Version int                 `json:"version"`
	Peers   map[string][]string `json:"peers,omitempty"`
}

// clone copies b deeply.
func (b blockRecord) clone() blockRecord {
	c := blockRecord{Version: b.Version}
	if len(b.Peers) > 0 {
		c.Peers = make(map[string][]string, len(b.Peers))
		for k, v := range b.Peers {
			c.Peers[k] = slices.Clone(v)
		}
	}
	return c
}

func (b blockRecord) equal(o blockRecord) bool {
	if len(b.Peers) != len(o.Peers) {
		return false
	}
	for k, v := range b.Peers {
		w, ok := o.Peers[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// prefixes merges every peer's networks into one sorted, deduplicated
// list: what the kernel must drop.
func (b blockRecord) prefixes() ([]netip.Prefix, error) {
	var all []netip.Prefix
	for peer, ss := range b.Peers {
		for _, s := range ss {
			p, err := parseBlockPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("peer %s: %w", peer, err)
			}
			all = append(all, p)
		}
	}
	return sortPrefixes(all), nil
}

// view lists the blocks by peer, in peer order.
func (b blockRecord) view() []wire.BlockedPeer {
	if len(b.Peers) == 0 {
		return nil
	}
	out := make([]wire.BlockedPeer, 0, len(b.Peers))
	for peer, addrs := range b.Peers {
		out = append(out, wire.BlockedPeer{Peer: peer, Addresses: slices.Clone(addrs)})
	}
	slices.SortFunc(out, func(x, y wire.BlockedPeer) int { return strings.Compare(x.Peer, y.Peer) })
	return out
}

// loadBlocks reads the blocklist; a missing file is no block. Like the
// quarantine record, a file that cannot be parsed stops the agent: it
// cannot know what it must keep blocked.
func loadBlocks(dir string) (blockRecord, error) {
	path := filepath.Join(dir, blocksFile)
	var r blockRecord
	if found, err := loadJSONFile(path, "blocklist", "which peers stay blocked", &r); err != nil {
		return blockRecord{}, err
	} else if !found {
		return blockRecord{Version: blocksVersion}, nil
	}
	if r.Version != blocksVersion {
		return blockRecord{}, fmt.Errorf("parsing blocklist %s: version %d, want %d", path, r.Version, blocksVersion)
	}
	for peer := range r.Peers {
		if err := validPeerID(peer); err != nil {
			return blockRecord{}, fmt.Errorf("parsing blocklist %s: %w", path, err)
		}
	}
	if _, err := r.prefixes(); err != nil {
		return blockRecord{}, fmt.Errorf("parsing blocklist %s: %w", path, err)
	}
	return r, nil
}

// saveBlocks replaces the blocklist atomically and durably.
func saveBlocks(dir string, r blockRecord) error {
	r.Version = blocksVersion
	return saveJSONFile(dir, blocksFile, "blocklist", r)
}

// validPeerID accepts an inventory id: non-empty, printable, and free of
// whitespace, slashes and wildcards, so it can never stand for "all".
func validPeerID(id string) error {
	switch {
	case id == "":
		return errors.New("peer: an id is required")
	case len(id) > 256:
		return fmt.Errorf("peer: id of %d bytes is longer than 256", len(id))
	case !utf8.ValidString(id):
		return errors.New("peer: id is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(`/\*?[]`, r) {
			return fmt.Errorf("peer: id %q must not contain whitespace, slashes or wildcards", id)
		}
	}
	return nil
}

// parseBlockPrefix parses an address (a host prefix) or a network to
// block: IPv4-mapped addresses unmapped, host bits cleared, never /0.
func parseBlockPrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a network", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a network", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = wire.CanonicalPrefix(p)
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%q would block every address", s)
	}
	return p, nil
}

// sortPrefixes sorts and deduplicates prefixes.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}

const (
	iocFile    = "ioc.json"
	iocVersion = 1
)

// iocRecord is the agent's durable IoC blocklist: the prefixes the
// controller last told it to block (ioc_block), in wire's normal form. Like
// the peer blocks it lives in its own file and outlasts every quarantine,
// release and revert; the agent puts it back into the kernel when it
// starts (after a reboot the kernel holds nothing), so the gateway drops
// what the controller asked for even before the controller reaches it
// again.
type iocRecord struct {
	Version  int            `json:"version"`
	Prefixes []netip.Prefix `json:"prefixes,omitempty"`
}

// loadIOC reads the IoC blocklist; a missing file is an empty one. A file
// that cannot be parsed stops the agent, as a broken blocks.json does: it
// cannot know what it must keep blocked.
func loadIOC(dir string) (iocRecord, error) {
	path := filepath.Join(dir, iocFile)
	var r iocRecord
	if found, err := loadJSONFile(path, "IoC blocklist", "which remote addresses stay blocked", &r); err != nil {
		return iocRecord{}, err
	} else if !found {
		return iocRecord{Version: iocVersion}, nil
	}
	if r.Version != iocVersion {
		return iocRecord{}, fmt.Errorf("parsing IoC blocklist %s: version %d, want %d", path, r.Version, iocVersion)
	}
	for i, p := range r.Prefixes {
		if !p.IsValid() || p.Bits() == 0 {
			return iocRecord{}, fmt.Errorf("parsing IoC blocklist %s: prefixes[%d]: %v is not a prefix the agent blocks", path, i, p)
		}
	}
	// Written in normal form; normalising again costs little and keeps a
	// hand-edited file from being compared wrongly with the kernel.
	ps, err := wire.NormalizePrefixes(r.Prefixes)
	if err != nil {
		return iocRecord{}, fmt.Errorf("parsing IoC blocklist %s: %w", path, err)
	}
	r.Prefixes = ps
	return r, nil
}

// saveIOC replaces the IoC blocklist atomically and durably.
func saveIOC(dir string, r iocRecord) error {
	r.Version = iocVersion
	return saveJSONFile(dir, iocFile, "IoC blocklist", r)
}

package netfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
)

// QuarantineChain is the iptables chain Warden owns in table filter, for
// IPv4 and IPv6.
const QuarantineChain = "WARDEN-QUARANTINE"

// IPTables is the iptables backend (iptables-nft or iptables-legacy, as the
// host's alternatives select).
//
// The chain is written in one iptables-restore --noflush transaction per
// family (chain declared, which flushes it, refilled, jumps fixed, COMMIT),
// so a packet never sees a half-built quarantine, and the whole change costs
// one process per family instead of one per rule. The state is read with one
// `iptables -S` per family. go-iptables locates and checks the binaries.
type IPTables struct {
	log *slog.Logger
	ns  netns.Namespace

	mu       sync.Mutex // serialises read-compare-write; iptables itself has no compare-and-swap
	families []iptFamily
}

type iptFamily struct {
	family  Family
	cmd     string // iptables or ip6tables
	restore string // iptables-restore or ip6tables-restore
}

var _ Quarantine = (*IPTables)(nil)

// hookChains maps hooks to table filter's built-in chains.
func hookChains() map[Hook]string {
	return map[Hook]string{HookInput: "INPUT", HookOutput: "OUTPUT", HookForward: "FORWARD"}
}

// NewIPTables returns the iptables backend bound to the calling thread's
// network namespace. Close releases it.
func NewIPTables(log *slog.Logger) (*IPTables, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &IPTables{log: log.With("backend", BackendIPTables)}
	for _, f := range []struct {
		family  Family
		proto   iptables.Protocol
		restore string
	}{{IPv4, iptables.ProtocolIPv4, "iptables-restore"}, {IPv6, iptables.ProtocolIPv6, "ip6tables-restore"}} {
		// go-iptables finds the binary and checks that it runs.
		if _, err := iptables.New(iptables.IPFamily(f.proto), iptables.Timeout(5)); err != nil {
			return nil, fmt.Errorf("%w: finding %s iptables: %w", ErrUnavailable, f.family, err)
		}
		name := "iptables"
		if f.family == IPv6 {
			name = "ip6tables"
		}
		cmd, err := exec.LookPath(name)
		if err != nil {
			return nil, fmt.Errorf("%w: finding %s: %w", ErrUnavailable, name, err)
		}
		restore, err := exec.LookPath(f.restore)
		if err != nil {
			return nil, fmt.Errorf("%w: finding %s: %w", ErrUnavailable, f.restore, err)
		}
		b.families = append(b.families, iptFamily{family: f.family, cmd: cmd, restore: restore})
	}
	ns, err := netns.Current()
	if err != nil {
		return nil, err
	}
	b.ns = ns
	return b, nil
}

// Close releases the namespace handle.
func (b *IPTables) Close() error { return b.ns.Close() }

// Apply implements Quarantine. The two families are handled concurrently,
// each in its own transaction.
func (b *IPTables) Apply(ctx context.Context, spec wire.QuarantineSpec) (bool, error) {
	allow, err := allowListOf(spec)
	if err != nil {
		return false, err
	}
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	changed, err := b.rewrite(ctx, quarantineChain, "applying", func(f Family, cur iptChain) []byte {
		want := iptRules(f, allow.family(f))
		if cur.inSync(want) {
			return nil
		}
		return cur.applyScript(want)
	})
	if len(changed) > 0 {
		b.log.InfoContext(ctx, "quarantine applied", "families", changed, "allowed", len(allow.v4)+len(allow.v6), "took", time.Since(start))
	}
	return len(changed) > 0, err
}

// Remove implements Quarantine.
func (b *IPTables) Remove(ctx context.Context) (bool, error) {
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	changed, err := b.rewrite(ctx, quarantineChain, "removing", func(_ Family, cur iptChain) []byte {
		return cur.removeScript()
	})
	if len(changed) > 0 {
		b.log.InfoContext(ctx, "quarantine removed", "families", changed, "took", time.Since(start))
	}
	return len(changed) > 0, err
}

// Observe implements Quarantine.
func (b *IPTables) Observe(ctx context.Context) (State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	got, err := b.readAll(ctx, quarantineChain)
	if err != nil {
		return State{}, err
	}
	return State{Backend: BackendIPTables, IPv4: got[IPv4].observeQuarantine(IPv4), IPv6: got[IPv6].observeQuarantine(IPv6)}, nil
}

// rewrite reads spec's chain in each family, concurrently, and feeds
// iptables-restore the script that brings it where the caller wants it
// (nil: nothing to change). It returns the families it changed.
func (b *IPTables) rewrite(ctx context.Context, spec iptChainSpec, doing string, script func(f Family, cur iptChain) []byte) ([]Family, error) {
	return b.eachFamily(func(f iptFamily) (bool, error) {
		cur, err := b.read(ctx, f, spec)
		if err != nil {
			return false, err
		}
		s := script(f.family, cur)
		if s == nil {
			return false, nil
		}
		if err := b.restoreScript(ctx, f, s); err != nil {
			return false, fmt.Errorf("%s %s %s: %w", doing, f.family, spec.what, err)
		}
		return true, nil
	})
}

// readAll reads spec's chain in every family, concurrently.
func (b *IPTables) readAll(ctx context.Context, spec iptChainSpec) (map[Family]iptChain, error) {
	var mu sync.Mutex
	got := map[Family]iptChain{}
	_, err := b.eachFamily(func(f iptFamily) (bool, error) {
		cur, err := b.read(ctx, f, spec)
		if err != nil {
			return false, err
		}
		mu.Lock()
		defer mu.Unlock()
		got[f.family] = cur
		return false, nil
	})
	return got, err
}

// eachFamily runs fn for IPv4 and IPv6 concurrently (the families live in
// separate tables) and returns the families fn changed and every error.
// Each goroutine enters the bound namespace on its own thread (see run).
func (b *IPTables) eachFamily(fn func(f iptFamily) (bool, error)) ([]Family, error) {
	changed := make([]bool, len(b.families))
	errs := make([]error, len(b.families))
	var wg sync.WaitGroup
	for i, f := range b.families {
		wg.Go(func() { changed[i], errs[i] = fn(f) })
	}
	wg.Wait()
	var out []Family
	for i, f := range b.families {
		if changed[i] {
			out = append(out, f.family)
		}
	}
	return out, errors.Join(errs...)
}

// read lists one family's table holding spec's chain with a single
// `iptables -t TABLE -S`.
func (b *IPTables) read(ctx context.Context, f iptFamily, spec iptChainSpec) (iptChain, error) {
	var out bytes.Buffer
	if err := b.run(ctx, f.cmd, []string{"--wait=5", "-t", spec.table, "-S"}, nil, &out); err != nil {
		return iptChain{}, fmt.Errorf("reading %s table %s: %w", f.family, spec.table, err)
	}
	return spec.parse(out.String()), nil
}

// restoreScript feeds a generated rule set to iptables-restore on stdin.
func (b *IPTables) restoreScript(ctx context.Context, f iptFamily, script []byte) error {
	return b.run(ctx, f.restore, []string{"--wait=5", "--noflush"}, script, nil)
}

// run executes a command (argument array, no shell) in the bound namespace.
func (b *IPTables) run(ctx context.Context, path string, args []string, stdin []byte, stdout *bytes.Buffer) error {
	return b.ns.Do(func() error {
		cmd := exec.CommandContext(ctx, path, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if stdout != nil {
			cmd.Stdout = stdout
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("running %s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
}

// iptRules renders the quarantine chain exactly as `iptables -S` prints it.
func iptRules(f Family, allow []netip.Prefix) []string {
	a := "-A " + QuarantineChain
	rules := []string{a + " -i lo -j ACCEPT", a + " -o lo -j ACCEPT"}
	if f == IPv6 {
		rules = append(rules, ndRules()...)
	}
	for _, p := range allow {
		rules = append(rules, a+" -s "+p.String()+" -j ACCEPT", a+" -d "+p.String()+" -j ACCEPT")
	}
	return append(rules, a+" -j DROP")
}

// ndRules accept IPv6 neighbour solicitations and advertisements. Hop limit
// 255 proves they come from the link itself, so they cannot carry traffic to
// or from anywhere else.
func ndRules() []string {
	a := "-A " + QuarantineChain
	return []string{
		a + " -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -j ACCEPT",
		a + " -p ipv6-icmp -m icmp6 --icmpv6-type 136 -m hl --hl-eq 255 -j ACCEPT",
	}
}

// iptChainSpec names a chain Warden owns in every family: the quarantine's
// in table filter, a blocklist's in table raw.
type iptChainSpec struct {
	table string   // "filter" or "raw"
	name  string   // QuarantineChain, BlockChain or IOCChain
	hooks []string // the built-in chains whose first rule jumps to it, in script order
	what  string   // "quarantine", "blocklist" or "IoC blocklist", for errors
	// siblings are Warden's other chains in the table whose jumps may come
	// before this chain's without breaking it: chains of drops only (the
	// other blocklist's), which let nothing through that this chain would
	// drop. Without them two blocklists would each insist on being first
	// and move each other on every Set.
	siblings []string
}

// quarantineChain is jumped to from the chains of allHooks, in that order.
var quarantineChain = iptChainSpec{table: "filter", name: QuarantineChain, hooks: []string{"INPUT", "OUTPUT", "FORWARD"}, what: "quarantine"}

// iptChain is what Warden cares about in one family's table: its own chain
// and the jumps to it.
type iptChain struct {
	iptChainSpec
	exists bool
	// jumps holds, per built-in chain, the 1-based positions of the jump
	// to the chain.
	jumps map[string][]int
	// preceded holds, per built-in chain, the rules before the first jump
	// to the chain (all its rules when there is none), except jumps to
	// siblings.
	preceded map[string][]string
	// siblingsFirst holds, per built-in chain, the siblings jumped to
	// before the first jump to the chain.
	siblingsFirst map[string][]string
	// rules are the chain's rules as `iptables -S` prints them.
	rules []string
	// siblingRules are the siblings' rules, by sibling.
	siblingRules map[string][]string
}

// placed reports that a built-in chain jumps to the chain exactly once,
// with nothing before it but jumps to siblings that hold only drops.
func (ic iptChain) placed(hook string) bool {
	if len(ic.jumps[hook]) != 1 || len(ic.preceded[hook]) > 0 {
		return false
	}
	for _, sib := range ic.siblingsFirst[hook] {
		if _, bad := ic.firstNonDrop(sib); bad {
			return false
		}
	}
	return true
}

// parse reads the chain out of `iptables -S` for its table.
func (spec iptChainSpec) parse(out string) iptChain {
	ic := iptChain{iptChainSpec: spec, jumps: map[string][]int{}, preceded: map[string][]string{},
		siblingsFirst: map[string][]string{}, siblingRules: map[string][]string{}}
	pos := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		chain := fields[1]
		switch {
		case fields[0] == "-N" && chain == spec.name:
			ic.exists = true
		case fields[0] == "-A" && chain == spec.name:
			ic.rules = append(ic.rules, line)
		case fields[0] == "-A" && slices.Contains(spec.siblings, chain):
			ic.siblingRules[chain] = append(ic.siblingRules[chain], line)
		case fields[0] == "-A" && slices.Contains(spec.hooks, chain):
			pos[chain]++
			target, isJump := strings.CutPrefix(line, "-A "+chain+" -j ")
			switch {
			case isJump && target == spec.name:
				ic.jumps[chain] = append(ic.jumps[chain], pos[chain])
			case len(ic.jumps[chain]) > 0:
			case isJump && slices.Contains(spec.siblings, target):
				ic.siblingsFirst[chain] = append(ic.siblingsFirst[chain], target)
			default:
				ic.preceded[chain] = append(ic.preceded[chain], line)
			}
		}
	}
	return ic
}

// firstNonDrop returns the first rule of a sibling chain that is not a
// drop of a prefix: in a chain evaluated before ours, it could accept what
// ours would drop.
func (ic iptChain) firstNonDrop(sibling string) (string, bool) {
	for _, r := range ic.siblingRules[sibling] {
		spec := strings.TrimPrefix(r, "-A "+sibling+" ")
		if _, ok := parseDrop(spec, "-s"); ok {
			continue
		}
		if _, ok := parseDrop(spec, "-d"); ok {
			continue
		}
		return spec, true
	}
	return "", false
}

// inSync reports whether the table already holds exactly the wanted
// rules, and one jump at the top of each hook.
func (ic iptChain) inSync(want []string) bool {
	if !ic.exists || !slices.Equal(ic.rules, want) {
		return false
	}
	for _, chain := range ic.hooks {
		if !ic.placed(chain) {
			return false
		}
	}
	return true
}

// applyScript is one iptables-restore transaction that makes the chain
// hold exactly want, jumped to first from each hook (a jump already placed,
// behind siblings' only, stays). Declaring the chain creates it or flushes
// it.
func (ic iptChain) applyScript(want []string) []byte {
	var s strings.Builder
	s.WriteString("*" + ic.table + "\n:" + ic.name + " - [0:0]\n")
	for _, r := range want {
		s.WriteString(r + "\n")
	}
	for _, chain := range ic.hooks {
		if ic.placed(chain) {
			continue
		}
		for range ic.jumps[chain] {
			s.WriteString("-D " + chain + " -j " + ic.name + "\n")
		}
		s.WriteString("-I " + chain + " 1 -j " + ic.name + "\n")
	}
	s.WriteString("COMMIT\n")
	return []byte(s.String())
}

// removeScript is one transaction deleting the jumps, then the chain (which
// cannot go while a jump references it). It is nil when there is nothing of
// Warden's to remove.
func (ic iptChain) removeScript() []byte {
	var s strings.Builder
	for _, chain := range ic.hooks {
		for range ic.jumps[chain] {
			s.WriteString("-D " + chain + " -j " + ic.name + "\n")
		}
	}
	if ic.exists {
		s.WriteString("-F " + ic.name + "\n-X " + ic.name + "\n")
	}
	if s.Len() == 0 {
		return nil
	}
	return []byte("*" + ic.table + "\n" + s.String() + "COMMIT\n")
}

// observeQuarantine interprets the quarantine's chain as a FamilyState.
func (ic iptChain) observeQuarantine(f Family) FamilyState {
	fs := FamilyState{Installed: ic.exists}
	first := true
	for _, h := range allHooks() {
		jumps := ic.jumps[hookChains()[h]]
		if len(jumps) == 0 {
			continue
		}
		fs.Hooked = append(fs.Hooked, h)
		first = first && slices.Equal(jumps, []int{1})
	}
	fs.First = first && len(fs.Hooked) > 0

	a := "-A " + QuarantineChain + " "
	nd := ndRules()
	var loIn, loOut, nsol, nadv bool
	src, dst := map[netip.Prefix]string{}, map[netip.Prefix]string{}
	for i, r := range ic.rules {
		spec := strings.TrimPrefix(r, a)
		switch {
		case spec == "-i lo -j ACCEPT":
			loIn = true
		case spec == "-o lo -j ACCEPT":
			loOut = true
		case f == IPv6 && r == nd[0]:
			nsol = true
		case f == IPv6 && r == nd[1]:
			nadv = true
		case spec == "-j DROP" && i == len(ic.rules)-1:
			fs.DropsRest = true
		default:
			if p, ok := parsePrefixJump(spec, "-s", "ACCEPT"); ok {
				src[p] = spec
			} else if p, ok := parsePrefixJump(spec, "-d", "ACCEPT"); ok {
				dst[p] = spec
			} else {
				fs.Unexpected = append(fs.Unexpected, spec)
			}
		}
	}
	fs.Loopback = loIn && loOut
	fs.NeighborDiscovery = nsol && nadv
	var both []netip.Prefix
	for p, spec := range src {
		if _, ok := dst[p]; ok {
			both = append(both, p)
		} else {
			fs.Unexpected = append(fs.Unexpected, spec)
		}
	}
	for p, spec := range dst {
		if _, ok := src[p]; !ok {
			fs.Unexpected = append(fs.Unexpected, spec)
		}
	}
	slices.Sort(fs.Unexpected)
	fs.Allowed = mergePrefixes(both)
	return fs
}

// parsePrefixJump recognises "-s P -j TARGET" (dir "-s") or
// "-d P -j TARGET".
func parsePrefixJump(spec, dir, target string) (netip.Prefix, bool) {
	fields := strings.Fields(spec)
	if len(fields) != 4 || fields[0] != dir || fields[2] != "-j" || fields[3] != target {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(fields[1])
	return p, err == nil
}

package baseline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// strongSwan configuration is read from /etc/swanctl/swanctl.conf (with its
// include statements, relative to the including file, globbed) and, for
// gateways still on the stroke interface, /etc/ipsec.conf (conn sections,
// %default inherited, include statements). Only the settings the checks
// need are kept: IKE proposals (swanctl "proposals", ipsec.conf "ike"),
// CHILD proposals ("esp_proposals", "ah_proposals", "esp", "ah") and
// "aggressive". A setting assigned twice keeps its last value, as
// strongSwan does. Section templates ("conn : base { }") and ipsec.conf
// "also=" are not followed. Secrets are never read into memory beyond the
// lexer, and never into evidence.

const (
	swanctlConf = "/etc/swanctl/swanctl.conf"
	ipsecConf   = "/etc/ipsec.conf"
	swanMaxNest = 10
)

type ipsecSetting struct {
	Conn   string
	Child  string // empty for IKE-level settings
	Key    string // proposals, esp_proposals, ah_proposals, ike, esp, ah, aggressive
	Value  string
	Source string
}

func (s ipsecSetting) where() string {
	w := "connection " + s.Conn
	if s.Child != "" {
		w += " child " + s.Child
	}
	return w
}

type ipsecConfig struct {
	// Files read; none means strongSwan is not configured.
	Files      []string
	Proposals  []ipsecSetting
	Aggressive []ipsecSetting
}

func loadIPsec(root string) (*ipsecConfig, error) {
	cfg := &ipsecConfig{}
	sw := &swanctlParser{root: root, settings: map[string]ipsecSetting{}}
	if _, err := statIn(root, swanctlConf); err == nil {
		if err := sw.parseFile(swanctlConf, nil, 0); err != nil {
			return nil, err
		}
		cfg.Files = append(cfg.Files, sw.files...)
		for _, k := range slices.Sorted(maps.Keys(sw.settings)) {
			s := sw.settings[k]
			if s.Key == "aggressive" {
				cfg.Aggressive = append(cfg.Aggressive, s)
			} else {
				cfg.Proposals = append(cfg.Proposals, s)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", swanctlConf, err)
	}
	if _, err := statIn(root, ipsecConf); err == nil {
		if err := loadIPsecConf(root, cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

type swanctlParser struct {
	root     string
	files    []string
	settings map[string]ipsecSetting
}

// parseFile reads one file of strongSwan's settings syntax: "name {",
// "}", "key = value" (a value runs to the end of the line, or is a double-
// quoted string), "include pattern", # comments.
func (p *swanctlParser) parseFile(file string, sections []string, depth int) error {
	if depth > swanMaxNest {
		return fmt.Errorf("reading %s: includes nested deeper than %d", file, swanMaxNest)
	}
	data, err := readFileIn(p.root, file)
	if err != nil {
		return fmt.Errorf("reading strongSwan configuration: %w", err)
	}
	p.files = append(p.files, file)
	s := string(data)
	line := 1
	i := 0
	stack := append([]string(nil), sections...)
	base := len(sections)
	skipBlank := func() {
		for i < len(s) {
			switch s[i] {
			case '\n':
				line++
				i++
			case ' ', '\t', '\r':
				i++
			case '#':
				for i < len(s) && s[i] != '\n' {
					i++
				}
			default:
				return
			}
		}
	}
	for {
		skipBlank()
		if i >= len(s) {
			break
		}
		if s[i] == '}' {
			if len(stack) <= base {
				return fmt.Errorf("%s:%d: unexpected }", file, line)
			}
			stack = stack[:len(stack)-1]
			i++
			continue
		}
		start, startLine := i, line
		for i < len(s) && !strings.ContainsRune(" \t\r\n{}=#:", rune(s[i])) {
			i++
		}
		word := s[start:i]
		if word == "" {
			return fmt.Errorf("%s:%d: unexpected %q", file, line, s[i])
		}
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if word == "include" && i < len(s) && s[i] != '=' && s[i] != '{' {
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				end = len(s) - i
			}
			pat := strings.Trim(strings.TrimSpace(s[i:i+end]), `"`)
			i += end
			if !path.IsAbs(pat) {
				pat = path.Join(path.Dir(file), pat)
			}
			for _, inc := range globUnder(p.root, pat) {
				if err := p.parseFile(inc, stack, depth+1); err != nil {
					return err
				}
			}
			continue
		}
		if i < len(s) && s[i] == '=' {
			i++
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			var val string
			if i < len(s) && s[i] == '"' {
				i++
				var b strings.Builder
				for i < len(s) && s[i] != '"' {
					if s[i] == '\\' && i+1 < len(s) {
						i++
					}
					if s[i] == '\n' {
						line++
					}
					b.WriteByte(s[i])
					i++
				}
				if i >= len(s) {
					return fmt.Errorf("%s:%d: unterminated quoted value", file, startLine)
				}
				i++
				val = b.String()
			} else {
				end := strings.IndexByte(s[i:], '\n')
				if end < 0 {
					end = len(s) - i
				}
				val = s[i : i+end]
				if c := strings.Index(val, " #"); c >= 0 {
					val = val[:c]
				}
				i += end
			}
			p.assign(append(stack, word), strings.TrimSpace(val), fmt.Sprintf("%s:%d", file, startLine))
			continue
		}
		// A section: "name {", "name : template {", or "name" then "{" on
		// the next line.
		if i < len(s) && s[i] == ':' {
			for i < len(s) && s[i] != '{' && s[i] != '\n' {
				i++
			}
		}
		skipBlank()
		if i >= len(s) || s[i] != '{' {
			return fmt.Errorf("%s:%d: %q is neither a setting nor a section", file, startLine, word)
		}
		i++
		stack = append(stack, word)
	}
	if len(stack) != base {
		return fmt.Errorf("%s:%d: missing }", file, line)
	}
	return nil
}

// assign keeps the settings the checks read: connections.<c>.proposals,
// connections.<c>.aggressive and connections.<c>.children.<ch>.
// {esp,ah}_proposals. Everything else, secrets included, is dropped here.
func (p *swanctlParser) assign(keyPath []string, value, source string) {
	if len(keyPath) < 3 || keyPath[0] != "connections" {
		return
	}
	conn := keyPath[1]
	switch {
	case len(keyPath) == 3 && (keyPath[2] == "proposals" || keyPath[2] == "aggressive"):
		p.settings[strings.Join(keyPath, ".")] = ipsecSetting{Conn: conn, Key: keyPath[2], Value: value, Source: source}
	case len(keyPath) == 5 && keyPath[2] == "children" && (keyPath[4] == "esp_proposals" || keyPath[4] == "ah_proposals"):
		p.settings[strings.Join(keyPath, ".")] = ipsecSetting{Conn: conn, Child: keyPath[3], Key: keyPath[4], Value: value, Source: source}
	}
}

// loadIPsecConf reads the legacy stroke configuration.
func loadIPsecConf(root string, cfg *ipsecConfig) error {
	type conn struct {
		name string
		set  map[string]ipsecSetting
	}
	var conns []*conn
	byName := map[string]*conn{}
	var parse func(file string, depth int) error
	parse = func(file string, depth int) error {
		if depth > swanMaxNest {
			return fmt.Errorf("reading %s: includes nested deeper than %d", file, swanMaxNest)
		}
		data, err := readFileIn(root, file)
		if err != nil {
			return fmt.Errorf("reading strongSwan configuration: %w", err)
		}
		cfg.Files = append(cfg.Files, file)
		var cur *conn
		for n, raw := range strings.Split(string(data), "\n") {
			text := raw
			if c := strings.IndexByte(text, '#'); c >= 0 {
				text = text[:c]
			}
			if strings.TrimSpace(text) == "" {
				continue
			}
			if text[0] != ' ' && text[0] != '\t' {
				f := strings.Fields(text)
				cur = nil
				switch {
				case f[0] == "conn" && len(f) >= 2:
					if c, ok := byName[f[1]]; ok {
						cur = c
					} else {
						cur = &conn{name: f[1], set: map[string]ipsecSetting{}}
						byName[f[1]] = cur
						conns = append(conns, cur)
					}
				case f[0] == "include" && len(f) >= 2:
					pat := f[1]
					if !path.IsAbs(pat) {
						pat = path.Join(path.Dir(file), pat)
					}
					for _, inc := range globUnder(root, pat) {
						if err := parse(inc, depth+1); err != nil {
							return err
						}
					}
				}
				continue
			}
			if cur == nil {
				continue
			}
			k, v, ok := strings.Cut(strings.TrimSpace(text), "=")
			if !ok {
				continue
			}
			k = strings.TrimSpace(k)
			switch k {
			case "ike", "esp", "ah", "aggressive":
				cur.set[k] = ipsecSetting{Conn: cur.name, Key: k, Value: strings.Trim(strings.TrimSpace(v), `"`), Source: fmt.Sprintf("%s:%d", file, n+1)}
			}
		}
		return nil
	}
	if err := parse(ipsecConf, 0); err != nil {
		return err
	}
	dflt := byName["%default"]
	for _, c := range conns {
		if c.name == "%default" {
			continue
		}
		for _, k := range []string{"ike", "esp", "ah", "aggressive"} {
			s, ok := c.set[k]
			if !ok && dflt != nil {
				s, ok = dflt.set[k]
				s.Conn = c.name
			}
			if !ok {
				continue
			}
			if k == "aggressive" {
				cfg.Aggressive = append(cfg.Aggressive, s)
			} else {
				cfg.Proposals = append(cfg.Proposals, s)
			}
		}
	}
	return nil
}

// proposalTokens splits "aes128-sha1-modp1024, aes256gcm16-ecp384!" into its
// algorithm keywords, lower case, without strict flags.
func proposalTokens(v string) []string {
	var out []string
	for _, prop := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		for _, t := range strings.Split(prop, "-") {
			t = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(t)), "!")
			if t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// ipsecConfig returns the gateway's strongSwan configuration for check c;
// when it cannot be read or strongSwan is not configured, ok is false and
// done is c's result.
func (ev *evaluation) ipsecConfig(c *Check) (cfg *ipsecConfig, done Result, ok bool) {
	cfg, err := ev.ipsec.get(func() (*ipsecConfig, error) { return loadIPsec(ev.env.Root) })
	if err != nil {
		return nil, c.result(StatusError, err.Error()), false
	}
	if len(cfg.Files) == 0 {
		return nil, c.result(StatusSkip, "strongSwan is not configured ("+swanctlConf+" and "+ipsecConf+" do not exist)"), false
	}
	return cfg, Result{}, true
}

func (ev *evaluation) checkProposals(c *Check) Result {
	cfg, done, ok := ev.ipsecConfig(c)
	if !ok {
		return done
	}
	forbidden := map[string]bool{}
	for _, f := range c.ForbiddenAlgorithms {
		forbidden[strings.ToLower(f)] = true
	}
	expected := "none of: " + strings.Join(c.ForbiddenAlgorithms, ", ")
	r := c.result(StatusPass, "")
	var problems []string
	for _, p := range cfg.Proposals {
		r.Evidence = append(r.Evidence, Evidence{Source: p.Source, Value: p.Key + " = " + p.Value, Expected: expected})
		var weak []string
		for _, t := range proposalTokens(p.Value) {
			if forbidden[t] && !slices.Contains(weak, t) {
				weak = append(weak, t)
			}
		}
		if len(weak) > 0 {
			r.Status = StatusFail
			problems = append(problems, fmt.Sprintf("%s %s allows %s", p.where(), p.Key, strings.Join(weak, ", ")))
		}
	}
	switch {
	case len(problems) > 0:
		r.Message = strings.Join(problems, "; ")
	case len(cfg.Proposals) == 0:
		r.Evidence = append(r.Evidence, Evidence{Source: strings.Join(cfg.Files, ", "), Value: "no explicit proposals: strongSwan's built-in defaults apply", Expected: expected})
		r.Message = "no connection sets proposals; strongSwan's defaults apply"
	default:
		r.Message = fmt.Sprintf("%d proposal settings, none with a forbidden algorithm", len(cfg.Proposals))
	}
	return r
}

// strongSwanTrue is how strongSwan's settings parser reads a boolean.
func strongSwanTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "enabled", "1":
		return true
	}
	return false
}

func (ev *evaluation) checkAggressive(c *Check) Result {
	cfg, done, ok := ev.ipsecConfig(c)
	if !ok {
		return done
	}
	r := c.result(StatusPass, "no connection uses IKEv1 aggressive mode")
	var bad []string
	for _, a := range cfg.Aggressive {
		r.Evidence = append(r.Evidence, Evidence{Source: a.Source, Value: "aggressive = " + a.Value, Expected: "aggressive = no"})
		if strongSwanTrue(a.Value) {
			bad = append(bad, a.Conn)
		}
	}
	if len(cfg.Aggressive) == 0 {
		r.Evidence = append(r.Evidence, Evidence{Source: strings.Join(cfg.Files, ", "), Value: "aggressive not set (default no)", Expected: "aggressive = no"})
	}
	if len(bad) > 0 {
		r.Status = StatusFail
		r.Message = "IKEv1 aggressive mode (which exposes a PSK hash to offline cracking) is enabled for connection " + strings.Join(bad, ", ")
	}
	return r
}

// readWireGuard returns the gateway's WireGuard interfaces for check c;
// when they cannot be read or there are none, ok is false and done is c's
// result.
func (ev *evaluation) readWireGuard(ctx context.Context, c *Check) (ifaces []WireGuardInterface, done Result, ok bool) {
	ifaces, err := ev.wireguard.get(func() ([]WireGuardInterface, error) { return ev.env.Tunnels.WireGuard(ctx) })
	if err != nil {
		return nil, c.result(StatusError, err.Error()), false
	}
	if len(ifaces) == 0 {
		return nil, c.result(StatusSkip, "no WireGuard interface"), false
	}
	return ifaces, Result{}, true
}

func days(d time.Duration) string {
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func (ev *evaluation) checkKeyAge(ctx context.Context, c *Check) Result {
	ifaces, done, ok := ev.readWireGuard(ctx, c)
	if !ok {
		return done
	}
	maxAge := time.Duration(c.MaxKeyAge)
	expected := "key age ≤ " + days(maxAge)
	now := ev.env.Clock.Now()
	r := c.result(StatusPass, "")
	var problems []string
	for _, in := range ifaces {
		if in.KeyCreated.IsZero() {
			r.Status = worse(r.Status, StatusError)
			r.Evidence = append(r.Evidence, Evidence{Source: in.KeySource, Value: in.Name + ": key creation time unknown", Expected: expected})
			problems = append(problems, in.Name+": cannot tell when the key was created")
			continue
		}
		age := now.Sub(in.KeyCreated)
		r.Evidence = append(r.Evidence, Evidence{Source: in.KeySource, Value: fmt.Sprintf("%s: key created %s, age %s", in.Name, in.KeyCreated.UTC().Format(time.RFC3339), days(age)), Expected: expected})
		if age > maxAge {
			r.Status = worse(r.Status, StatusFail)
			problems = append(problems, fmt.Sprintf("%s: key is %s old, rotate it (max %s)", in.Name, days(age), days(maxAge)))
		}
	}
	if len(problems) > 0 {
		r.Message = strings.Join(problems, "; ")
	} else {
		r.Message = fmt.Sprintf("every WireGuard key is younger than %s", days(maxAge))
	}
	return r
}

func (ev *evaluation) checkPSK(ctx context.Context, c *Check) Result {
	ifaces, done, ok := ev.readWireGuard(ctx, c)
	if !ok {
		return done
	}
	r := c.result(StatusPass, "")
	var bad []string
	peers := 0
	for _, in := range ifaces {
		for _, p := range in.Peers {
			peers++
			src := p.Source
			if src == "" {
				src = "interface " + in.Name
			}
			v := fmt.Sprintf("%s peer %s: preshared key present", in.Name, p.PublicKey)
			if !p.HasPresharedKey {
				v = fmt.Sprintf("%s peer %s: no preshared key", in.Name, p.PublicKey)
				bad = append(bad, in.Name+" peer "+p.PublicKey)
			}
			r.Evidence = append(r.Evidence, Evidence{Source: src, Value: v, Expected: "a preshared key per peer"})
		}
	}
	return r.verdict(bad, ", ", "peers without a preshared key: ", fmt.Sprintf("all %d WireGuard peers have a preshared key", peers))
}

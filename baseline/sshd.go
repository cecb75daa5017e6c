package baseline

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
)

// The effective sshd configuration is computed the way sshd(8) computes it
// (OpenSSH 9.2, Debian 12):
//
//   - Lines are "Keyword args" or "Keyword=args"; keywords are
//     case-insensitive; arguments are split like argv_split(3) in OpenSSH:
//     double or single quotes group, a backslash escapes a quote, a
//     backslash or a space, and a # at the start of an argument starts a
//     comment.
//   - Include takes one or more glob patterns; relative ones are resolved
//     against /etc/ssh; matches are read in lexical order at the point of
//     the Include, in the Match context of the Include line; a Match inside
//     an included file lasts until the end of that file (sshd restores the
//     including file's Match state afterwards). Debian's sshd_config
//     includes /etc/ssh/sshd_config.d/*.conf on its first line, so drop-ins
//     win over the main file.
//   - For single-valued options the first value obtained is used; later
//     lines are ignored (reported as evidence, marked ignored).
//   - Match blocks run from a Match line to the next Match line or the end
//     of the file. A value set in a Match block overrides the global value
//     for the connections it matches, wherever it appears. A block that
//     matches every connection ("Match all", or "*" for every criterion,
//     e.g. "Match User *") therefore decides the value for everyone: it is
//     evaluated like a global setting, so one that weakens a setting fails
//     the check. A block with "*" and exclusions ("User *,!backup") decides
//     it for nearly everyone: both its value and the global one must pass.
//     Blocks for some users or addresses are reported as evidence without
//     changing the verdict.
//   - An option not set anywhere takes OpenSSH's compiled-in default.

// errSSHDNotConfigured means /etc/ssh/sshd_config does not exist.
var errSSHDNotConfigured = errors.New("sshd not configured")

const (
	sshdConfigPath = "/etc/ssh/sshd_config"
	sshdDir        = "/etc/ssh"
	sshdMaxDepth   = 16
)

type sshdMatch struct {
	Criteria string
	File     string
	Line     int
	// Broad: every criterion has a "*" pattern (or "Match all").
	Broad bool
	// Total: Broad with no exclusion; the block applies to every
	// connection.
	Total bool
}

func (m *sshdMatch) String() string { return "Match " + m.Criteria }

type sshdDirective struct {
	Keyword string // lower case, aliases resolved
	Args    []string
	File    string
	Line    int
	Match   *sshdMatch // nil in the global section
}

func (d *sshdDirective) source() string {
	s := fmt.Sprintf("%s:%d", d.File, d.Line)
	if d.Match != nil {
		s += fmt.Sprintf(" (inside %s at %s:%d)", d.Match, d.Match.File, d.Match.Line)
	}
	return s
}

func (d *sshdDirective) value() string {
	return strings.Join(d.Args, " ")
}

type sshdConfig struct {
	Directives []sshdDirective
}

// sshdAliases maps deprecated keywords to the option they set: they share
// one value, so the first of either wins.
var sshdAliases = map[string]string{
	"challengeresponseauthentication": "kbdinteractiveauthentication",
	"pubkeyacceptedkeytypes":          "pubkeyacceptedalgorithms",
	"hostbasedacceptedkeytypes":       "hostbasedacceptedalgorithms",
}

// sshdDefaults are OpenSSH 9.2's compiled-in values (fill_default_server_
// options) for the options a baseline is likely to check.
var sshdDefaults = map[string]string{
	"permitrootlogin":              "prohibit-password",
	"passwordauthentication":       "yes",
	"kbdinteractiveauthentication": "yes",
	"permitemptypasswords":         "no",
	"maxauthtries":                 "6",
	"maxsessions":                  "10",
	"maxstartups":                  "10:30:100",
	"logingracetime":               "120",
	"pubkeyauthentication":         "yes",
	"hostbasedauthentication":      "no",
	"ignorerhosts":                 "yes",
	"permituserenvironment":        "no",
	"x11forwarding":                "no",
	"allowtcpforwarding":           "yes",
	"allowagentforwarding":         "yes",
	"allowstreamlocalforwarding":   "yes",
	"gatewayports":                 "no",
	"permittunnel":                 "no",
	"strictmodes":                  "yes",
	"usedns":                       "no",
	"usepam":                       "no",
	"loglevel":                     "INFO",
	"clientaliveinterval":          "0",
	"clientalivecountmax":          "3",
	"ciphers":                      "",
	"macs":                         "",
	"kexalgorithms":                "",
}

// sshdValueAliases normalises option values that have two spellings.
var sshdValueAliases = map[string]map[string]string{
	"permitrootlogin": {"without-password": "prohibit-password"},
}

// loadSSHD reads the effective sshd configuration under root.
func loadSSHD(root string) (*sshdConfig, error) {
	cfg := &sshdConfig{}
	if _, err := statIn(root, sshdConfigPath); errors.Is(err, fs.ErrNotExist) {
		return nil, errSSHDNotConfigured
	}
	if err := cfg.parseFile(root, sshdConfigPath, nil, 0); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (cfg *sshdConfig) parseFile(root, file string, match *sshdMatch, depth int) error {
	if depth > sshdMaxDepth {
		return fmt.Errorf("reading %s: Include nested deeper than %d", file, sshdMaxDepth)
	}
	data, err := readFileIn(root, file)
	if err != nil {
		return fmt.Errorf("reading sshd configuration: %w", err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		keyword, args, err := splitSSHDLine(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, lineNo, err)
		}
		if keyword == "" {
			continue
		}
		kw := strings.ToLower(keyword)
		if a, ok := sshdAliases[kw]; ok {
			kw = a
		}
		switch kw {
		case "match":
			broad, total := classifyMatch(args)
			match = &sshdMatch{Criteria: strings.Join(args, " "), File: file, Line: lineNo, Broad: broad, Total: total}
		case "include":
			for _, pat := range args {
				if !strings.HasPrefix(pat, "/") {
					pat = path.Join(sshdDir, pat)
				}
				for _, inc := range globUnder(root, pat) {
					if err := cfg.parseFile(root, inc, match, depth+1); err != nil {
						return err
					}
				}
			}
		default:
			cfg.Directives = append(cfg.Directives, sshdDirective{Keyword: kw, Args: args, File: file, Line: lineNo, Match: match})
		}
	}
	return nil
}

// splitSSHDLine returns the keyword and arguments of one sshd_config line,
// or an empty keyword for blank and comment lines.
func splitSSHDLine(line string) (string, []string, error) {
	line = strings.TrimRight(line, " \t\r\n\f")
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return "", nil, nil
	}
	end := strings.IndexAny(line, " \t=")
	if end < 0 {
		return "", nil, fmt.Errorf("no argument after keyword %q", line)
	}
	keyword, rest := line[:end], strings.TrimLeft(line[end:], " \t")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t")
	}
	args, err := splitSSHDArgs(rest)
	if err != nil {
		return "", nil, err
	}
	if len(args) == 0 {
		return "", nil, fmt.Errorf("no argument after keyword %q", keyword)
	}
	return keyword, args, nil
}

// splitSSHDArgs splits arguments the way OpenSSH's argv_split does with
// comments terminating the line.
func splitSSHDArgs(s string) ([]string, error) {
	var args []string
	i := 0
	for i < len(s) {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		if s[i] == '#' {
			break
		}
		var arg strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"' || s[i+1] == '\\' || (quote == 0 && s[i+1] == ' ')):
				i++
				arg.WriteByte(s[i])
				continue
			case quote == 0 && (c == ' ' || c == '\t'):
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				continue
			case quote != 0 && c == quote:
				quote = 0
				continue
			default:
				arg.WriteByte(c)
				continue
			}
			break
		}
		if quote != 0 {
			return nil, errors.New("unterminated quote")
		}
		args = append(args, arg.String())
	}
	return args, nil
}

// classifyMatch says whether a Match line's criteria cover every connection
// (broad), and whether without exclusions (total).
func classifyMatch(args []string) (broad, total bool) {
	var toks []string
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if ok && k != "" {
			toks = append(toks, k, v)
		} else {
			toks = append(toks, a)
		}
	}
	if len(toks) == 1 && strings.EqualFold(toks[0], "all") {
		return true, true
	}
	if len(toks) == 0 || len(toks)%2 != 0 {
		return false, false
	}
	broad, total = true, true
	for i := 0; i < len(toks); i += 2 {
		crit, pats := strings.ToLower(toks[i]), strings.Split(toks[i+1], ",")
		switch crit {
		case "user", "group", "host", "address", "localaddress", "localport", "rdomain":
		default:
			return false, false
		}
		star, neg := false, false
		v4all, v6all := false, false
		for _, p := range pats {
			switch {
			case strings.HasPrefix(p, "!"):
				neg = true
			case p == "*":
				star = true
			case p == "0.0.0.0/0":
				v4all = true
			case p == "::/0":
				v6all = true
			}
		}
		if (crit == "address" || crit == "localaddress") && v4all && v6all {
			star = true
		}
		if !star {
			return false, false
		}
		if neg {
			total = false
		}
	}
	return broad, total
}

// sshdOption gathers what the configuration says about one option.
type sshdOption struct {
	global   []*sshdDirective // in file order; the first is used
	broad    *sshdDirective   // first value in a block matching everyone
	scoped   []*sshdDirective // first value in each narrower Match block
	inMatch  bool
	fallback string // compiled-in default
	hasDflt  bool
}

func (cfg *sshdConfig) option(kw string) sshdOption {
	var o sshdOption
	seenBlock := map[*sshdMatch]bool{}
	for i := range cfg.Directives {
		d := &cfg.Directives[i]
		if d.Keyword != kw {
			continue
		}
		if d.Match == nil {
			o.global = append(o.global, d)
			continue
		}
		o.inMatch = true
		if seenBlock[d.Match] {
			continue
		}
		seenBlock[d.Match] = true
		if d.Match.Broad && o.broad == nil {
			o.broad = d
		} else {
			o.scoped = append(o.scoped, d)
		}
	}
	o.fallback, o.hasDflt = sshdDefaults[kw]
	return o
}

// sshdValue is one value sshd would use, with where it came from.
type sshdValue struct {
	value  string
	source string
}

// applied lists the values that decide the option for (nearly) every
// connection.
func (o sshdOption) applied(kw string) []sshdValue {
	var globalOrDefault []sshdValue
	switch {
	case len(o.global) > 0:
		globalOrDefault = []sshdValue{{o.global[0].value(), o.global[0].source()}}
	case o.hasDflt:
		globalOrDefault = []sshdValue{{o.fallback, "OpenSSH default (not set in " + sshdConfigPath + " or its includes)"}}
	default:
		globalOrDefault = []sshdValue{{"", "not set in " + sshdConfigPath + " or its includes, and no known default"}}
	}
	if o.broad == nil {
		return globalOrDefault
	}
	out := []sshdValue{{o.broad.value(), o.broad.source()}}
	if !o.broad.Match.Total {
		out = append(out, globalOrDefault...)
	}
	return out
}

func normaliseSSHDValue(kw, v string) string {
	v = strings.ToLower(v)
	if a, ok := sshdValueAliases[kw][v]; ok {
		return a
	}
	return v
}

func (ev *evaluation) checkSSHD(c *Check) Result {
	cfg, err := ev.sshd.get(func() (*sshdConfig, error) { return loadSSHD(ev.env.Root) })
	if errors.Is(err, errSSHDNotConfigured) {
		return c.result(StatusSkip, sshdConfigPath+" does not exist: sshd is not configured on this host")
	}
	if err != nil {
		return c.result(StatusError, err.Error())
	}
	kw := strings.ToLower(c.Option)
	if a, ok := sshdAliases[kw]; ok {
		kw = a
	}
	opt := cfg.option(kw)
	if len(c.AllowedAlgorithms) > 0 {
		return checkSSHDAlgorithms(c, kw, opt)
	}
	expected := c.Expect.describe()
	r := c.result(StatusPass, "")
	var problems []string
	judged := map[string]bool{}
	for _, v := range opt.applied(kw) {
		r.Evidence = append(r.Evidence, Evidence{Source: v.source, Value: v.value, Expected: expected})
		judged[v.source] = true
		if v.value == "" {
			r.Status = worse(r.Status, StatusError)
			problems = append(problems, fmt.Sprintf("%s is not set and has no known default", c.Option))
			continue
		}
		st, problem := judgeSSHDValue(c, kw, v.value, v.source)
		r.Status = worse(r.Status, st)
		if problem != "" {
			problems = append(problems, problem)
		}
	}
	// sshd parses every line, used or not, before it starts: a value its
	// parser rejects anywhere (a later, ignored line; a Match block for
	// someone else) stops sshd, which no setting elsewhere makes compliant.
	if n, ok := sshdNumbers[kw]; ok {
		for i := range cfg.Directives {
			d := &cfg.Directives[i]
			if d.Keyword != kw || judged[d.source()] {
				continue
			}
			if _, err := n.parse(firstField(d.value())); err != nil {
				r.Status = worse(r.Status, StatusFail)
				problems = append(problems, fmt.Sprintf("%s %q at %s is invalid: %v; sshd refuses to start with it even where the value is not used", c.Option, d.value(), d.source(), err))
			}
		}
	}
	if opt.broad != nil && opt.broad.Match.Total && len(opt.global) > 0 {
		d := opt.global[0]
		r.Evidence = append(r.Evidence, Evidence{Source: d.source() + " (overridden for every connection by " + opt.broad.Match.String() + ")", Value: d.value(), Expected: expected})
	}
	for _, d := range opt.global[min(1, len(opt.global)):] {
		r.Evidence = append(r.Evidence, Evidence{Source: d.source() + " (ignored: an earlier value wins)", Value: d.value(), Expected: expected})
	}
	var narrower []string
	for _, d := range opt.scoped {
		r.Evidence = append(r.Evidence, Evidence{Source: d.source(), Value: d.value(), Expected: expected})
		if st, _ := judgeSSHDValue(c, kw, d.value(), d.source()); st != StatusPass {
			narrower = append(narrower, fmt.Sprintf("%s %q for %s", c.Option, d.value(), d.Match))
		}
	}
	switch {
	case len(problems) > 0:
		r.Message = strings.Join(problems, "; ")
	default:
		r.Message = fmt.Sprintf("%s is %s for every connection", c.Option, expected)
	}
	if len(narrower) > 0 {
		r.Message += "; note, set only for some connections: " + strings.Join(narrower, "; ")
	}
	return r
}

// judgeSSHDValue judges one value sshd would use for the check's option.
// Numeric options sshd knows are parsed as sshd parses them: a value its
// parser rejects (sshd refuses to start) or that leaves sshd unusable is
// invalid, which fails the check whatever the bounds say. An upper bound
// alone would otherwise take "MaxAuthTries 0" or "-1" as compliant.
func judgeSSHDValue(c *Check, kw, value, source string) (Status, string) {
	expected := c.Expect.describe()
	if n, ok := sshdNumbers[kw]; ok && len(c.OneOf) == 0 {
		v, err := n.parse(firstField(value))
		switch {
		case err != nil:
			return StatusFail, fmt.Sprintf("%s %q at %s is invalid: %v; sshd refuses to start with it", c.Option, value, source, err)
		case v < n.min:
			return StatusFail, fmt.Sprintf("%s %q at %s is invalid: %s", c.Option, value, source, n.unusable)
		case !c.Expect.acceptsInt(v):
			return StatusFail, fmt.Sprintf("%s is %q (%s), want %s", c.Option, value, source, expected)
		}
		return StatusPass, ""
	}
	ok, err := c.Expect.accepts(normaliseSSHDValue(kw, firstField(value)), true)
	if err != nil {
		return StatusError, fmt.Sprintf("%s at %s: %v", c.Option, source, err)
	}
	if !ok {
		return StatusFail, fmt.Sprintf("%s is %q (%s), want %s", c.Option, value, source, expected)
	}
	return StatusPass, ""
}

// sshdNumber says how sshd (OpenSSH 9.2 servconf.c) reads a numeric option
// and which parsed values still leave it usable.
type sshdNumber struct {
	// time: convtime ("90", "2m", "1h30m"); otherwise an integer from 0 to
	// INT_MAX (strtonum).
	time bool
	// min is the smallest usable value; unusable says what a smaller one
	// (accepted by the parser) does.
	min      int
	unusable string
}

// sshdNumbers are the numeric options a baseline is likely to bound.
var sshdNumbers = map[string]sshdNumber{
	// auth2.c counts failures from the first request: with 0, the
	// initial "none" request already reaches the limit.
	"maxauthtries":        {min: 1, unusable: "with 0 sshd disconnects every client before any authentication method is tried"},
	"maxsessions":         {},
	"clientalivecountmax": {},
	"clientaliveinterval": {time: true},
	"logingracetime":      {time: true},
}

// parse reads a value the way sshd does; an error is what makes sshd
// refuse the configuration.
func (n sshdNumber) parse(s string) (int, error) {
	if n.time {
		return convtime(s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not an integer", s)
	case v < 0:
		return 0, fmt.Errorf("%d is negative", v)
	case v > math.MaxInt32:
		return 0, fmt.Errorf("%d is too large", v)
	}
	return int(v), nil
}

// convtime is OpenSSH's convtime: a sequence of non-negative numbers, each
// optionally followed by s, m, h, d or w (either case), summed in seconds.
func convtime(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing time value")
	}
	bad := fmt.Errorf("%q is not a time value", s)
	total := int64(0)
	for i := 0; i < len(s); {
		j := i
		if s[j] == '+' {
			j++
		}
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k == j {
			return 0, bad // no digits, or a sign other than +
		}
		v, err := strconv.ParseInt(s[j:k], 10, 64)
		if err != nil {
			return 0, bad
		}
		mult := int64(1)
		if k < len(s) {
			switch s[k] {
			case 's', 'S':
			case 'm', 'M':
				mult = 60
			case 'h', 'H':
				mult = 3600
			case 'd', 'D':
				mult = 86400
			case 'w', 'W':
				mult = 604800
			default:
				return 0, bad
			}
			k++
		}
		if v > math.MaxInt32/mult || total+v*mult > math.MaxInt32 {
			return 0, fmt.Errorf("%q is too large", s)
		}
		total += v * mult
		i = k
	}
	return int(total), nil
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

// describe renders what an Expect accepts.
func (e Expect) describe() string {
	switch {
	case len(e.OneOf) == 1:
		return e.OneOf[0]
	case len(e.OneOf) > 1:
		return "one of " + strings.Join(e.OneOf, ", ")
	case e.Max != nil && e.Min != nil:
		return fmt.Sprintf("between %d and %d", *e.Min, *e.Max)
	case e.Max != nil:
		return fmt.Sprintf("≤ %d", *e.Max)
	case e.Min != nil:
		return fmt.Sprintf("≥ %d", *e.Min)
	}
	return "anything"
}

// accepts reports whether v is acceptable; fold compares case-insensitively.
func (e Expect) accepts(v string, fold bool) (bool, error) {
	if len(e.OneOf) > 0 {
		for _, want := range e.OneOf {
			if v == want || (fold && strings.EqualFold(v, want)) {
				return true, nil
			}
		}
		return false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return false, fmt.Errorf("%q is not an integer", v)
	}
	return e.acceptsInt(n), nil
}

// acceptsInt reports whether n is within the bounds.
func (e Expect) acceptsInt(n int) bool {
	return (e.Max == nil || n <= *e.Max) && (e.Min == nil || n >= *e.Min)
}

// sshAlgorithmDefaults are OpenSSH 9.2p1's server defaults as Debian 12
// builds them (myproposal.h, with Debian's sntrup761x25519-sha512 alias),
// against which "+", "-" and "^" lists are resolved. Newer OpenSSH
// releases change these lists; the effective list is what is judged, so a
// gateway on another release that relies on defaults may be judged against
// the wrong list, and should set the option explicitly.
var sshAlgorithmDefaults = map[string][]string{
	"ciphers": {
		"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
		"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
	},
	"macs": {
		"umac-64-etm@openssh.com", "umac-128-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
		"hmac-sha2-512-etm@openssh.com", "hmac-sha1-etm@openssh.com", "umac-64@openssh.com",
		"umac-128@openssh.com", "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1",
	},
	"kexalgorithms": {
		"sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com", "curve25519-sha256",
		"curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
		"diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
		"diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256",
	},
}

// resolveAlgorithms computes the list sshd enables from a configured value
// (kex_assemble_names): empty means the defaults; "+list" appends to them,
// "-patterns" removes every default matching a pattern (wildcards * and ?,
// negation with !), "^list" puts the list first; anything else replaces
// the defaults. Duplicates are dropped. Names sshd does not support make it
// refuse to start; they are kept here, so they fail an allowed list.
func resolveAlgorithms(spec string, defaults []string) []string {
	add := func(out []string, names ...string) []string {
		for _, n := range names {
			if n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return slices.Clone(defaults)
	}
	list := func(s string) []string { return strings.Split(strings.ToLower(s), ",") }
	switch spec[0] {
	case '+':
		return add(add(nil, defaults...), list(spec[1:])...)
	case '-':
		var out []string
		for _, d := range defaults {
			if matchPatternList(d, strings.ToLower(spec[1:])) != 1 {
				out = add(out, d)
			}
		}
		return out
	case '^':
		return add(add(nil, list(spec[1:])...), defaults...)
	}
	return add(nil, list(spec)...)
}

// matchPatternList is OpenSSH's match_pattern_list: 1 when a positive
// pattern matches and no negated one does, -1 when a negated one matches,
// 0 otherwise.
func matchPatternList(s, patterns string) int {
	got := 0
	for _, p := range strings.Split(patterns, ",") {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if wildcardMatch(p, s) {
			if neg {
				return -1
			}
			got = 1
		}
	}
	return got
}

// wildcardMatch matches s against a pattern of literal characters, * (any
// run) and ? (one character).
func wildcardMatch(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if wildcardMatch(p, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return s == ""
}

func checkSSHDAlgorithms(c *Check, kw string, opt sshdOption) Result {
	allowed := make(map[string]bool, len(c.AllowedAlgorithms))
	for _, a := range c.AllowedAlgorithms {
		allowed[strings.ToLower(a)] = true
	}
	expected := "only: " + strings.Join(c.AllowedAlgorithms, ",")
	r := c.result(StatusPass, "")
	if opt.inMatch {
		for _, d := range append(opt.scoped, opt.broad) {
			if d != nil {
				r.Evidence = append(r.Evidence, Evidence{Source: d.source(), Value: d.value(), Expected: "not inside a Match block"})
			}
		}
		r.Status = StatusError
		r.Message = fmt.Sprintf("%s is not allowed inside a Match block: sshd refuses to start with this configuration", c.Option)
		return r
	}
	spec, source := "", "OpenSSH 9.2 default (not set in "+sshdConfigPath+" or its includes)"
	if len(opt.global) > 0 {
		spec, source = opt.global[0].value(), opt.global[0].source()
	}
	effective := resolveAlgorithms(spec, sshAlgorithmDefaults[kw])
	value := strings.Join(effective, ",")
	if spec != "" && spec != value {
		value = fmt.Sprintf("%s (configured %q)", value, spec)
	}
	r.Evidence = append(r.Evidence, Evidence{Source: source, Value: value, Expected: expected})
	for _, d := range opt.global[min(1, len(opt.global)):] {
		r.Evidence = append(r.Evidence, Evidence{Source: d.source() + " (ignored: an earlier value wins)", Value: d.value(), Expected: expected})
	}
	var bad []string
	for _, a := range effective {
		if !allowed[a] {
			bad = append(bad, a)
		}
	}
	return r.verdict(bad, ", ", c.Option+" enables algorithms outside the allowed list: ", c.Option+" enables only allowed algorithms")
}

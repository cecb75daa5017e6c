package intake

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// This file reads STIX 2.1 patterns (STIX 2.1 part 9, "STIX Patterning";
// the grammar is oasis-open/cti-stix2-json-schemas pattern_grammar/
// STIXPattern.g4). The whole grammar is parsed, so that a pattern Warden
// cannot use is told apart from one that is not a pattern; then the parse
// tree is reduced to the addresses and names it matches, for the subset
// that says "traffic with these addresses":
//
//   - observation expressions [ … ] joined by OR (and parenthesised);
//   - comparison expressions joined by OR, and by AND where every side is
//     about the same object (see andSets);
//   - comparisons = (or ==), IN and ISSUBSET on ipv4-addr:value,
//     ipv6-addr:value, domain-name:value and network-traffic:dst_ref.value
//     / src_ref.value, and = or IN on network-traffic:dst_ref.type /
//     src_ref.type.
//
// Everything else is refused as unsupported, naming the construct: AND and
// FOLLOWEDBY between observations (a block cannot wait for a second
// observation), qualifiers (WITHIN, REPEATS, START … STOP: a block cannot
// count or wait), negations, ordering comparisons, LIKE, MATCHES,
// ISSUPERSET, EXISTS, other objects and properties (a port or protocol
// would narrow the block, which drops all traffic with the address).

// maxPatternLen bounds a pattern, and with it the work of reducing it.
const maxPatternLen = 64 << 10

// maxPatternDepth bounds the nesting of parentheses and brackets.
const maxPatternDepth = 64

// PatternError is why a STIX pattern is refused.
type PatternError struct {
	// Offset is the byte offset in the pattern of the construct at fault.
	Offset int
	// Unsupported is true for a valid pattern that uses what Warden does
	// not support, false for a malformed one.
	Unsupported bool
	// Msg names the construct or the syntax error.
	Msg string
}

func (e *PatternError) Error() string {
	if e.Unsupported {
		return fmt.Sprintf("unsupported: %s (at offset %d)", e.Msg, e.Offset)
	}
	return fmt.Sprintf("malformed pattern at offset %d: %s", e.Offset, e.Msg)
}

func malformed(off int, format string, args ...any) *PatternError {
	return &PatternError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func unsupported(off int, format string, args ...any) *PatternError {
	return &PatternError{Offset: off, Unsupported: true, Msg: fmt.Sprintf(format, args...)}
}

// PatternTargets is what a supported pattern matches: addresses and
// networks (masked, sorted IPv4 first, each once) and domain names (lower
// case, sorted, each once). At least one of the two is set.
type PatternTargets struct {
	Prefixes []netip.Prefix
	Domains  []string
}

// ParseSTIXPattern parses a STIX 2.1 pattern and returns the addresses and
// names it matches. A pattern that is not valid STIX patterning is a
// *PatternError "malformed pattern at offset N: …"; a valid one that uses a
// construct outside the supported subset (see the comment at the top of
// this file) is a *PatternError "unsupported: …" naming it.
func ParseSTIXPattern(pattern string) (PatternTargets, error) {
	if len(pattern) > maxPatternLen {
		return PatternTargets{}, malformed(maxPatternLen, "longer than %d bytes", maxPatternLen)
	}
	toks, err := lexPattern(pattern)
	if err != nil {
		return PatternTargets{}, err
	}
	p := &patternParser{toks: toks}
	tree, err := p.pattern()
	if err != nil {
		return PatternTargets{}, err
	}
	set, err := observationTargets(tree)
	if err != nil {
		return PatternTargets{}, err
	}
	if set.anyOff >= 0 {
		return PatternTargets{}, unsupported(set.anyOff, "a type test alone names no address (it matches every address of the type)")
	}
	return PatternTargets{Prefixes: sortedPrefixes(set.prefixes), Domains: sortedUnique(set.domains)}, nil
}

// --- lexing ---

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokPunct
	tokOp
	tokKeyword
	tokBool
	tokIdent       // [a-zA-Z_][a-zA-Z0-9_]*
	tokIdentHyphen // [a-zA-Z_][a-zA-Z0-9_-]* with a hyphen
	tokString
	tokIntPos
	tokIntNeg
	tokFloatPos
	tokFloatNeg
	tokTimestamp
	tokHex
	tokBinary
)

var tokenNames = map[tokenKind]string{
	tokEOF: "end of pattern", tokString: "string", tokIntPos: "integer", tokIntNeg: "integer",
	tokFloatPos: "float", tokFloatNeg: "float", tokTimestamp: "timestamp", tokHex: "hex literal",
	tokBinary: "binary literal", tokBool: "boolean", tokIdent: "identifier", tokIdentHyphen: "identifier",
}

type token struct {
	kind tokenKind
	// text is the token as written; for a string, val is its value with
	// the escapes resolved.
	text, val string
	off       int
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of pattern"
	case tokPunct, tokOp, tokKeyword:
		return "'" + t.text + "'"
	}
	return fmt.Sprintf("%s %s", tokenNames[t.kind], clip(t.text, 40))
}

// patternKeywords are STIX 2.1's keywords, upper case only (true and false
// lower case); LAST is reserved.
var patternKeywords = []string{"AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET",
	"EXISTS", "LAST", "IN", "START", "STOP", "SECONDS", "WITHIN", "REPEATS", "TIMES"}

// lexPattern cuts a pattern into tokens, skipping white space and comments.
func lexPattern(s string) ([]token, error) {
	out := make([]token, 0, 16)
	i := 0
	for {
		i = skipPatternSpace(s, i)
		if i < 0 {
			return nil, malformed(len(s), "unterminated comment")
		}
		if i >= len(s) {
			return append(out, token{kind: tokEOF, off: len(s)}), nil
		}
		t, err := lexToken(s, i)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		i += len(t.text)
	}
}

// skipPatternSpace skips the grammar's white space and comments from i;
// -1 for a comment that does not end.
func skipPatternSpace(s string, i int) int {
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return -1
			}
			i += 2 + end + 2
		case strings.HasPrefix(s[i:], "//"):
			end := strings.IndexAny(s[i:], "\r\n")
			if end < 0 {
				return len(s)
			}
			i += end
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if !isPatternSpace(r) {
				return i
			}
			i += n
		}
	}
	return i
}

// isPatternSpace is the grammar's WS rule.
func isPatternSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\r', '\n', '\v', '\f', 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

func lexToken(s string, i int) (token, error) {
	c := s[i]
	tok := func(k tokenKind, n int) (token, error) { return token{kind: k, text: s[i : i+n], off: i}, nil }
	switch {
	case strings.ContainsRune("[]():,.*", rune(c)) && !(c == '.' && i+1 < len(s) && isDigit(s[i+1])):
		return tok(tokPunct, 1)
	case c == '=' || c == '!' || c == '<' || c == '>':
		for _, op := range []string{"==", "!=", "<>", "<=", ">=", "=", "<", ">"} {
			if strings.HasPrefix(s[i:], op) {
				return tok(tokOp, len(op))
			}
		}
		return token{}, malformed(i, "unexpected character '!'")
	case c == '\'':
		return lexString(s, i)
	case (c == 't' || c == 'h' || c == 'b') && i+1 < len(s) && s[i+1] == '\'':
		return lexTypedLiteral(s, i)
	case isIdentStart(c):
		return lexWord(s, i)
	case c == '+' || c == '-' || c == '.' || isDigit(c):
		return lexNumber(s, i)
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return token{}, malformed(i, "unexpected character %q", r)
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) || c == '-' }

// lexWord reads an identifier, a keyword or a boolean.
func lexWord(s string, i int) (token, error) {
	j := i + 1
	for j < len(s) && isIdentPart(s[j]) {
		j++
	}
	w := s[i:j]
	t := token{kind: tokIdent, text: w, off: i}
	switch {
	case slices.Contains(patternKeywords, w):
		t.kind = tokKeyword
	case w == "true" || w == "false":
		t.kind = tokBool
	case strings.Contains(w, "-"):
		t.kind = tokIdentHyphen
	}
	return t, nil
}

// lexString reads a string literal: quoted with ', in which only \' and \\
// are escapes.
func lexString(s string, i int) (token, error) {
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\'':
			return token{kind: tokString, text: s[i : j+1], val: b.String(), off: i}, nil
		case '\\':
			if j+1 < len(s) && (s[j+1] == '\'' || s[j+1] == '\\') {
				b.WriteByte(s[j+1])
				j++
				continue
			}
			return token{}, malformed(j, `invalid escape in string (only \' and \\ are escapes)`)
		default:
			b.WriteByte(s[j])
		}
	}
	return token{}, malformed(i, "unterminated string")
}

// lexTypedLiteral reads t'…' (timestamp), h'…' (hex) or b'…' (base64).
func lexTypedLiteral(s string, i int) (token, error) {
	end := strings.IndexByte(s[i+2:], '\'')
	if end < 0 {
		return token{}, malformed(i, "unterminated %c'…' literal", s[i])
	}
	body := s[i+2 : i+2+end]
	t := token{text: s[i : i+3+end], off: i}
	switch s[i] {
	case 't':
		t.kind = tokTimestamp
		if !patternTimestampOK(body) {
			return token{}, malformed(i, "invalid timestamp t'%s' (want t'YYYY-MM-DDTHH:MM:SS[.s]Z')", clip(body, 40))
		}
	case 'h':
		t.kind = tokHex
		if len(body)%2 != 0 || strings.Trim(body, "0123456789abcdefABCDEF") != "" {
			return token{}, malformed(i, "invalid hex literal h'%s'", clip(body, 40))
		}
	case 'b':
		t.kind = tokBinary
		if !base64LiteralOK(body) {
			return token{}, malformed(i, "invalid binary literal b'%s'", clip(body, 40))
		}
	}
	return t, nil
}

// patternTimestampOK checks the grammar's TimestampLiteral body.
func patternTimestampOK(b string) bool {
	if len(b) < 20 || b[len(b)-1] != 'Z' {
		return false
	}
	const layout = "dddd-dd-ddTdd:dd:dd"
	for k := range len(layout) {
		if layout[k] == 'd' && !isDigit(b[k]) || layout[k] != 'd' && layout[k] != b[k] {
			return false
		}
	}
	frac := b[len(layout) : len(b)-1]
	if frac != "" && (frac[0] != '.' || len(frac) == 1 || strings.Trim(frac[1:], "0123456789") != "") {
		return false
	}
	two := func(k int) int { return int(b[k]-'0')*10 + int(b[k+1]-'0') }
	month, day, hour, minute, second := two(5), two(8), two(11), two(14), two(17)
	return month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && minute <= 59 && second <= 60
}

// base64LiteralOK checks the grammar's BinaryLiteral body: one or more
// groups of four base64 characters, the last padded with = or ==.
func base64LiteralOK(b string) bool {
	if b == "" || len(b)%4 != 0 {
		return false
	}
	body := strings.TrimSuffix(strings.TrimSuffix(b, "="), "=")
	for k := range len(body) {
		c := body[k]
		if !(isIdentStart(c) && c != '_' || isDigit(c) || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// lexNumber reads an integer or a float: [+-]?(0|[1-9][0-9]*) or
// [+-]?[0-9]*.[0-9]+.
func lexNumber(s string, i int) (token, error) {
	j := i
	neg := s[j] == '-'
	if s[j] == '+' || s[j] == '-' {
		j++
	}
	digits := j
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	intPart := s[digits:j]
	if j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]) {
		j++
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		kind := tokFloatPos
		if neg {
			kind = tokFloatNeg
		}
		return token{kind: kind, text: s[i:j], off: i}, nil
	}
	if intPart == "" {
		return token{}, malformed(i, "unexpected character %q", s[i])
	}
	if len(intPart) > 1 && intPart[0] == '0' {
		return token{}, malformed(i, "integer %s has a leading zero", intPart)
	}
	kind := tokIntPos
	if neg {
		kind = tokIntNeg
	}
	return token{kind: kind, text: s[i:j], off: i}, nil
}

// --- parsing ---

// obsNode is an observation expression of the parse tree.
type obsNode struct {
	off int
	// op is "OR", "AND" or "FOLLOWEDBY" joining left and right; "[]" for
	// a comparison expression in brackets (cmp); a qualifier keyword
	// ("WITHIN", "REPEATS", "START") applied to left.
	op          string
	left, right *obsNode
	cmp         *cmpNode
}

// cmpNode is a comparison expression of the parse tree.
type cmpNode struct {
	off int
	// op is "OR" or "AND" joining left and right, or "" for a comparison.
	op          string
	left, right *cmpNode
	path        objectPath
	not         bool
	// cmpOp is "=", "!=", "<", …, "IN", "LIKE", "MATCHES", "ISSUBSET",
	// "ISSUPERSET" or "EXISTS".
	cmpOp string
	// values are the literal (one, or the members of an IN set).
	values []token
}

// objectPath is an object type and its property path: "network-traffic"
// and ["dst_ref", "value"]; index steps are "[0]" or "[*]".
type objectPath struct {
	off     int
	objType string
	props   []string
}

func (p objectPath) String() string {
	s := p.objType + ":"
	for i, c := range p.props {
		if i > 0 && !strings.HasPrefix(c, "[") {
			s += "."
		}
		s += c
	}
	return s
}

type patternParser struct {
	toks  []token
	pos   int
	depth int
}

func (p *patternParser) peek() token { return p.toks[p.pos] }

func (p *patternParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

// is reports whether the next token is the keyword, punctuation or
// operator text.
func (p *patternParser) is(text string) bool {
	t := p.peek()
	return (t.kind == tokKeyword || t.kind == tokPunct || t.kind == tokOp) && t.text == text
}

func (p *patternParser) expect(text string) (token, error) {
	if !p.is(text) {
		return token{}, p.unexpected("'" + text + "'")
	}
	return p.next(), nil
}

func (p *patternParser) unexpected(want string) *PatternError {
	t := p.peek()
	return malformed(t.off, "expected %s, got %s", want, t)
}

// enter bounds the nesting of the recursive descent.
func (p *patternParser) enter() error {
	if p.depth++; p.depth > maxPatternDepth {
		return malformed(p.peek().off, "nested deeper than %d", maxPatternDepth)
	}
	return nil
}

// pattern: observationExpressions EOF.
func (p *patternParser) pattern() (*obsNode, error) {
	n, err := p.observations()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tokEOF {
		return nil, p.unexpected("end of pattern, OR, AND or FOLLOWEDBY")
	}
	return n, nil
}

// observations: obsOr (FOLLOWEDBY obsOr)*; OR binds tighter, AND tighter
// still.
func (p *patternParser) observations() (*obsNode, error) {
	return p.obsBinary("FOLLOWEDBY", func() (*obsNode, error) {
		return p.obsBinary("OR", func() (*obsNode, error) {
			return p.obsBinary("AND", p.qualifiedObservation)
		})
	})
}

func (p *patternParser) obsBinary(op string, operand func() (*obsNode, error)) (*obsNode, error) {
	return parseBinary(p, op, operand, func(off int, l, r *obsNode) *obsNode {
		return &obsNode{off: off, op: op, left: l, right: r}
	})
}

// parseBinary parses operand (op operand)*, left-associative, joining
// with join.
func parseBinary[N any](p *patternParser, op string, operand func() (N, error), join func(off int, l, r N) N) (N, error) {
	left, err := operand()
	if err != nil {
		return left, err
	}
	for p.is(op) {
		off := p.next().off
		right, err := operand()
		if err != nil {
			return right, err
		}
		left = join(off, left, right)
	}
	return left, nil
}

// qualifiedObservation: ( '[' comparison ']' | '(' observations ')' )
// qualifier*.
func (p *patternParser) qualifiedObservation() (*obsNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	var n *obsNode
	switch t := p.peek(); {
	case p.is("["):
		p.next()
		c, err := p.comparisonOr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect("]"); err != nil {
			return nil, err
		}
		n = &obsNode{off: t.off, op: "[]", cmp: c}
	case p.is("("):
		p.next()
		inner, err := p.observations()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(")"); err != nil {
			return nil, err
		}
		n = inner
	default:
		return nil, p.unexpected("'[' or '('")
	}
	for p.is("WITHIN") || p.is("REPEATS") || p.is("START") {
		q, err := p.qualifier()
		if err != nil {
			return nil, err
		}
		n = &obsNode{off: q.off, op: q.text, left: n}
	}
	return n, nil
}

// qualifier: WITHIN (int|float) SECONDS | REPEATS int TIMES |
// START timestamp STOP timestamp.
func (p *patternParser) qualifier() (token, error) {
	q := p.next()
	want := func(kinds []tokenKind, what string) error {
		if !slices.Contains(kinds, p.peek().kind) {
			return p.unexpected(what)
		}
		p.next()
		return nil
	}
	var err error
	switch q.text {
	case "WITHIN":
		if err = want([]tokenKind{tokIntPos, tokFloatPos}, "a positive number of seconds"); err == nil {
			_, err = p.expect("SECONDS")
		}
	case "REPEATS":
		if err = want([]tokenKind{tokIntPos}, "a positive integer"); err == nil {
			_, err = p.expect("TIMES")
		}
	case "START":
		if err = want([]tokenKind{tokTimestamp}, "a timestamp t'…'"); err == nil {
			if _, err = p.expect("STOP"); err == nil {
				err = want([]tokenKind{tokTimestamp}, "a timestamp t'…'")
			}
		}
	}
	return q, err
}

// comparisonOr: comparisonAnd (OR comparisonAnd)*.
func (p *patternParser) comparisonOr() (*cmpNode, error) {
	return p.cmpBinary("OR", func() (*cmpNode, error) { return p.cmpBinary("AND", p.propTest) })
}

func (p *patternParser) cmpBinary(op string, operand func() (*cmpNode, error)) (*cmpNode, error) {
	return parseBinary(p, op, operand, func(off int, l, r *cmpNode) *cmpNode {
		return &cmpNode{off: off, op: op, left: l, right: r}
	})
}

// propTest: '(' comparisonOr ')' | EXISTS objectPath |
// objectPath NOT? operator literal.
func (p *patternParser) propTest() (*cmpNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if p.is("(") {
		p.next()
		c, err := p.comparisonOr()
		if err != nil {
			return nil, err
		}
		_, err = p.expect(")")
		return c, err
	}
	if p.is("EXISTS") {
		off := p.next().off
		path, err := p.objectPath()
		return &cmpNode{off: off, path: path, cmpOp: "EXISTS"}, err
	}
	path, err := p.objectPath()
	if err != nil {
		return nil, err
	}
	n := &cmpNode{off: path.off, path: path}
	if p.is("NOT") {
		p.next()
		n.not = true
	}
	op := p.peek()
	switch {
	case op.kind == tokOp:
		p.next()
		n.cmpOp = op.text
		if n.cmpOp == "==" {
			n.cmpOp = "="
		}
		lit, err := p.literal(n.cmpOp == "=" || n.cmpOp == "!=" || n.cmpOp == "<>")
		n.values = []token{lit}
		return n, err
	case p.is("IN"):
		p.next()
		n.cmpOp = "IN"
		n.values, err = p.setLiteral()
		return n, err
	case p.is("LIKE") || p.is("MATCHES") || p.is("ISSUBSET") || p.is("ISSUPERSET"):
		p.next()
		n.cmpOp = op.text
		if p.peek().kind != tokString {
			return nil, p.unexpected("a string")
		}
		n.values = []token{p.next()}
		return n, nil
	}
	return nil, p.unexpected("a comparison operator")
}

// objectPath: objectType ':' first ('.' step | '[' index ']')*.
func (p *patternParser) objectPath() (objectPath, error) {
	t := p.peek()
	if t.kind != tokIdent && t.kind != tokIdentHyphen {
		return objectPath{}, p.unexpected("an object type")
	}
	p.next()
	path := objectPath{off: t.off, objType: t.text}
	if _, err := p.expect(":"); err != nil {
		return objectPath{}, err
	}
	first, err := p.pathName()
	if err != nil {
		return objectPath{}, err
	}
	path.props = append(path.props, first)
	for {
		switch {
		case p.is("."):
			p.next()
			name, err := p.pathName()
			if err != nil {
				return objectPath{}, err
			}
			path.props = append(path.props, name)
		case p.is("["):
			p.next()
			idx := p.peek()
			if idx.kind != tokIntPos && idx.kind != tokIntNeg && !p.is("*") {
				return objectPath{}, p.unexpected("a list index or '*'")
			}
			p.next()
			if _, err := p.expect("]"); err != nil {
				return objectPath{}, err
			}
			path.props = append(path.props, "["+idx.text+"]")
		default:
			return path, nil
		}
	}
}

// pathName: an identifier without a hyphen, or a quoted string.
func (p *patternParser) pathName() (string, error) {
	switch t := p.peek(); t.kind {
	case tokIdent:
		p.next()
		return t.text, nil
	case tokString:
		p.next()
		return t.val, nil
	}
	return "", p.unexpected("a property name (quote names with a hyphen)")
}

// literal reads a literal; booleans only where primitive says so (= and
// !=).
func (p *patternParser) literal(primitive bool) (token, error) {
	t := p.peek()
	switch t.kind {
	case tokString, tokIntPos, tokIntNeg, tokFloatPos, tokFloatNeg, tokTimestamp, tokHex, tokBinary:
		return p.next(), nil
	case tokBool:
		if primitive {
			return p.next(), nil
		}
	}
	return token{}, p.unexpected("a literal")
}

// setLiteral: '(' ')' | '(' literal (',' literal)* ')'.
func (p *patternParser) setLiteral() ([]token, error) {
	if _, err := p.expect("("); err != nil {
		return nil, err
	}
	var out []token
	if p.is(")") {
		p.next()
		return out, nil
	}
	for {
		lit, err := p.literal(true)
		if err != nil {
			return nil, err
		}
		out = append(out, lit)
		if p.is(",") {
			p.next()
			continue
		}
		if _, err := p.expect(")"); err != nil {
			return nil, err
		}
		return out, nil
	}
}

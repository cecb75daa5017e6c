package baseline

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DebianVersion is a package version as dpkg reads it:
// [epoch:]upstream_version[-debian_revision].
type DebianVersion struct {
	Epoch    int
	Upstream string
	Revision string
}

func (v DebianVersion) String() string {
	s := v.Upstream
	if v.Epoch != 0 {
		s = strconv.Itoa(v.Epoch) + ":" + s
	}
	if v.Revision != "" {
		s += "-" + v.Revision
	}
	return s
}

// splitDebianVersion splits without judging: the epoch is what precedes the
// first colon, the revision what follows the last hyphen (dpkg's
// parseversion).
func splitDebianVersion(s string) (DebianVersion, string, error) {
	s = strings.TrimSpace(s)
	var v DebianVersion
	rest := s
	var epochErr error
	if e, after, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.Atoi(e)
		switch {
		case e == "":
			epochErr = errors.New("epoch in version is empty")
		case err != nil || strings.HasPrefix(e, "+") || strings.HasPrefix(e, "-"):
			epochErr = errors.New("epoch in version is not a non-negative number")
		default:
			v.Epoch = n
		}
		rest = after
	}
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		v.Upstream, v.Revision = rest[:i], rest[i+1:]
		if v.Revision == "" {
			return v, rest, errors.New("revision number is empty")
		}
	} else {
		v.Upstream = rest
	}
	return v, rest, epochErr
}

// ParseDebianVersion parses and validates a version the way dpkg does,
// treating its warnings (a version not starting with a digit, characters
// outside the allowed sets) as errors.
func ParseDebianVersion(s string) (DebianVersion, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return DebianVersion{}, errors.New("version string is empty")
	}
	if strings.ContainsAny(t, " \t\n") {
		return DebianVersion{}, fmt.Errorf("version %q has embedded spaces", s)
	}
	v, _, err := splitDebianVersion(t)
	if err != nil {
		return DebianVersion{}, fmt.Errorf("version %q: %w", s, err)
	}
	if v.Upstream == "" {
		return DebianVersion{}, fmt.Errorf("version %q: version number is empty", s)
	}
	if c := v.Upstream[0]; c < '0' || c > '9' {
		return DebianVersion{}, fmt.Errorf("version %q: version number does not start with a digit", s)
	}
	for _, c := range v.Upstream {
		if !isAlnum(c) && !strings.ContainsRune(".-+~:", c) {
			return DebianVersion{}, fmt.Errorf("version %q: invalid character %q in version number", s, c)
		}
	}
	for _, c := range v.Revision {
		if !isAlnum(c) && !strings.ContainsRune(".+~", c) {
			return DebianVersion{}, fmt.Errorf("version %q: invalid character %q in revision number", s, c)
		}
	}
	return v, nil
}

func isAlnum(c rune) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// CompareDebianVersions orders two versions as dpkg --compare-versions
// does: -1 if a < b, 0 if equal, 1 if a > b. Epochs compare first, then
// the upstream versions, then the revisions, each with dpkg's verrevcmp:
// alternating runs of non-digits (compared character by character, where
// ~ sorts before everything, even the end of the string, and letters sort
// before other characters) and digits (compared numerically). An invalid
// epoch counts as 0.
func CompareDebianVersions(a, b string) int {
	va, _, _ := splitDebianVersion(a)
	vb, _, _ := splitDebianVersion(b)
	return va.Compare(vb)
}

// Compare orders v against w like CompareDebianVersions.
func (v DebianVersion) Compare(w DebianVersion) int {
	switch {
	case v.Epoch > w.Epoch:
		return 1
	case v.Epoch < w.Epoch:
		return -1
	}
	if c := verrevcmp(v.Upstream, w.Upstream); c != 0 {
		return c
	}
	return verrevcmp(v.Revision, w.Revision)
}

// order is dpkg's character weight in the non-digit parts of a version.
func order(c int) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		return c
	case c == '~':
		return -1
	case c != 0:
		return c + 256
	}
	return 0
}

func verrevcmp(a, b string) int {
	at := func(s string, i int) int {
		if i < len(s) {
			return int(s[i])
		}
		return 0
	}
	isDigit := func(c int) bool { return c >= '0' && c <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(at(a, i))) || (j < len(b) && !isDigit(at(b, j))) {
			ac, bc := order(at(a, i)), order(at(b, j))
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for at(a, i) == '0' {
			i++
		}
		for at(b, j) == '0' {
			j++
		}
		for isDigit(at(a, i)) && isDigit(at(b, j)) {
			if firstDiff == 0 {
				firstDiff = at(a, i) - at(b, j)
			}
			i++
			j++
		}
		if isDigit(at(a, i)) {
			return 1
		}
		if isDigit(at(b, j)) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

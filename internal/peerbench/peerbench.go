// Package peerbench is the arithmetic and the output of `make
// bench-peers`, the side-by-side comparison of Warden with fail2ban,
// CrowdSec and Alertmanager (e2e BenchmarkPeers): where an attack crosses
// a system's threshold in the auth log, when a probe first found the
// attacker dropped after it, the median and p99 of the trials, and the
// table and JSON that report them. It does no I/O of its own beyond the
// writers it is given, so that `make test` checks it.
package peerbench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// LogLine is one line of an auth log and when the harness saw it arrive
// in the file.
type LogLine struct {
	At   time.Time
	Text string
}

// Crossing returns the arrival of the nth line (from 1) that match
// accepts: the attempt that crosses a system whose threshold is n
// matching lines. ok is false when fewer than n lines match.
func Crossing(lines []LogLine, match func(string) bool, n int) (at time.Time, ok bool) {
	if n < 1 {
		return time.Time{}, false
	}
	seen := 0
	for _, l := range lines {
		if match(l.Text) {
			seen++
			if seen == n {
				return l.At, true
			}
		}
	}
	return time.Time{}, false
}

// ProbeResult is one probe: a fresh TCP connection to the attacked port,
// sent at Sent, which Connected or was refused or timed out.
type ProbeResult struct {
	Sent      time.Time
	Connected bool
}

// ErrDroppedBeforeCrossing says a probe sent before the crossing was
// already refused: the threshold the harness assumes for the system is
// wrong, or something else dropped the attacker.
var ErrDroppedBeforeCrossing = errors.New("the attacker was dropped before the attempt crossing the threshold was logged")

// FirstDrop returns the send time of the first probe sent at or after
// crossing that did not connect and after which confirm more probes in a
// row did not connect either (a drop holds; a lone lost connection is not
// one). ok is false when there is none. A probe sent before crossing
// that did not connect is ErrDroppedBeforeCrossing. probes are in the
// order they were sent.
func FirstDrop(probes []ProbeResult, crossing time.Time, confirm int) (time.Time, bool, error) {
	for i, p := range probes {
		if p.Connected {
			continue
		}
		held := true
		for j := i + 1; j <= i+confirm; j++ {
			if j >= len(probes) || probes[j].Connected {
				held = false
				break
			}
		}
		if !held {
			continue
		}
		if p.Sent.Before(crossing) {
			return time.Time{}, false, ErrDroppedBeforeCrossing
		}
		return p.Sent, true, nil
	}
	return time.Time{}, false, nil
}

// Percentile is the p-th percentile (0 < p ≤ 100) of ds by the
// nearest-rank method (the same as loadgen.Result.Percentile); 0 without
// any.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Row is one system's figures, as bench-peers.json has them: nil where a
// figure does not apply (fail2ban takes no alerts over HTTP; Alertmanager
// drops nobody) or was not measured.
type Row struct {
	Name         string   `json:"name"`
	DropMedianMS *float64 `json:"drop_median_ms"`
	DropP99MS    *float64 `json:"drop_p99_ms"`
	IntakePerS   *float64 `json:"intake_per_s"`
	IntakeP99MS  *float64 `json:"intake_p99_ms"`
	// Note says what was measured when it is not plain (not in the JSON's
	// required fields, but kept there for a reader).
	Note string `json:"note,omitempty"`
}

// MS is d in milliseconds, for a Row.
func MS(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

// Num is v, for a Row.
func Num(v float64) *float64 { return &v }

// SetDrops fills the drop figures from the trials' times to drop.
func (r *Row) SetDrops(ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	r.DropMedianMS, r.DropP99MS = MS(Percentile(ds, 50)), MS(Percentile(ds, 99))
}

// WriteJSON writes the rows as a JSON array, one object per system.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// WriteTable writes one table of the rows: the drop median and p99, the
// intake rate and p99, and the ratios of the row named ref (Warden's)
// against each other row: how many times faster ref drops the attacker
// (the other's median over ref's) and how many times more alerts per
// second ref takes in. A figure that does not apply is "-".
func WriteTable(w io.Writer, rows []Row, ref string) error {
	var base *Row
	for i := range rows {
		if rows[i].Name == ref {
			base = &rows[i]
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tdrop median ms\tdrop p99 ms\tintake /s\tintake p99 ms\t"+ref+" drops ×faster\t"+ref+" intake ×\t")
	for _, r := range rows {
		cells := []string{r.Name, fig(r.DropMedianMS, 1), fig(r.DropP99MS, 1), fig(r.IntakePerS, 0), fig(r.IntakeP99MS, 2), "-", "-"}
		if base != nil && r.Name != ref {
			cells[5] = ratio(r.DropMedianMS, base.DropMedianMS)
			cells[6] = ratio(base.IntakePerS, r.IntakePerS)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Note != "" {
			if _, err := fmt.Fprintf(w, "  %s: %s\n", r.Name, r.Note); err != nil {
				return err
			}
		}
	}
	return nil
}

func fig(v *float64, decimals int) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.*f", decimals, *v)
}

// ratio is num/den as "12.3×", "-" when either is missing or den is 0.
func ratio(num, den *float64) string {
	if num == nil || den == nil || *den == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", *num / *den)
}

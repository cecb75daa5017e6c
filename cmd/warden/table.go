package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/warden-ir/warden/internal/textsafe"
)

// table prints rows aligned in columns for a person at a terminal. Every
// cell, header included, passes through textsafe.Line: a cell holds one
// line, and text that came from outside (alert text, artefact names,
// reasons, host replies) must not bring terminal escapes, carriage
// returns, bidi controls or tabs that shift the columns to the terminal.
// They are shown as visible escapes (\x1b, \r, \u202e) instead.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, head ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(head...)
	return t
}

// row prints one row of cells.
func (t *table) row(cells ...string) {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = textsafe.Line(c)
	}
	fmt.Fprintln(t.tw, strings.Join(out, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

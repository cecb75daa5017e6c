// Package sqlrows reads the rows of a query into a slice, the loop every
// package that lists rows of its own table would otherwise write again. It
// owns only that loop: no queries, no schema, no error wording (the scan
// function wraps its own errors).
package sqlrows

import "database/sql"

// Collect scans every row of rows with scan, in order, and closes rows. It
// stops at the first error scan returns, or returns rows.Err.
func Collect[T any](rows *sql.Rows, scan func(*sql.Rows) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

package sqlrows_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/warden-ir/warden/internal/sqlrows"
)

func TestCollect(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "rows.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3)`); err != nil {
		t.Fatal(err)
	}
	scanInt := func(rows *sql.Rows) (int, error) {
		var n int
		err := rows.Scan(&n)
		return n, err
	}
	errStop := errors.New("stop")
	tests := map[string]struct {
		query string
		scan  func(*sql.Rows) (int, error)
		want  []int
		err   error
	}{
		"every row, in order": {query: `SELECT n FROM t ORDER BY n`, scan: scanInt, want: []int{1, 2, 3}},
		"no rows is nil":      {query: `SELECT n FROM t WHERE n > 9`, scan: scanInt},
		"stops at the first error": {query: `SELECT n FROM t ORDER BY n`, scan: func(rows *sql.Rows) (int, error) {
			n, err := scanInt(rows)
			if err == nil && n == 2 {
				err = errStop
			}
			return n, err
		}, err: errStop},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rows, err := db.QueryContext(t.Context(), tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sqlrows.Collect(rows, tc.scan)
			if !errors.Is(err, tc.err) || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Collect = %v, %v; want %v, %v", got, err, tc.want, tc.err)
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("rows: %v", err)
			}
			if rows.Next() {
				t.Fatal("rows not closed")
			}
		})
	}
}

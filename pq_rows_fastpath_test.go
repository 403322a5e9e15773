package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestIgnoresErrorsMatchesOnBackendError pins what Connector.onBackendError
// does for each target_session_attrs: where the core says it ignores errors
// (onBackendError returns at once then) it leaves the connection alone
// whatever the error; where it does not, a 25006 dooms the connection and
// nothing else does. pgfast-pq hands lib/pq's rows out unwrapped (rowsFor)
// only when ignoresErrors holds.
func TestIgnoresErrorsMatchesOnBackendError(t *testing.T) {
	errs := []error{
		&pq.Error{Code: "25006", Message: "cannot execute INSERT in a read-only transaction"},
		fmt.Errorf("wrapped: %w", &pq.Error{Code: "25006"}),
		&pq.Error{Code: "57P01"},
		&pq.Error{Code: "22012"},
		io.ErrUnexpectedEOF,
		&net.OpError{Op: "read", Err: errors.New("connection reset by peer")},
		errors.New("anything"),
	}
	for _, tsa := range []string{"", "any", "read-write", "read-only", "primary", "standby", "prefer-standby"} {
		c := &Connector{cfg: &Config{TargetSessionAttrs: tsa}, book: netx.NewBook(nil)}
		k := &connectorCore{c: c}
		ignores := k.ignoresErrors()
		for _, err := range errs {
			tc := netx.NewTestSocket(nil)
			c.onBackendError(tc, err)
			var pe *pq.Error
			acts := errors.As(err, &pe) && pe.Code == "25006" && !ignores
			if netx.Doomed(tc) != acts {
				t.Errorf("target_session_attrs=%q ignoresErrors=%v: onBackendError(%v) doomed=%v", tsa, ignores, err, netx.Doomed(tc))
			}
		}
	}
}

// rawPQ runs f on one pgfast-pq connection's *PQConn (database/sql's lock
// held, as for every driver call).
func rawPQ(t *testing.T, dsn string, f func(pc *PQConn)) {
	t.Helper()
	db := openT(t, pqCase(), dsn)
	readyT(t, db, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(dc any) error { f(dc.(*PQConn)); return nil }); err != nil {
		t.Fatal(err)
	}
}

// readInts reads every row of rows (one integer column).
func readInts(t *testing.T, rows driver.Rows) []int64 {
	t.Helper()
	var got []int64
	dest := make([]driver.Value, 1)
	for {
		err := rows.Next(dest)
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, dest[0].(int64))
	}
}

// TestPQRowsUnwrappedWhenNothingToWatch: a query whose context never ends,
// outside a watched transaction, on a connector that ignores errors, gets
// lib/pq's own rows; every other query gets pgfast's wrapper.
func TestPQRowsUnwrappedWhenNothingToWatch(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	wrapped := func(r driver.Rows) bool { _, ok := r.(*pqRows); return ok }
	query := func(t *testing.T, pc *PQConn, ctx context.Context) bool {
		t.Helper()
		rows, err := pc.QueryContext(ctx, "SELECT 1", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if got := readInts(t, rows); len(got) != 1 || got[0] != 1 {
			t.Fatalf("rows: %v", got)
		}
		return wrapped(rows)
	}
	rawPQ(t, srv.DSN(pgtest.TrustUser), func(pc *PQConn) {
		if query(t, pc, context.Background()) {
			t.Error("a query with a context that never ends got the wrapper")
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if !query(t, pc, ctx) {
			t.Error("a query with a cancellable context got lib/pq's rows: its watch would never end")
		}
		tx, err := pc.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !query(t, pc, context.Background()) {
			t.Error("a query in a transaction whose context is watched got lib/pq's rows")
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if query(t, pc, context.Background()) {
			t.Error("the transaction's end did not clear its watch (txWatches)")
		}
		stmt, err := pc.PrepareContext(context.Background(), "SELECT 1")
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		rows, err := stmt.(driver.StmtQueryContext).QueryContext(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if wrapped(rows) {
			t.Error("a statement's query with a context that never ends got the wrapper")
		}
		rows.Close()
	})
	rawPQ(t, srv.DSN(pgtest.TrustUser)+" target_session_attrs=read-write", func(pc *PQConn) {
		if !query(t, pc, context.Background()) {
			t.Error("target_session_attrs=read-write: lib/pq's rows handed out, but the core acts on their errors (25006)")
		}
	})
}

// TestPQClosedRowsCannotTouchTheNextQuery: rows closed (twice), then used
// again after the next query started, change nothing for that query's rows,
// unwrapped or wrapped. (pgfast keeps no rows object across queries, so a
// stale handle is always its own query's.)
func TestPQClosedRowsCannotTouchTheNextQuery(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	for _, cancellable := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancellable=%v", cancellable), func(t *testing.T) {
			rawPQ(t, srv.DSN(pgtest.TrustUser), func(pc *PQConn) {
				ctx := context.Background()
				if cancellable {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				first, err := pc.QueryContext(ctx, "SELECT generate_series(1, 2)", nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := readInts(t, first); len(got) != 2 {
					t.Fatalf("first query: %v", got)
				}
				for i := 0; i < 2; i++ {
					if err := first.Close(); err != nil {
						t.Fatalf("Close #%d: %v", i+1, err)
					}
				}
				second, err := pc.QueryContext(ctx, "SELECT generate_series(10, 13)", nil)
				if err != nil {
					t.Fatal(err)
				}
				dest := make([]driver.Value, 1)
				if err := second.Next(dest); err != nil || dest[0].(int64) != 10 {
					t.Fatalf("second query's first row: %v, %v", dest[0], err)
				}
				// The first query's rows, used again mid-way through the second's.
				if err := first.Close(); err != nil {
					t.Fatalf("Close of the first rows during the second query: %v", err)
				}
				if err := first.Next(dest); err != io.EOF {
					t.Fatalf("Next on the first (closed) rows: %v, want io.EOF", err)
				}
				if got := readInts(t, second); fmt.Sprint(got) != "[11 12 13]" {
					t.Fatalf("second query's remaining rows: %v, want [11 12 13]", got)
				}
				if err := second.Close(); err != nil {
					t.Fatal(err)
				}
				third, err := pc.QueryContext(ctx, "SELECT 7", nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := readInts(t, third); fmt.Sprint(got) != "[7]" {
					t.Fatalf("third query: %v", got)
				}
				third.Close()
			})
		})
	}
}

// TestPQUnwrappedRowsCheckedOutAgain: through database/sql, rows closed
// twice and queries interleaved on one connection behave as on raw lib/pq.
func TestPQUnwrappedRowsCheckedOutAgain(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	for _, name := range []string{"pgfast-pq", "postgres"} {
		db := openT(t, backendCase{name: name}, srv.DSN(pgtest.TrustUser))
		db.SetMaxOpenConns(1)
		rows, err := db.Query("SELECT generate_series(1, 3)")
		if err != nil {
			t.Fatal(err)
		}
		rows.Next()
		rows.Close()
		rows.Close()
		var n int
		if err := db.QueryRow("SELECT 42").Scan(&n); err != nil || n != 42 {
			t.Fatalf("%s: next query: %d, %v", name, n, err)
		}
		if rows.Next() {
			t.Fatalf("%s: closed rows returned a row", name)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: closed rows: %v", name, err)
		}
	}
}

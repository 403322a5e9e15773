package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

func TestPQCopyInThroughWrapper(t *testing.T) {
	srv := server(t)
	db := openT(t, pqCase(), srv.DSN(pgtest.TrustUser))
	readyT(t, db, 10*time.Second)
	mustExec(t, db, "DROP TABLE IF EXISTS pq_copy_ctx")
	mustExec(t, db, "CREATE TABLE pq_copy_ctx (id int, name text)")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// database/sql with contexts everywhere.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 drop-in: code written for lib/pq uses pq.CopyIn, which must keep working
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn("pq_copy_ctx", "id", "name"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if _, err := stmt.ExecContext(ctx, i, fmt.Sprint("row", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stmt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// The driver-level API through sql.Conn.Raw: CopyData passes through.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(*PQConn)
		tx, err := pc.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			return err
		}
		//lint:ignore SA1019 drop-in: code written for lib/pq uses pq.CopyIn, which must keep working
		st, err := pc.PrepareContext(ctx, pq.CopyIn("pq_copy_ctx", "id", "name"))
		if err != nil {
			return err
		}
		cd, ok := st.(interface {
			CopyData(context.Context, string) (driver.Result, error)
		})
		if !ok {
			return fmt.Errorf("%T has no CopyData", st)
		}
		for i := 1000; i < 1010; i++ {
			if _, err := cd.CopyData(ctx, strconv.Itoa(i)+"\traw"); err != nil {
				return err
			}
		}
		if _, err := st.(driver.StmtExecContext).ExecContext(ctx, nil); err != nil {
			return err
		}
		if err := st.Close(); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM pq_copy_ctx").Scan(&n); err != nil || n != 1010 {
		t.Fatalf("count %d %v", n, err)
	}
}

func TestPQRowsMatchRawDriver(t *testing.T) {
	srv := server(t)
	db := openT(t, pqCase(), srv.DSN(pgtest.TrustUser))
	readyT(t, db, 10*time.Second)
	raw, err := sql.Open(pqCase().raw, srv.DSN(pgtest.TrustUser))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	describe := func(db *sql.DB) string {
		rows, err := db.Query("SELECT 1::int4 AS a, 'x'::varchar(10) AS b, 1.5::numeric(7,2) AS c, now() AS d, 'y'::text AS e; SELECT 2::int8 AS f")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out string
		for set := 0; ; set++ {
			cts, err := rows.ColumnTypes()
			if err != nil {
				t.Fatal(err)
			}
			for _, ct := range cts {
				l, lok := ct.Length()
				p, s, dok := ct.DecimalSize()
				nl, nok := ct.Nullable()
				out += fmt.Sprintf("[%d %s %s %v %d %v %d %d %v %v %v]", set, ct.Name(), ct.DatabaseTypeName(), ct.ScanType(), l, lok, p, s, dok, nl, nok)
			}
			for rows.Next() {
				out += "row;"
			}
			if !rows.NextResultSet() {
				break
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got, want := describe(db), describe(raw)
	if got != want {
		t.Fatalf("pgfast-pq rows:\n%s\nlib/pq rows:\n%s", got, want)
	}
	t.Log(got)
}

// newRecordingPQ opens a database/sql pool over pgfast's lib/pq adapter with a
// fake core of the test's own whose onError records.
func newRecordingPQ(t *testing.T, dsn string) (*sql.DB, *errRecorder) {
	t.Helper()
	a, cfg, err := parseDSN(LibPQ, dsn)
	if err != nil {
		t.Fatal(err)
	}
	rec := &errRecorder{}
	var d net.Dialer
	s := &fakeCore{
		cfg:        cfg,
		dialFn:     recording(d.DialContext),
		checkoutFn: netx.Checkout,
		aliveFn:    netx.Alive,
		onErrorFn:  rec.onError,
	}
	db := sql.OpenDB(a.connector(s))
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	return db, rec
}

func socketOfPool(t *testing.T, db *sql.DB) net.Conn {
	t.Helper()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var nc net.Conn
	if err := conn.Raw(func(dc any) error { nc = dc.(*PQConn).NetConn(); return nil }); err != nil {
		t.Fatal(err)
	}
	if nc == nil {
		t.Fatal("no socket recorded")
	}
	return nc
}

func TestPQErrorsReachOnError(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	db, rec := newRecordingPQ(t, srv.DSN(pgtest.TrustUser))
	mustExec(t, db, "DROP TABLE IF EXISTS pq_onerror")
	mustExec(t, db, "CREATE TABLE pq_onerror (id int PRIMARY KEY)")
	mustExec(t, db, "INSERT INTO pq_onerror VALUES (1)")
	nc := socketOfPool(t, db)
	if errs, _ := rec.snapshot(); len(errs) != 0 {
		t.Fatalf("onError told of errors where there were none: %v", errs)
	}

	wantCode := func(what, code string, callErr error) {
		t.Helper()
		var pqErr *pq.Error
		if !errors.As(callErr, &pqErr) || string(pqErr.Code) != code {
			t.Fatalf("%s: caller got %v, want *pq.Error %s", what, callErr, code)
		}
		errs, socks := rec.snapshot()
		rec.reset()
		if len(errs) != 1 {
			t.Fatalf("%s: onError told %d times (%v), want once", what, len(errs), errs)
		}
		if !errors.As(errs[0], &pqErr) || string(pqErr.Code) != code {
			t.Fatalf("%s: onError got %v, want *pq.Error %s", what, errs[0], code)
		}
		if socks[0] != nc {
			t.Fatalf("%s: onError got socket %v, want the connection's %v", what, socks[0], nc)
		}
	}

	_, err := db.Exec("INSERT INTO pq_onerror VALUES (1)")
	wantCode("unique violation (simple)", "23505", err)
	_, err = db.Exec("INSERT INTO pq_onerror VALUES ($1)", 1)
	wantCode("unique violation (extended)", "23505", err)

	// 25006, what a demoted primary answers a write with.
	tx, err := db.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec("INSERT INTO pq_onerror VALUES (2)")
	wantCode("read-only transaction", "25006", err)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	// An error met while reading rows.
	rows, err := db.Query("SELECT 1 / (3 - x) FROM generate_series(1, 5) x")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
	}
	wantCode("division by zero in rows", "22012", rows.Err())
	rows.Close()

	// A prepared statement.
	stmt, err := db.Prepare("INSERT INTO pq_onerror VALUES ($1)")
	if err != nil {
		t.Fatal(err)
	}
	_, err = stmt.Exec(1)
	wantCode("unique violation (statement)", "23505", err)
	stmt.Close()
	_, err = db.Prepare("SELECT * FROM no_such_table")
	wantCode("prepare", "42P01", err)
}

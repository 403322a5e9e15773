package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
)

// mockConnector hands out PQConn wrappers around go-sqlmock connections: a
// plumbing test of the wrapper only (behaviour is tested on a real server).
type mockConnector struct {
	inner driver.Conn
	core  *fakeCore
}

func (m *mockConnector) Connect(context.Context) (driver.Conn, error) {
	return &PQConn{inner: m.inner, sock: &net.TCPConn{}, core: m.core}, nil
}
func (m *mockConnector) Driver() driver.Driver { return nil }

func newMockPQ(t *testing.T, s *fakeCore) (*sql.DB, sqlmock.Sqlmock) {
	t.Helper()
	mdb, mock, err := sqlmock.NewWithDSN("pgfast-mock-"+t.Name(), sqlmock.MonitorPingsOption(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mdb.Close() })
	inner, err := mdb.Driver().Open("pgfast-mock-" + t.Name())
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(&mockConnector{inner: inner, core: s})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db, mock
}

func TestPQConnPassesEverythingThrough(t *testing.T) {
	db, mock := newMockPQ(t, &fakeCore{})
	mock.ExpectExec("INSERT INTO t").WithArgs(1, "a").WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectQuery("SELECT name").WithArgs(1).WillReturnRows(sqlmock.NewRows([]string{"name"}).AddRow("a"))
	mock.ExpectBegin()
	mock.ExpectExec("UPDATE t").WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	mock.ExpectPrepare("SELECT 1").ExpectQuery().WillReturnRows(sqlmock.NewRows([]string{"x"}).AddRow(1))
	mock.ExpectPing()
	wantErr := errors.New("backend error")
	mock.ExpectExec("BROKEN").WillReturnError(wantErr)

	if _, err := db.Exec("INSERT INTO t VALUES ($1, $2)", 1, "a"); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := db.QueryRow("SELECT name FROM t WHERE id = $1", 1).Scan(&name); err != nil || name != "a" {
		t.Fatalf("query: %q %v", name, err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("UPDATE t SET name = 'b'"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	stmt, err := db.Prepare("SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	var x int
	if err := stmt.QueryRow().Scan(&x); err != nil || x != 1 {
		t.Fatalf("prepared: %d %v", x, err)
	}
	stmt.Close()
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("BROKEN"); !errors.Is(err, wantErr) {
		t.Fatalf("error not passed through unchanged: %v", err)
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Fatal(err)
	}
}

func TestPQConnCheckoutHooks(t *testing.T) {
	checkouts := 0
	s := &fakeCore{
		checkoutFn: func(context.Context, net.Conn) error { checkouts++; return nil },
		aliveFn:    func(net.Conn) bool { return true },
	}
	db, mock := newMockPQ(t, s)
	mock.ExpectExec("SELECT 1").WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectExec("SELECT 2").WillReturnResult(sqlmock.NewResult(0, 0))
	for _, q := range []string{"SELECT 1", "SELECT 2"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if checkouts != 1 { // database/sql resets a connection only when it reuses it
		t.Fatalf("checkout ran %d times, want 1", checkouts)
	}

	// A dead socket at checkout: database/sql drops the connection and dials again.
	s.checkoutFn = func(context.Context, net.Conn) error { return driver.ErrBadConn }
	s.aliveFn = func(net.Conn) bool { return false }
	pc := &PQConn{inner: nil, sock: &net.TCPConn{}, core: s}
	if err := pc.ResetSession(context.Background()); !errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("ResetSession = %v", err)
	}
	if pc.IsValid() {
		t.Fatal("IsValid = true for a dead socket")
	}
}

// bareConn implements only driver.Conn, to test the fallbacks.
type bareConn struct{ prepared, begun int }

func (b *bareConn) Prepare(string) (driver.Stmt, error) {
	b.prepared++
	return nil, errors.New("prepared")
}
func (b *bareConn) Close() error              { return nil }
func (b *bareConn) Begin() (driver.Tx, error) { b.begun++; return nil, errors.New("begun") }

func TestPQConnFallbacksForMissingInterfaces(t *testing.T) {
	inner := &bareConn{}
	pc := &PQConn{inner: inner, core: &fakeCore{}}
	ctx := context.Background()
	if _, err := pc.ExecContext(ctx, "x", nil); !errors.Is(err, driver.ErrSkip) {
		t.Errorf("ExecContext: %v", err)
	}
	if _, err := pc.QueryContext(ctx, "x", nil); !errors.Is(err, driver.ErrSkip) {
		t.Errorf("QueryContext: %v", err)
	}
	if err := pc.CheckNamedValue(&driver.NamedValue{}); !errors.Is(err, driver.ErrSkip) {
		t.Errorf("CheckNamedValue: %v", err)
	}
	if err := pc.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if _, err := pc.PrepareContext(ctx, "x"); err == nil || inner.prepared != 1 {
		t.Errorf("PrepareContext did not fall back to Prepare")
	}
	if _, err := pc.BeginTx(ctx, driver.TxOptions{}); err == nil || inner.begun != 1 {
		t.Errorf("BeginTx did not fall back to Begin")
	}
	if _, err := pc.BeginTx(ctx, driver.TxOptions{ReadOnly: true}); err == nil || inner.begun != 1 {
		t.Errorf("BeginTx with options must refuse without calling Begin")
	}
	if err := pc.ResetSession(ctx); err != nil || !pc.IsValid() {
		t.Errorf("ResetSession/IsValid: %v", err)
	}
}

func TestPQConnRowsPassThroughColumnTypesAndResultSets(t *testing.T) {
	db, mock := newMockPQ(t, &fakeCore{})
	raw, err := sql.Open("sqlmock", "pgfast-mock-"+t.Name()) // database/sql directly on the same mock
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })

	defined := func() *sqlmock.Rows {
		return sqlmock.NewRowsWithColumnDefinition(
			sqlmock.NewColumn("n").OfType("NUMERIC", 1.5).WithPrecisionAndScale(7, 2).Nullable(true),
			sqlmock.NewColumn("s").OfType("VARCHAR", "").WithLength(10),
		).AddRow(1.5, "a")
	}
	plain := func() *sqlmock.Rows { return sqlmock.NewRows([]string{"x"}).AddRow(1) }

	describe := func(db *sql.DB, query string) string {
		rows, err := db.Query(query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out string
		for {
			cts, err := rows.ColumnTypes()
			if err != nil {
				t.Fatal(err)
			}
			for _, ct := range cts {
				l, lok := ct.Length()
				p, s, dok := ct.DecimalSize()
				out += fmt.Sprintf("[%s %s %v %d %v %d %d %v]", ct.Name(), ct.DatabaseTypeName(), ct.ScanType(), l, lok, p, s, dok)
				if _, ok := ct.Nullable(); ok && db != raw {
					t.Error("Nullable passed through, but lib/pq's rows do not implement it")
				}
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
	// Column types known (two result sets), then unknown (database/sql's defaults).
	for _, q := range []string{"DEFINED", "PLAIN"} {
		for range 2 {
			if q == "DEFINED" {
				mock.ExpectQuery(q).WillReturnRows(defined(), defined())
			} else {
				mock.ExpectQuery(q).WillReturnRows(plain(), plain())
			}
		}
		want, got := describe(raw, q), describe(db, q)
		if got != want {
			t.Fatalf("through PQConn:\n%s\ndirect:\n%s", got, want)
		}
		t.Log(got)
	}
}

func TestPQConnReportsEveryBackendError(t *testing.T) {
	rec := &errRecorder{}
	db, mock := newMockPQ(t, &fakeCore{onErrorFn: rec.onError})
	fail := errors.New("backend error")
	mock.ExpectExec("E").WillReturnError(fail)
	mock.ExpectQuery("Q").WillReturnError(fail)
	mock.ExpectQuery("R").WillReturnRows(sqlmock.NewRows([]string{"x"}).AddRow(1).AddRow(2).RowError(1, fail))
	mock.ExpectPrepare("P").WillReturnError(fail)
	mock.ExpectBegin().WillReturnError(fail)
	mock.ExpectBegin()
	mock.ExpectCommit().WillReturnError(fail)
	mock.ExpectExec("OK").WillReturnResult(sqlmock.NewResult(0, 1))

	if _, err := db.Exec("E"); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	if _, err := db.Query("Q"); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	rows, err := db.Query("R")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
	}
	if !errors.Is(rows.Err(), fail) {
		t.Fatal(rows.Err())
	}
	rows.Close()
	if _, err := db.Prepare("P"); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	if _, err := db.Begin(); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	if _, err := db.Exec("OK"); err != nil {
		t.Fatal(err)
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Fatal(err)
	}

	errs, socks := rec.snapshot()
	if len(errs) != 6 {
		t.Fatalf("onError told %d errors, want 6: %v", len(errs), errs)
	}
	for i, err := range errs {
		if !errors.Is(err, fail) || socks[i] == nil || socks[i] != socks[0] {
			t.Errorf("onError(%p, %v)", socks[i], err)
		}
	}
}

func TestPQConnNilSeamAndHooks(t *testing.T) {
	pc := &PQConn{inner: &bareConn{}}
	if _, err := pc.PrepareContext(context.Background(), "x"); err == nil {
		t.Fatal("want the inner error")
	}
	if err := pc.ResetSession(context.Background()); err != nil || !pc.IsValid() {
		t.Fatalf("ResetSession/IsValid without a core: %v", err)
	}
}

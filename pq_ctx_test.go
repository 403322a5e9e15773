package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// ---------------------------------------------------------------------------
// Unit tests of the context watch, on a fake backend whose calls block on a
// net.Pipe, as lib/pq blocks reading a socket from a server gone silent.

// pipeBackend is a driver.Conn (with the context interfaces lib/pq has) whose
// calls block reading sock when their query is "block" (rows: "blockrows",
// which blocks in Next). Nothing ever writes to the pipe's other end.
type pipeBackend struct {
	sock      net.Conn
	calls     atomic.Int32
	stmtCtxes []context.Context // contexts the statements were given
	mu        sync.Mutex
}

func newPipeConn(t *testing.T, s *seam) (*PQConn, *pipeBackend) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	sock := &deadlineConn{Conn: a}
	pb := &pipeBackend{sock: sock}
	if s == nil {
		s = &seam{}
	}
	return &PQConn{inner: pb, sock: sock, seam: s}, pb
}

// deadlineConn counts the deadlines set on a connection.
type deadlineConn struct {
	net.Conn
	deadlines atomic.Int32
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.Conn.SetDeadline(t)
}

func (p *pipeBackend) do(query string) error {
	p.calls.Add(1)
	if query != "block" {
		return nil
	}
	var buf [1]byte
	_, err := p.sock.Read(buf[:])
	return err
}

func (p *pipeBackend) Prepare(query string) (driver.Stmt, error) {
	return &pipeStmt{p: p, query: query}, p.do("")
}
func (p *pipeBackend) Close() error              { return nil }
func (p *pipeBackend) Begin() (driver.Tx, error) { return p, p.do("") }
func (p *pipeBackend) Commit() error             { return p.do("") }
func (p *pipeBackend) Rollback() error           { return p.do("") }
func (p *pipeBackend) BeginTx(_ context.Context, _ driver.TxOptions) (driver.Tx, error) {
	return p, p.do("")
}
func (p *pipeBackend) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return p.Prepare(query)
}
func (p *pipeBackend) Ping(context.Context) error { return p.do("") }
func (p *pipeBackend) ExecContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Result, error) {
	if err := p.do(query); err != nil {
		return nil, err
	}
	return driver.RowsAffected(1), nil
}
func (p *pipeBackend) QueryContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	if err := p.do(query); err != nil {
		return nil, err
	}
	return &pipeRows{p: p, block: query == "blockrows"}, nil
}

type pipeStmt struct {
	p     *pipeBackend
	query string
}

func (s *pipeStmt) Close() error  { return nil }
func (s *pipeStmt) NumInput() int { return -1 }
func (s *pipeStmt) Exec([]driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), nil)
}
func (s *pipeStmt) Query([]driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), nil)
}
func (s *pipeStmt) ExecContext(ctx context.Context, _ []driver.NamedValue) (driver.Result, error) {
	s.p.mu.Lock()
	s.p.stmtCtxes = append(s.p.stmtCtxes, ctx)
	s.p.mu.Unlock()
	return s.p.ExecContext(ctx, s.query, nil)
}
func (s *pipeStmt) QueryContext(ctx context.Context, _ []driver.NamedValue) (driver.Rows, error) {
	s.p.mu.Lock()
	s.p.stmtCtxes = append(s.p.stmtCtxes, ctx)
	s.p.mu.Unlock()
	return s.p.QueryContext(ctx, s.query, nil)
}

type pipeRows struct {
	p     *pipeBackend
	block bool
}

func (r *pipeRows) Columns() []string { return []string{"x"} }
func (r *pipeRows) Close() error      { return nil }
func (r *pipeRows) Next(dest []driver.Value) error {
	if r.block {
		if err := r.p.do("block"); err != nil {
			return err
		}
	}
	return io.EOF
}

// errRecorder is a seam.onError that remembers what it was told.
type errRecorder struct {
	mu   sync.Mutex
	errs []error
	socs []net.Conn
}

func (r *errRecorder) onError(nc net.Conn, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.socs = append(r.socs, nc)
	r.mu.Unlock()
}

func (r *errRecorder) snapshot() ([]error, []net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...), append([]net.Conn(nil), r.socs...)
}

func (r *errRecorder) reset() {
	r.mu.Lock()
	r.errs, r.socs = nil, nil
	r.mu.Unlock()
}

// leakCheck verifies at the very end of the test that it left no goroutine
// behind. Call it first so that its check runs after every other cleanup.
func leakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func assertInterrupted(t *testing.T, pc *PQConn, want bool) {
	t.Helper()
	err := pc.ResetSession(context.Background())
	if got := errors.Is(err, driver.ErrBadConn); got != want {
		t.Errorf("ResetSession = %v, want ErrBadConn: %v", err, want)
	}
	if pc.IsValid() == want {
		t.Errorf("IsValid = %v, want %v", pc.IsValid(), !want)
	}
}

// eachBlockingCall is every PQConn entry point that can block on the socket,
// run with ctx and a query that blocks.
var eachBlockingCall = []struct {
	name string
	call func(ctx context.Context, pc *PQConn) error
}{
	{"ExecContext", func(ctx context.Context, pc *PQConn) error {
		_, err := pc.ExecContext(ctx, "block", nil)
		return err
	}},
	{"QueryContext", func(ctx context.Context, pc *PQConn) error {
		_, err := pc.QueryContext(ctx, "block", nil)
		return err
	}},
	{"rows.Next", func(ctx context.Context, pc *PQConn) error {
		rows, err := pc.QueryContext(ctx, "blockrows", nil)
		if err != nil {
			return err
		}
		defer rows.Close()
		return rows.Next(make([]driver.Value, 1))
	}},
	{"StmtExecContext", func(ctx context.Context, pc *PQConn) error {
		st, err := pc.PrepareContext(context.Background(), "block")
		if err != nil {
			return err
		}
		_, err = st.(driver.StmtExecContext).ExecContext(ctx, nil)
		return err
	}},
	{"StmtQueryContext", func(ctx context.Context, pc *PQConn) error {
		st, err := pc.PrepareContext(context.Background(), "block")
		if err != nil {
			return err
		}
		_, err = st.(driver.StmtQueryContext).QueryContext(ctx, nil)
		return err
	}},
	{"tx with Background call", func(ctx context.Context, pc *PQConn) error {
		tx, err := pc.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		_, err = pc.ExecContext(context.Background(), "block", nil)
		return err
	}},
}

func TestPQWatchInterruptsBlockedCall(t *testing.T) {
	leakCheck(t)
	for _, tc := range eachBlockingCall {
		t.Run(tc.name, func(t *testing.T) {
			rec := &errRecorder{}
			pc, pb := newPipeConn(t, &seam{onError: rec.onError})
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := tc.call(ctx, pc)
			elapsed := time.Since(start)
			if elapsed > time.Second {
				t.Errorf("returned after %v with a 100ms context", elapsed)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("err = %v, want context.DeadlineExceeded and the socket's own error", err)
			}
			assertInterrupted(t, pc, true)

			// The next call fails without touching the backend.
			calls := pb.calls.Load()
			if _, err := pc.ExecContext(context.Background(), "x", nil); !errors.Is(err, driver.ErrBadConn) {
				t.Errorf("call after interruption: %v, want ErrBadConn", err)
			}
			if pb.calls.Load() != calls {
				t.Error("a call after interruption reached the backend")
			}

			errs, socks := rec.snapshot()
			if len(errs) == 0 {
				t.Fatal("onError was not told")
			}
			for i, e := range errs {
				if !errors.Is(e, context.DeadlineExceeded) || socks[i] != pc.sock {
					t.Errorf("onError(%v, %v): want the socket and a context error", socks[i], e)
				}
			}
		})
	}
}

func TestPQWatchStatementsDoNotHandContextToLibPQ(t *testing.T) {
	pc, pb := newPipeConn(t, nil)
	st, err := pc.PrepareContext(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.(driver.StmtExecContext).ExecContext(ctx, nil); err != nil {
		t.Fatal(err)
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	pb.mu.Lock()
	defer pb.mu.Unlock()
	for _, c := range pb.stmtCtxes {
		if c.Done() != nil {
			t.Error("lib/pq's statement was given a context that can end (its cleanup waits for the cancel request)")
		}
	}
}

func TestPQWatchContextEndedAfterCall(t *testing.T) {
	leakCheck(t)
	pc, _ := newPipeConn(t, nil)
	v := make([]driver.Value, 1)
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := pc.ExecContext(ctx, "x", nil); err != nil {
			t.Fatal(err)
		}
		rows, err := pc.QueryContext(ctx, "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := rows.Next(v); err != io.EOF {
			t.Fatal(err)
		}
		rows.Close()
		if err := pc.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := pc.PrepareContext(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.(driver.StmtExecContext).ExecContext(ctx, nil); err != nil {
			t.Fatal(err)
		}
		st.Close()
		tx, err := pc.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	time.Sleep(50 * time.Millisecond) // any AfterFunc left armed would have run by now
	assertInterrupted(t, pc, false)
	if n := pc.sock.(*deadlineConn).deadlines.Load(); n != 0 {
		t.Fatalf("a deadline was set on the socket %d times", n)
	}
}

func TestPQWatchContextEndedBeforeCall(t *testing.T) {
	pc, pb := newPipeConn(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pc.ExecContext(ctx, "block", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("ExecContext = %v", err)
	}
	if _, err := pc.QueryContext(ctx, "block", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("QueryContext = %v", err)
	}
	if _, err := pc.BeginTx(ctx, driver.TxOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("BeginTx = %v", err)
	}
	if pb.calls.Load() != 0 {
		t.Fatal("the backend was called with a context that had ended")
	}
	assertInterrupted(t, pc, false)
}

func TestPQWatchLastsUntilRowsClosedAndTxEnds(t *testing.T) {
	leakCheck(t)
	t.Run("rows open", func(t *testing.T) {
		pc, _ := newPipeConn(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		rows, err := pc.QueryContext(ctx, "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		waitInterrupted(t, pc)
		rows.Close()
	})
	t.Run("rows closed", func(t *testing.T) {
		pc, _ := newPipeConn(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		rows, err := pc.QueryContext(ctx, "x", nil)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		cancel()
		time.Sleep(20 * time.Millisecond)
		assertInterrupted(t, pc, false)
	})
	t.Run("tx open", func(t *testing.T) {
		pc, _ := newPipeConn(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		tx, err := pc.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		waitInterrupted(t, pc)
		_ = tx.Rollback() // reaches the backend, which ends its own watch there
		if _, err := pc.ExecContext(context.Background(), "x", nil); !errors.Is(err, driver.ErrBadConn) || !errors.Is(err, context.Canceled) {
			t.Fatalf("call after the transaction's context ended: %v", err)
		}
	})
	t.Run("tx committed", func(t *testing.T) {
		pc, _ := newPipeConn(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		tx, err := pc.BeginTx(ctx, driver.TxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		cancel()
		time.Sleep(20 * time.Millisecond)
		assertInterrupted(t, pc, false)
	})
}

func waitInterrupted(t *testing.T, pc *PQConn) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if pc.interrupted.Load() != nil {
			assertInterrupted(t, pc, true)
			return
		}
	}
	t.Fatal("the connection was not interrupted")
}

// ---------------------------------------------------------------------------
// Behaviour on a real server.

// pqCase is the pgfast-pq row of the backend table.
func pqCase() backendCase {
	for _, b := range backends {
		if b.backend == LibPQ {
			return b
		}
	}
	panic("no lib/pq backend")
}

func backendPID(t testing.TB, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) int {
	t.Helper()
	var pid int
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("pg_backend_pid: %v", err)
	}
	return pid
}

// elapsedWithin fails the test when d exceeds limit.
func elapsedWithin(t *testing.T, what string, d, limit time.Duration) {
	t.Helper()
	t.Logf("%s: returned after %v", what, d.Round(time.Millisecond))
	if d > limit {
		t.Errorf("%s: returned after %v, want within %v", what, d, limit)
	}
}

// onePQConn opens a Ready pgfast-pq pool of one connection on the shared
// server, so that a test sees whether its connection survived (same backend
// PID) or was replaced, and checks for leaks when the test ends.
func onePQConn(t *testing.T) *sql.DB {
	t.Helper()
	srv := server(t)
	leakCheck(t)
	db := openT(t, pqCase(), srv.DSN(pgtest.TrustUser))
	readyT(t, db, 10*time.Second)
	db.SetMaxOpenConns(1)
	return db
}

func TestPQContextEndsBlockedQuery(t *testing.T) {
	db := onePQConn(t)
	pid := backendPID(t, db)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	var s string
	err := db.QueryRowContext(ctx, "SELECT pg_sleep(10)::text").Scan(&s)
	elapsedWithin(t, "2s context on pg_sleep(10)", time.Since(start), 2500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	// The server answered pgfast's cancel request (57014): the connection
	// is in sync and stays in the pool (raw lib/pq discards it).
	var pe *pq.Error
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Errorf("err = %v, want lib/pq's 57014", err)
	}
	if pid2 := backendPID(t, db); pid2 != pid {
		t.Errorf("the connection was replaced (%d, was %d) although the server cancelled the statement", pid2, pid)
	}
}

func TestPQContextEndedAfterCompletionKeepsConnection(t *testing.T) {
	db := onePQConn(t)
	db.SetMaxIdleConns(1)
	mustExec(t, db, "DROP TABLE IF EXISTS pq_ctx_after")
	mustExec(t, db, "CREATE TABLE pq_ctx_after (id int)")
	pid := backendPID(t, db)
	dials := ConnectorOf(db).Stats().Dials
	stmt, err := db.Prepare("SELECT $1::int + 1")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()

	for i := 0; i < 100; i++ {
		func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // the request ends after the work is done
			var n int
			if err := db.QueryRowContext(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
				t.Fatalf("QueryRowContext: %d %v", n, err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO pq_ctx_after VALUES ($1)", i); err != nil {
				t.Fatal(err)
			}
			rows, err := db.QueryContext(ctx, "SELECT generate_series(1, 3)")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if err := db.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			if err := stmt.QueryRowContext(ctx, i).Scan(&n); err != nil || n != i+1 {
				t.Fatalf("stmt: %d %v", n, err)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "UPDATE pq_ctx_after SET id = id WHERE id = $1", i); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}()
	}
	// Contexts that expire (rather than being cancelled) after completion.
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		var n int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		<-ctx.Done()
		cancel()
	}
	time.Sleep(20 * time.Millisecond)
	if got := backendPID(t, db); got != pid {
		t.Fatalf("backend pid changed from %d to %d: a connection was discarded", pid, got)
	}
	if got := ConnectorOf(db).Stats().Dials; got != dials {
		t.Fatalf("the connector dialed %d more times", got-dials)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM pq_ctx_after").Scan(&n); err != nil || n != 100 {
		t.Fatalf("count %d %v", n, err)
	}
}

func TestPQContextCancelledMidTransaction(t *testing.T) {
	db := onePQConn(t)
	mustExec(t, db, "DROP TABLE IF EXISTS pq_ctx_tx")
	mustExec(t, db, "CREATE TABLE pq_ctx_tx (id int)")

	t.Run("during a statement", func(t *testing.T) {
		pid := backendPID(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO pq_ctx_tx VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		_, err = tx.ExecContext(ctx, "SELECT pg_sleep(10)")
		elapsedWithin(t, "cancel during pg_sleep in a transaction", time.Since(start), 800*time.Millisecond)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if err := tx.Commit(); err == nil {
			t.Error("Commit succeeded after the transaction's context was cancelled")
		}
		if backendPID(t, db) == pid {
			t.Error("the interrupted connection was reused")
		}
	})

	t.Run("between statements", func(t *testing.T) {
		pid := backendPID(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("INSERT INTO pq_ctx_tx VALUES (2)"); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := tx.Commit(); err == nil {
			t.Error("Commit succeeded after the transaction's context was cancelled")
		}
		if backendPID(t, db) == pid {
			t.Error("the connection of a cancelled transaction was reused")
		}
	})

	var n int
	if err := db.QueryRow("SELECT count(*) FROM pq_ctx_tx").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows of cancelled transactions were committed: %d %v", n, err)
	}
}

func TestPQContextOnStatements(t *testing.T) {
	db := onePQConn(t)
	stmt, err := db.Prepare("SELECT pg_sleep($1)::text")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	pid := backendPID(t, db)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	var s string
	err = stmt.QueryRowContext(ctx, 10).Scan(&s)
	elapsedWithin(t, "1s context on a prepared pg_sleep(10) query", time.Since(start), 1500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	start = time.Now()
	_, err = stmt.ExecContext(ctx2, 10)
	elapsedWithin(t, "1s context on a prepared pg_sleep(10) exec", time.Since(start), 1500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}

	// The server answered pgfast's cancel request (57014): as with raw
	// lib/pq, the connection stays in the pool and the statement still works.
	var pe *pq.Error
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Errorf("err = %v, want lib/pq's 57014", err)
	}
	if err := stmt.QueryRow(0).Scan(&s); err != nil {
		t.Fatalf("statement after cancel: %v", err)
	}
	if got := backendPID(t, db); got != pid {
		t.Errorf("the connection was replaced (%d, was %d) although the server cancelled the statement", got, pid)
	}
}

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
// seam of the test's own whose onError records.
func newRecordingPQ(t *testing.T, dsn string) (*sql.DB, *errRecorder) {
	t.Helper()
	a, cfg, err := parseDSN(LibPQ, dsn)
	if err != nil {
		t.Fatal(err)
	}
	rec := &errRecorder{}
	var d net.Dialer
	s := &seam{
		cfg:      cfg,
		dial:     recording(d.DialContext),
		checkout: checkout,
		alive:    alive,
		onError:  rec.onError,
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

// ---------------------------------------------------------------------------
// A network gone silent: a TCP proxy that stops forwarding.

// silentProxy forwards TCP between clients and target until it is silenced;
// then it drops every byte in both directions, and connections made while it
// is silent (lib/pq's cancel request) are accepted and never answered: a
// blackhole without root.
type silentProxy struct {
	ln     net.Listener
	target string
	silent atomic.Bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newSilentProxy(t *testing.T, target string) *silentProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// dsn is a lib/pq DSN for the trust user through the proxy.
func (p *silentProxy) dsn() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=3",
		p.ln.Addr().(*net.TCPAddr).Port, pgtest.TrustUser, pgtest.Database)
}

func (p *silentProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *silentProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *silentProxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	if p.silent.Load() {
		_, _ = io.Copy(io.Discard, client)
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil || !p.track(server) {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(client, server)
	}()
	p.pipe(server, client)
}

// pipe copies src to dst, dropping what it reads while the proxy is silent,
// until either side fails; then it closes both.
func (p *silentProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.silent.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops the proxy and closes every connection it holds.
func (p *silentProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

func TestPQContextOnSilentNetwork(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	target := net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port()))

	// Raw lib/pq through a proxy of its own, for comparison.
	rawProxy := newSilentProxy(t, target)
	raw, err := sql.Open(pqCase().raw, rawProxy.dsn())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1)
	if err := raw.Ping(); err != nil {
		t.Fatal(err)
	}

	proxy := newSilentProxy(t, target)
	db := openT(t, pqCase(), proxy.dsn())
	readyT(t, db, 10*time.Second)
	db.SetMaxOpenConns(1)
	stmt, err := db.Prepare("SELECT pg_sleep($1)::text")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()

	// heal lifts the silence and checks that the pool works again, on a new
	// connection.
	heal := func(oldPID int) {
		t.Helper()
		proxy.silent.Store(false)
		readyT(t, db, 10*time.Second)
		if pid := backendPID(t, db); pid == oldPID {
			t.Error("the interrupted connection was reused")
		}
	}

	t.Run("query", func(t *testing.T) {
		pid := backendPID(t, db)
		proxy.silent.Store(true)
		rawProxy.silent.Store(true)

		rawDone := make(chan error, 1)
		rawStart := time.Now()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var s string
			rawDone <- raw.QueryRowContext(ctx, "SELECT pg_sleep(30)::text").Scan(&s)
		}()

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		var s string
		err := db.QueryRowContext(ctx, "SELECT pg_sleep(30)::text").Scan(&s)
		elapsedWithin(t, "pgfast-pq, 2s context, silent network", time.Since(start), 2500*time.Millisecond)
		t.Logf("pgfast-pq error: %v", err)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}

		select {
		case err := <-rawDone:
			t.Logf("raw lib/pq, 2s context, silent network: returned after %v: %v", time.Since(rawStart).Round(time.Millisecond), err)
		case <-time.After(6*time.Second - time.Since(rawStart)):
			t.Logf("raw lib/pq, 2s context, silent network: still blocked after %v", time.Since(rawStart).Round(time.Millisecond))
			rawProxy.Close() // unblocks it
			select {
			case err := <-rawDone:
				t.Logf("raw lib/pq returned once its proxy closed: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("raw lib/pq did not return after its proxy closed")
			}
		}
		heal(pid)
	})

	t.Run("statement", func(t *testing.T) {
		var s string
		if err := stmt.QueryRow(0).Scan(&s); err != nil { // prepared on the current connection
			t.Fatal(err)
		}
		pid := backendPID(t, db)
		proxy.silent.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err := stmt.QueryRowContext(ctx, 30).Scan(&s)
		elapsedWithin(t, "prepared statement, 1s context, silent network", time.Since(start), 1500*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
		heal(pid)
	})

	t.Run("transaction", func(t *testing.T) {
		pid := backendPID(t, db)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		proxy.silent.Store(true)
		start := time.Now()
		// The call's own context never ends: the transaction's does.
		_, err = tx.ExecContext(context.Background(), "SELECT pg_sleep(30)")
		elapsedWithin(t, "transaction with a 1s context, silent network", time.Since(start), 1500*time.Millisecond)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
		_ = tx.Rollback()
		heal(pid)
	})
}

// ---------------------------------------------------------------------------
// Benchmarks.

// BenchmarkPQQueryWrapperOverhead compares raw lib/pq ("postgres") with
// pgfast-pq on one query, with a context that never ends (nothing is armed)
// and with a cancellable one (a context.AfterFunc per call).
func BenchmarkPQQueryWrapperOverhead(b *testing.B) {
	srv := server(b)
	for _, name := range []string{pqCase().raw, pqCase().name} {
		db, err := sql.Open(name, srv.DSN(pgtest.TrustUser))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := db.PingContext(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		db.SetMaxOpenConns(1)
		for _, mode := range []string{"background", "cancellable"} {
			b.Run("driver="+name+"/ctx="+mode, func(b *testing.B) {
				ctx := context.Background()
				if mode == "cancellable" {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				var n int
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := db.QueryRowContext(ctx, "SELECT $1::int", i).Scan(&n); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		db.Close()
	}
}

// BenchmarkPQWrapperCallOverhead measures the wrapper alone, on the fake
// backend: one QueryContext, Next and Close per iteration.
func BenchmarkPQWrapperCallOverhead(b *testing.B) {
	a, peer := net.Pipe()
	defer a.Close()
	defer peer.Close()
	pb := &pipeBackend{sock: a}
	pc := &PQConn{inner: pb, sock: a, seam: &seam{}}
	v := make([]driver.Value, 1)
	for _, mode := range []string{"inner", "background", "cancellable"} {
		b.Run("call="+mode, func(b *testing.B) {
			ctx := context.Background()
			if mode == "cancellable" {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			var q driver.QueryerContext = pc
			if mode == "inner" {
				q = pb
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				rows, err := q.QueryContext(ctx, "x", nil)
				if err != nil {
					b.Fatal(err)
				}
				_ = rows.Next(v)
				rows.Close()
			}
		})
	}
}

package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

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

package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// stillActive reports whether a statement whose text contains marker is
// still active on the server, as seen from observer.
func stillActive(t *testing.T, observer *sql.DB, marker string) bool {
	t.Helper()
	var n int
	err := observer.QueryRow(`SELECT count(*) FROM pg_stat_activity
		WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`, marker).Scan(&n)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	return n > 0
}

// goneWithin waits up to limit for the statement marked marker to leave
// pg_stat_activity and reports whether it did.
func goneWithin(t *testing.T, observer *sql.DB, marker string, limit time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if !stillActive(t, observer, marker) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPQStatementCancelReachesServer: a statement whose context ends is
// cancelled on the server (57014, gone from pg_stat_activity within 1 s),
// through pgfast-pq as through raw lib/pq, for a prepared statement's
// QueryContext, ExecContext and QueryRowContext and for unprepared calls,
// for a deadline and a cancel.
func TestPQStatementCancelReachesServer(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	observer, err := sql.Open(pqCase().raw, srv.DSN(pgtest.TrustUser))
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close()

	calls := []struct {
		name string
		run  func(ctx context.Context, st *sql.Stmt, db *sql.DB, query string) error
	}{
		{"QueryContext", func(ctx context.Context, st *sql.Stmt, _ *sql.DB, _ string) error {
			rows, err := st.QueryContext(ctx)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
			}
			return rows.Err()
		}},
		{"ExecContext", func(ctx context.Context, st *sql.Stmt, _ *sql.DB, _ string) error {
			_, err := st.ExecContext(ctx)
			return err
		}},
		{"QueryRowContext", func(ctx context.Context, st *sql.Stmt, _ *sql.DB, _ string) error {
			var s string
			return st.QueryRowContext(ctx).Scan(&s)
		}},
		// Not prepared: lib/pq cancels these itself on raw lib/pq; pgfast
		// sends the cancel request for them too.
		{"db.QueryRowContext", func(ctx context.Context, _ *sql.Stmt, db *sql.DB, query string) error {
			var s string
			return db.QueryRowContext(ctx, query).Scan(&s)
		}},
		{"db.ExecContext", func(ctx context.Context, _ *sql.Stmt, db *sql.DB, query string) error {
			_, err := db.ExecContext(ctx, query)
			return err
		}},
	}
	ends := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, driverName := range []string{pqCase().raw, pqCase().name} {
		db, err := sql.Open(driverName, srv.DSN(pgtest.TrustUser))
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		if err := db.Ping(); err != nil {
			t.Fatal(err)
		}
		for _, call := range calls {
			for _, end := range ends {
				t.Run(driverName+"/"+call.name+"/"+end.name, func(t *testing.T) {
					marker := fmt.Sprintf("cancel_%s_%s_%s_%d", driverName, call.name, end.name, time.Now().UnixNano())
					query := "SELECT pg_sleep(30)::text /* " + marker + " */"
					st, err := db.Prepare(query)
					if err != nil {
						t.Fatal(err)
					}
					defer st.Close()
					ctx, cancel := end.ctx()
					defer cancel()
					start := time.Now()
					err = call.run(ctx, st, db, query)
					elapsed := time.Since(start)
					t.Logf("%s: returned after %v: %v", driverName, elapsed.Round(time.Millisecond), err)
					if elapsed > 2*time.Second {
						t.Errorf("returned after %v", elapsed)
					}
					var pe *pq.Error
					if !errors.As(err, &pe) || pe.Code != "57014" {
						t.Errorf("err = %v, want lib/pq's 57014", err)
					}
					if driverName == pqCase().name && !errors.Is(err, end.want) {
						t.Errorf("errors.Is(err, %v) = false: %v", end.want, err)
					}
					if !goneWithin(t, observer, marker, time.Second) {
						t.Errorf("the statement is still active on the server 1s after its caller gave up")
					}
					// The connection is still usable (the server answered the cancel).
					var n int
					if err := db.QueryRow("SELECT 1").Scan(&n); err != nil {
						t.Errorf("query after the cancel: %v", err)
					}
				})
			}
		}
		db.Close()
	}
}

// TestPQCancelKeyReadFromLibPQ: pgfast reads lib/pq's backend PID and secret
// key (the cancel request needs them); a lib/pq upgrade that moves them fails
// here rather than silently sending no cancel requests.
func TestPQCancelKeyReadFromLibPQ(t *testing.T) {
	db := onePQConn(t)
	pid := backendPID(t, db)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(*PQConn)
		if pc.cancelKey == nil || int(pc.cancelPID) != pid {
			return fmt.Errorf("cancel key: pid %d (backend %d), key %d bytes", pc.cancelPID, pid, len(pc.cancelKey))
		}
		gotPID, key, ok := pqCancelKey(pc.Unwrap())
		if !ok || int(gotPID) != pid || len(key) < 4 {
			return fmt.Errorf("pqCancelKey = %d, %d bytes, %v", gotPID, len(key), ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := pqCancelKey(nil); ok {
		t.Error("pqCancelKey(nil) ok")
	}
}

package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
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

// TestPQCancelWatchTimeline: on the fake backend, whose blocked call never
// gets an answer, a context that ends sends one CancelRequest with the
// connection's PID and key; a cancel the "server" handles buys answerGrace
// more before the socket is expired, one that never gets through (a dead
// network) does not.
func TestPQCancelWatchTimeline(t *testing.T) {
	leakCheck(t)
	for _, tc := range []struct {
		name     string
		handled  bool
		min, max time.Duration
	}{
		{"cancel handled", true, cancelGrace + answerGrace - 50*time.Millisecond, cancelGrace + answerGrace + time.Second},
		{"cancel unanswered", false, cancelGrace - 50*time.Millisecond, cancelGrace + 700*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			finished := make(chan struct{})
			dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
				a, b := net.Pipe()
				go func() {
					defer close(finished)
					defer b.Close()
					msg := make([]byte, 16)
					if _, err := io.ReadFull(b, msg); err != nil {
						return
					}
					got <- msg
					if !tc.handled {
						<-ctx.Done() // never answered: the cancel's own bound ends it
					}
				}()
				return a, nil
			}
			pc, _ := newPipeConn(t, &fakeCore{dialFn: dial, cfg: &Config{ConnectTimeout: 2 * time.Second}})
			pc.cancelPID, pc.cancelKey = 4242, []byte{1, 2, 3, 4}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := pc.ExecContext(ctx, "block", nil)
			elapsed := time.Since(start) - 100*time.Millisecond
			t.Logf("returned %v after the context ended: %v", elapsed.Round(time.Millisecond), err)
			if elapsed < tc.min || elapsed > tc.max {
				t.Errorf("returned %v after the context ended, want between %v and %v", elapsed, tc.min, tc.max)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want context.DeadlineExceeded", err)
			}
			assertInterrupted(t, pc, true)
			select {
			case msg := <-got:
				want := []byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x10, 0x92, 1, 2, 3, 4}
				if string(msg) != string(want) {
					t.Errorf("CancelRequest = %x, want %x", msg, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no CancelRequest sent")
			}
			// The unanswered cancel request ends at its own bound, connect_timeout.
			select {
			case <-finished:
			case <-time.After(5 * time.Second):
				t.Fatal("the cancel request outlived connect_timeout")
			}
			time.Sleep(50 * time.Millisecond) // its goroutine's last steps
		})
	}
}

// TestPQCancelOverUnixSocket: the cancel request goes to the address the
// connection's socket is connected to, a Unix-domain socket too.
func TestPQCancelOverUnixSocket(t *testing.T) {
	srv := server(t)
	leakCheck(t)
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		srv.SocketDir(), srv.Port(), pgtest.TrustUser, pgtest.Database)
	db := openT(t, pqCase(), dsn)
	readyT(t, db, 10*time.Second)
	db.SetMaxOpenConns(1)
	st, err := db.Prepare("SELECT pg_sleep(30)::text")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var s string
	err = st.QueryRowContext(ctx).Scan(&s)
	var pe *pq.Error
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Errorf("err = %v, want lib/pq's 57014", err)
	}
}

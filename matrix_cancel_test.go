package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// cancelGoneWithin is how soon after the context's deadline a cancelled
// statement must be gone from pg_stat_activity.
const cancelGoneWithin = time.Second

// TestMatrixCancelGoneFromActivity: a statement whose context deadline passes
// during pg_sleep is gone from pg_stat_activity (no longer active) within
// 1 s of the deadline, raw vs pgfast on both backends, and the caller's error
// is the same kind (the same SQLSTATE, errors.Is context.DeadlineExceeded
// whenever the raw driver's is).
func TestMatrixCancelGoneFromActivity(t *testing.T) {
	t.Parallel()
	s := server(t)
	monitor, err := sql.Open("pgx", s.DSN(pgtest.Superuser))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { monitor.Close() })
	bouncer, err := pgtest.StartPgBouncer(s)
	if errors.Is(err, pgtest.ErrNoPgBouncer) {
		requireOrSkip(t, "pgbouncer is not installed (apt-get install pgbouncer)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bouncer.Stop)
	routes := []struct {
		name string
		dsn  func(b backendCase) string
	}{
		{"direct", func(backendCase) string { return s.DSN(pgtest.TrustUser) }},
		// PgBouncer forwards the cancel request to the server.
		{"pgbouncer-transaction", func(b backendCase) string {
			d := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable",
				bouncer.Port(), pgtest.TrustUser, pgtest.BouncerTransactionDB)
			if b.backend == PGX {
				d += " default_query_exec_mode=simple_protocol"
			}
			return d
		}},
	}
	for _, route := range routes {
		t.Run(route.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, b backendCase) {
				t.Parallel()
				cancelCell(t, monitor, b, route.dsn(b))
			})
		})
	}
}

// cancelCell runs the cancelled pg_sleep raw and through pgfast on dsn and
// compares.
func cancelCell(t *testing.T, monitor *sql.DB, b backendCase, dsn string) {
	t.Helper()
	type result struct {
		err  error
		gone time.Duration
	}
	run := func(driverName string) result {
		app := fmt.Sprintf("matrix_cancel_%s_%d", driverName, time.Now().UnixNano())
		db, err := sql.Open(driverName, withKV(dsn, "application_name="+app))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ready, cancelReady := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelReady()
		if err := db.PingContext(ready); err != nil {
			t.Fatalf("%s: %v", driverName, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
		defer cancel()
		deadline, _ := ctx.Deadline()
		// The statement must be seen running first, or "gone" proves nothing.
		seen := make(chan bool, 1)
		go func() { seen <- activeSeen(monitor, app, deadline) }()
		var v string
		err = db.QueryRowContext(ctx, "SELECT pg_sleep(30)::text").Scan(&v)
		if err == nil {
			t.Fatalf("%s: pg_sleep(30) returned within 600ms", driverName)
		}
		if !<-seen {
			t.Errorf("%s: the statement was never seen active in pg_stat_activity", driverName)
		}
		gone := activeGone(t, monitor, app, deadline)
		return result{err: err, gone: gone}
	}
	raw, fast := run(b.raw), run(b.name)
	t.Logf("%s: raw %s gone %s after the deadline (err %v); %s gone %s (err %v)", t.Name(),
		b.raw, raw.gone.Round(time.Millisecond), raw.err, b.name, fast.gone.Round(time.Millisecond), fast.err)
	if raw.gone > cancelGoneWithin {
		t.Errorf("raw %s: statement still active %s after the deadline", b.raw, raw.gone)
	}
	if fast.gone > cancelGoneWithin {
		t.Errorf("%s: statement still active %s after the deadline (raw %s: %s)", b.name, fast.gone, b.raw, raw.gone)
	}
	// pgfast may add identity (pgfast-pq's 57014 is also errors.Is
	// context.DeadlineExceeded, by design), never lose it.
	rawIs, fastIs := errors.Is(raw.err, context.DeadlineExceeded), errors.Is(fast.err, context.DeadlineExceeded)
	if errClass(raw.err) != errClass(fast.err) || (rawIs && !fastIs) {
		t.Errorf("%s error %v (%s, Is deadline %v), raw %s %v (%s, Is deadline %v)", b.name, fast.err, errClass(fast.err), fastIs, b.raw, raw.err, errClass(raw.err), rawIs)
	}
}

// activeQuery counts app's active pg_sleep statements.
const activeQuery = `SELECT count(*) FROM pg_stat_activity
	WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'`

// activeSeen polls pg_stat_activity until app's statement is active, and
// reports whether it was before until.
func activeSeen(monitor *sql.DB, app string, until time.Time) bool {
	for time.Now().Before(until) {
		var n int
		if err := monitor.QueryRow(activeQuery, app).Scan(&n); err != nil {
			return false
		}
		if n > 0 {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// activeGone polls pg_stat_activity until no active statement of app is
// left, and returns how long after deadline that was (bounded: it gives up
// 5 s after the deadline and returns that).
func activeGone(t *testing.T, monitor *sql.DB, app string, deadline time.Time) time.Duration {
	t.Helper()
	giveUp := deadline.Add(5 * time.Second)
	for {
		var n int
		err := monitor.QueryRow(activeQuery, app).Scan(&n)
		if err != nil {
			t.Fatalf("pg_stat_activity: %v", err)
		}
		now := time.Now()
		if n == 0 || now.After(giveUp) {
			return now.Sub(deadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

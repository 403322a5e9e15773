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
	forEachBackend(t, func(t *testing.T, b backendCase) {
		t.Parallel()
		type result struct {
			err  error
			gone time.Duration
		}
		run := func(driverName string) result {
			app := fmt.Sprintf("matrix_cancel_%s_%d", driverName, time.Now().UnixNano())
			db, err := sql.Open(driverName, withKV(s.DSN(pgtest.TrustUser), "application_name="+app))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ready, cancelReady := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancelReady()
			if err := db.PingContext(ready); err != nil {
				t.Fatalf("%s: %v", driverName, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			deadline, _ := ctx.Deadline()
			var v string
			err = db.QueryRowContext(ctx, "SELECT pg_sleep(30)::text").Scan(&v)
			if err == nil {
				t.Fatalf("%s: pg_sleep(30) returned within 300ms", driverName)
			}
			gone := activeGone(t, monitor, app, deadline)
			return result{err: err, gone: gone}
		}
		raw, fast := run(b.raw), run(b.name)
		t.Logf("%s: gone %s after the deadline (err %v); %s: gone %s (err %v)",
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
	})
}

// activeGone polls pg_stat_activity until no active statement of app is
// left, and returns how long after deadline that was (bounded: it gives up
// 5 s after the deadline and returns that).
func activeGone(t *testing.T, monitor *sql.DB, app string, deadline time.Time) time.Duration {
	t.Helper()
	giveUp := deadline.Add(5 * time.Second)
	for {
		var n int
		err := monitor.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'`, app).Scan(&n)
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

package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// firstSuccess runs SELECT 1 on db every 20 ms until one succeeds or stop
// closes, and returns when it succeeded (zero if none did).
func firstSuccess(db *sql.DB, stop <-chan struct{}) time.Time {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := db.ExecContext(ctx, "SELECT 1")
		cancel()
		if err == nil {
			return time.Now()
		}
		select {
		case <-stop:
			return time.Time{}
		case <-tick.C:
		}
	}
}

// firstAccept dials addr every 5 ms until it accepts or stop closes.
func firstAccept(addr string, stop <-chan struct{}) time.Time {
	for {
		if nc, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			at := time.Now()
			nc.Close()
			return at
		}
		select {
		case <-stop:
			return time.Time{}
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestRecoveryAsFastAsRaw: a server stopped long enough for the background
// backoff to reach its cap comes back; with the application querying every
// 20 ms, pgfast serves again within ~250 ms of the raw driver doing so
// (callers' requests start a probe at once, at most one every 250 ms), and
// fails fast in between.
func TestRecoveryAsFastAsRaw(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		srv := newServer(t, pgtest.Options{})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		dsn := srv.DSN(pgtest.TrustUser)
		db := openT(t, b, dsn)
		readyT(t, db, 10*time.Second)
		raw, err := sql.Open(b.raw, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if err := raw.Ping(); err != nil {
			t.Fatal(err)
		}
		c := ConnectorOf(db)
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		// Queries fail (fast) until the connector is Down; then the server
		// stays away long enough for the backoff to reach its cap.
		deadline := time.Now().Add(10 * time.Second)
		for c.State() != StateDown {
			if time.Now().After(deadline) {
				t.Fatalf("state %s 10s after the server stopped", c.State())
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = db.ExecContext(ctx, "SELECT 1")
			cancel()
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(4 * time.Second)
		for i := 0; i < 10; i++ {
			start := time.Now()
			if _, err := db.Exec("SELECT 1"); err == nil || time.Since(start) > 200*time.Millisecond {
				t.Fatalf("query while down: %v after %s, want a fast failure", err, time.Since(start))
			}
			time.Sleep(20 * time.Millisecond)
		}

		stop := make(chan struct{})
		defer close(stop)
		var wg sync.WaitGroup
		var accepted, rawOK, fastOK time.Time
		wg.Go(func() { accepted = firstAccept(fmt.Sprintf("%s:%d", srv.Host(), srv.Port()), stop) })
		wg.Go(func() { rawOK = firstSuccess(raw, stop) })
		wg.Go(func() { fastOK = firstSuccess(db, stop) })
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatalf("no success within 15s of the restart (raw at %v, pgfast at %v)", rawOK, fastOK)
		}
		lag := fastOK.Sub(rawOK)
		t.Logf("after the port accepted: raw served in %s, pgfast in %s (lag %s)",
			rawOK.Sub(accepted), fastOK.Sub(accepted), lag)
		if lag > 500*time.Millisecond {
			t.Errorf("pgfast served %s after the raw driver, want ≤ ~250 ms", lag)
		}
	})
}

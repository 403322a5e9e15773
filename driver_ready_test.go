package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// openT opens dsn with the backend's pgfast driver and closes it at the end.
func openT(t *testing.T, b backendCase, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(b.name, dsn)
	if err != nil {
		t.Fatalf("sql.Open(%s): %v", b.name, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// readyT waits for db within limit or fails the test.
func readyT(t *testing.T, db *sql.DB, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := Ready(ctx, db); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func TestOpenReturnsAtOnceWithNothingListening(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", freeLoopbackPort(t))
		start := time.Now()
		db, err := sql.Open(b.name, dsn)
		elapsed := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// Behaviour bound with slack; the speed target lives in BenchmarkOpenUnreachable.
		if elapsed > 50*time.Millisecond {
			t.Fatalf("sql.Open took %v", elapsed)
		}
		if c := ConnectorOf(db); c == nil {
			t.Fatal("ConnectorOf returned nil for a pgfast *sql.DB")
		}
	})
}

func TestReadyOnceServerStartsAfterOpen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		srv := newServer(t, pgtest.Options{})
		db := openT(t, b, srv.DSN(pgtest.TrustUser))
		c := ConnectorOf(db)

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := c.Ready(ctx)
		cancel()
		if !errors.Is(err, ErrNotReady) {
			t.Fatalf("Ready before the server started: got %v, want ErrNotReady", err)
		}
		if st := c.State(); st != StateDown && st != StateConnecting {
			t.Fatalf("state before the server started = %v", st)
		}

		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		readyT(t, db, 10*time.Second)
		t.Logf("ready %v after the server started", time.Since(start))
		if st := c.State(); st != StateReady {
			t.Fatalf("state = %v, want ready", st)
		}
		var one int
		if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1: %v %d", err, one)
		}
	})
}

func TestReadyErrorNamesAddressAndCause(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		port := freeLoopbackPort(t)
		db := openT(t, b, fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", port))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := Ready(ctx, db)
		if !errors.Is(err, ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want ErrNotReady and DeadlineExceeded", err)
		}
		msg := err.Error()
		for _, want := range []string{fmt.Sprintf("127.0.0.1:%d", port), "refused"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
	})
}

func TestReadyErrorWrongPassword(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		const wrong = "not-the-Passw0rd"
		dsn := strings.Replace(srv.DSN(pgtest.ScramUser), "password="+pgtest.ScramPassword, "password="+wrong, 1)
		db := openT(t, b, dsn)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err := Ready(ctx, db)
		if err == nil {
			t.Fatal("Ready succeeded with a wrong password")
		}
		msg := err.Error()
		if !strings.Contains(msg, "password authentication failed") {
			t.Errorf("error %q does not say the password was wrong", msg)
		}
		if strings.Contains(msg, wrong) {
			t.Errorf("error %q contains the password", msg)
		}
		// The backend's own error type is reachable.
		switch b.backend {
		case PGX:
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Errorf("errors.As *pgconn.PgError: %v", err)
			}
		case LibPQ:
			var pqErr *pq.Error
			if !errors.As(err, &pqErr) || pqErr.Code != "28P01" {
				t.Errorf("errors.As *pq.Error: %v", err)
			}
		}
	})
}

func TestReadyReturnsWhenContextCancelled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db := openT(t, b, fmt.Sprintf("host=127.0.0.1 port=%d user=x sslmode=disable", freeLoopbackPort(t)))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan time.Time, 1)
		go func() {
			_ = Ready(ctx, db)
			done <- time.Now()
		}()
		time.Sleep(100 * time.Millisecond)
		cancelled := time.Now()
		cancel()
		select {
		case at := <-done:
			if d := at.Sub(cancelled); d > 50*time.Millisecond {
				t.Fatalf("Ready returned %v after cancel", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Ready did not return after cancel")
		}
	})
}

func TestConnectWaitsForReadinessWithWaitReady(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		srv := newServer(t, pgtest.Options{})
		db := openT(t, b, withKV(srv.DSN(pgtest.TrustUser), "pgfast_wait_ready=1"))
		var wg sync.WaitGroup
		errs := make(chan error, 5)
		for i := 0; i < 5; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				var one int
				errs <- db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
			}()
		}
		time.Sleep(300 * time.Millisecond)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("query: %v", err)
			}
		}
	})
}

func TestConnectFailsFastWhileDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db := openT(t, b, fmt.Sprintf("host=127.0.0.1 port=%d user=x sslmode=disable", freeLoopbackPort(t)))
		c := ConnectorOf(db)
		deadline := time.Now().Add(5 * time.Second)
		for c.State() != StateDown && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		start := time.Now()
		_, err := db.ExecContext(context.Background(), "SELECT 1")
		if !errors.Is(err, ErrNotReady) {
			t.Fatalf("got %v, want ErrNotReady", err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("failing took %v", d)
		}
	})
}

func TestReadyFallsBackToPingForOtherDrivers(t *testing.T) {
	srv := server(t)
	db, err := sql.Open("pgx", srv.DSN(pgtest.TrustUser))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ConnectorOf(db) != nil {
		t.Fatal("ConnectorOf found a connector in a pgx *sql.DB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ready(ctx, db); err != nil {
		t.Fatal(err)
	}
}

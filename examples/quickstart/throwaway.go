package main

// Not part of what you copy: the throwaway PostgreSQL the quickstart uses
// when DATABASE_URL is unset. It uses pgfast's test helper (an internal
// package) to run initdb on a free loopback port in a temporary directory.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// runOnThrowaway runs the quickstart on a throwaway server, removed again
// when it returns (also after Ctrl+C, which ends ctx).
func runOnThrowaway(ctx context.Context, driverName string) error {
	demo, err := newThrowaway()
	if err != nil {
		return err
	}
	defer demo.Close()
	return run(ctx, driverName, demo.DSN(), demo.DownThenStart)
}

// throwaway is a PostgreSQL server in a temporary directory, created but not
// started.
type throwaway struct {
	srv *pgtest.Server
}

// newThrowaway runs initdb; the server is not started yet.
func newThrowaway() (*throwaway, error) {
	srv, err := pgtest.New(pgtest.Options{})
	if errors.Is(err, pgtest.ErrNoPostgres) {
		return nil, fmt.Errorf("%w\n(install the PostgreSQL server programs, e.g. apt-get install postgresql, or set DATABASE_URL)", err)
	}
	if err != nil {
		return nil, err
	}
	fmt.Printf("throwaway PostgreSQL at %s:%d, not started yet\n", srv.Host(), srv.Port())
	return &throwaway{srv: srv}, nil
}

// DSN is the bootstrap superuser on the postgres database, which exist as
// soon as the server accepts connections.
func (t *throwaway) DSN() string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable",
		t.srv.Host(), t.srv.Port(), pgtest.Superuser)
}

// DownThenStart shows what pgfast does while the server is down (Ready says
// why within its deadline, a query fails at once), then starts the server.
func (t *throwaway) DownThenStart(ctx context.Context, db *sql.DB) error {
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := pgfast.Ready(short, db)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		return errors.New("something answers on the throwaway server's port before it was started")
	}
	fmt.Printf("Ready with a 300ms deadline while the server is down:\n    %s\n",
		strings.Replace(err.Error(), ": last error: ", "\n    last error: ", 1))

	start := time.Now()
	var one int
	err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	fmt.Printf("a query while down fails in %s: errors.Is(err, pgfast.ErrNotReady) = %t\n",
		time.Since(start).Round(time.Microsecond), errors.Is(err, pgfast.ErrNotReady))

	fmt.Println("starting the server…")
	start = time.Now()
	if err := t.srv.Start(); err != nil {
		return err
	}
	fmt.Printf("server started (pg_ctl start took %s)\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// Close stops the server and removes its directory.
func (t *throwaway) Close() {
	t.srv.Cleanup()
	fmt.Println("throwaway server stopped and removed")
}

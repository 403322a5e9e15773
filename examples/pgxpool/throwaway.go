package main

// Not part of what you copy: the throwaway PostgreSQL the example uses when
// DATABASE_URL is unset. It uses pgfast's test helper (an internal package)
// to run initdb on a free loopback port in a temporary directory.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// runOnThrowaway runs the example on a throwaway server, removed again when
// it returns (also after Ctrl+C, which ends ctx).
func runOnThrowaway(ctx context.Context) error {
	srv, err := pgtest.New(pgtest.Options{})
	if errors.Is(err, pgtest.ErrNoPostgres) {
		return fmt.Errorf("%w\n(install the PostgreSQL server programs, e.g. apt-get install postgresql, or set DATABASE_URL)", err)
	}
	if err != nil {
		return err
	}
	defer func() {
		srv.Cleanup()
		fmt.Println("throwaway server stopped and removed")
	}()
	fmt.Printf("throwaway PostgreSQL at %s:%d, not started yet\n", srv.Host(), srv.Port())
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable pool_max_conns=4",
		srv.Host(), srv.Port(), pgtest.Superuser)
	return run(ctx, dsn, func(ctx context.Context, pool *pgxpool.Pool) error {
		return downThenStart(ctx, srv, pool)
	})
}

// downThenStart shows what the pool does while the server is down (Ready
// says why within its deadline, a query fails at once without dialling),
// then starts the server.
func downThenStart(ctx context.Context, srv *pgtest.Server, pool *pgxpool.Pool) error {
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := pgfast.PoolConnector(pool).Ready(short)
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
	err = pool.QueryRow(ctx, "SELECT 1").Scan(&one)
	fmt.Printf("a query while down fails in %s: errors.Is(err, pgfast.ErrNotReady) = %t\n",
		time.Since(start).Round(time.Microsecond), errors.Is(err, pgfast.ErrNotReady))

	fmt.Println("starting the server…")
	start = time.Now()
	if err := srv.Start(); err != nil {
		return err
	}
	fmt.Printf("server started (pg_ctl start took %s)\n", time.Since(start).Round(time.Millisecond))
	return nil
}

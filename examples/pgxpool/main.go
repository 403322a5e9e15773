// Command pgxpool shows pgfast in front of pgx's own pool (*pgxpool.Pool):
//
//	go run ./examples/pgxpool                            # a throwaway PostgreSQL, nothing to configure
//	DATABASE_URL=postgres://app@db/app go run ./examples/pgxpool
//
// This file is the program to copy: it makes the pool with pgfast.NewPool
// instead of pgxpool.New (one call changes; everything that takes a
// *pgxpool.Pool keeps working), prints the state changes, waits until the
// database is ready and runs a query. Without DATABASE_URL, throwaway.go (not
// part of what you copy; it needs the PostgreSQL server programs installed)
// makes a PostgreSQL server that is not started yet, shows that Ready and a
// query fail fast while it is down, starts it, and removes it at the end,
// also on Ctrl+C.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		err = run(ctx, dsn, nil)
	} else {
		err = runOnThrowaway(ctx) // not part of what you copy (throwaway.go)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgxpool example:", err)
		stop()
		os.Exit(1)
	}
}

// run makes a pool on dsn, waits until it is ready and runs a query.
// beforeReady, if set, runs once the pool exists.
func run(ctx context.Context, dsn string, beforeReady func(context.Context, *pgxpool.Pool) error) error {
	// NewPool returns at once and connects in the background; a bad DSN is
	// a *pgfast.ConfigError naming the key (never the password). The DSN
	// takes pgxpool's keys (pool_max_conns...) and pgfast's (keepalives*,
	// tcp_user_timeout, pgfast_wait_ready...).
	pool, err := pgfast.NewPool(ctx, dsn,
		pgfast.WithStateHook(func(st pgfast.State, cause error) {
			if cause != nil {
				fmt.Printf("  [state] %s: %v\n", st, cause)
			} else {
				fmt.Printf("  [state] %s\n", st)
			}
		}))
	if err != nil {
		return err
	}
	defer pool.Close() // stops every goroutine pgfast started for it

	if beforeReady != nil {
		if err := beforeReady(ctx, pool); err != nil {
			return err
		}
	}

	// The pool's readiness, state and statistics.
	c := pgfast.PoolConnector(pool)
	wait, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Ready(wait); err != nil {
		return err
	}
	fmt.Printf("ready after %s\n", time.Since(start).Round(time.Millisecond))

	var version string
	if err := pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&version); err != nil {
		return err
	}
	fmt.Printf("server version %s\n", version)
	st := c.Stats()
	fmt.Printf("stats: dials=%d failures=%d state=%s pool conns=%d\n",
		st.Dials, st.DialFailures, st.State, pool.Stat().TotalConns())
	return nil
}

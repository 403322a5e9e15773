// Command quickstart shows pgfast end to end in a few seconds:
//
//	go run ./examples/quickstart                     # a throwaway PostgreSQL, nothing to configure
//	go run ./examples/quickstart -driver pgfast-pq   # the same over lib/pq
//	DATABASE_URL=postgres://app@db/app go run ./examples/quickstart
//
// This file is the program to copy: it opens DATABASE_URL, prints the
// connector's state changes, waits until the database is ready and runs a
// query. Without DATABASE_URL, throwaway.go (not part of what you copy; it
// needs the PostgreSQL server programs installed) makes a PostgreSQL server
// that is not started yet, shows that Ready and a query fail fast while it is
// down, starts it, and removes it at the end, also on Ctrl+C.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pgfast/pgfast"
)

func main() {
	driverName := flag.String("driver", "pgfast", `"pgfast" (pgx) or "pgfast-pq" (lib/pq)`)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		err = run(ctx, *driverName, dsn, nil)
	} else {
		err = runOnThrowaway(ctx, *driverName) // not part of what you copy (throwaway.go)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		stop()
		os.Exit(1)
	}
}

// run connects to dsn, waits until it is ready and runs a query. beforeReady,
// if set, runs once the connector exists.
func run(ctx context.Context, driverName, dsn string, beforeReady func(context.Context, *sql.DB) error) error {
	backend := pgfast.PGX
	if driverName == "pgfast-pq" {
		backend = pgfast.LibPQ
	}
	// NewConnector returns at once and connects in the background; a bad DSN
	// is a *pgfast.ConfigError naming the key (never the password).
	// sql.Open("pgfast", dsn) does the same without options.
	c, err := pgfast.NewConnector(dsn,
		pgfast.WithBackend(backend),
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
	db := sql.OpenDB(c)
	defer db.Close() // closes c too: stops every goroutine pgfast started

	if beforeReady != nil {
		if err := beforeReady(ctx, db); err != nil {
			return err
		}
	}

	wait, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := pgfast.Ready(wait, db); err != nil {
		return err // says what each address answered
	}
	waited := time.Since(start)

	var version string
	var now time.Time
	err = db.QueryRowContext(ctx, "SELECT current_setting('server_version'), now()").Scan(&version, &now)
	if err != nil {
		return err
	}
	fmt.Printf("ready after %s: PostgreSQL %s, server time %s\n",
		waited.Round(time.Microsecond), version, now.Format(time.RFC3339))
	s := c.Stats()
	fmt.Printf("stats: dials=%d failed=%d state_changes=%d\n", s.Dials, s.DialFailures, s.StateChanges)
	return nil
}

// Command quickstart shows pgfast end to end in a few seconds:
//
//	go run ./examples/quickstart                     # a throwaway PostgreSQL, nothing to configure
//	go run ./examples/quickstart -driver pgfast-pq   # the same over lib/pq
//	DATABASE_URL=postgres://app@db/app go run ./examples/quickstart
//
// Without DATABASE_URL it creates a throwaway PostgreSQL (internal/pgtest;
// the PostgreSQL server binaries must be installed) but does not start it
// yet: sql.Open returns at once anyway, Ready with a short deadline explains
// what is wrong, and a query fails fast with ErrNotReady instead of hanging.
// Then it starts the server, waits with pgfast.Ready, runs a few queries and
// removes everything again, also on Ctrl+C.
//
// With DATABASE_URL it uses that server instead and leaves nothing behind
// (its table is a temporary one).
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/pgtest"
)

func main() {
	driverName := flag.String("driver", "pgfast", `database/sql driver: "pgfast" (pgx) or "pgfast-pq" (lib/pq)`)
	flag.Parse()
	if *driverName != "pgfast" && *driverName != "pgfast-pq" {
		fmt.Fprintf(os.Stderr, "quickstart: -driver must be pgfast or pgfast-pq, not %q\n", *driverName)
		os.Exit(2)
	}

	// Ctrl+C (or SIGTERM, a closed terminal, a closed output pipe as in
	// "quickstart | head") cancels ctx: every wait below selects on it, and
	// the deferred clean-up still runs. Until stop is called further signals
	// are swallowed, so a second Ctrl+C cannot leave a server behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	err := run(ctx, *driverName, os.Getenv("DATABASE_URL"))
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
	case interrupted:
		fmt.Println("interrupted; everything was cleaned up")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// outMu makes say print whole messages, so that the state watcher's lines
// never interleave with the main flow's.
var outMu sync.Mutex

// say prints one message and a newline.
func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func run(ctx context.Context, driverName, databaseURL string) error {
	say("pgfast quickstart (driver %q)", driverName)

	dsn := databaseURL
	var srv *pgtest.Server
	if dsn == "" {
		var err error
		// New runs initdb and picks a free loopback port but does not start the server.
		srv, err = pgtest.New(pgtest.Options{})
		if errors.Is(err, pgtest.ErrNoPostgres) {
			return fmt.Errorf("%w\n(install PostgreSQL, e.g. apt-get install postgresql, or set DATABASE_URL)", err)
		}
		if err != nil {
			return err
		}
		defer func() {
			srv.Cleanup()
			say("• throwaway server stopped and removed")
		}()
		// The bootstrap superuser and its database exist as soon as the server
		// accepts connections (srv.DSN(pgtest.TrustUser) works too, once Start
		// has created that role).
		dsn = fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable",
			srv.Host(), srv.Port(), pgtest.Superuser)
		say("• throwaway PostgreSQL at %s:%d, not started yet", srv.Host(), srv.Port())
	} else {
		say("• using DATABASE_URL")
	}

	// sql.Open returns at once: pgfast connects in the background. A bad DSN
	// is reported here, as a *pgfast.ConfigError naming the key.
	//
	// The same with a connector of your own, which also takes options:
	//
	//	c, err := pgfast.NewConnector(dsn,
	//		pgfast.WithBackend(pgfast.LibPQ),                // "pgfast-pq"
	//		pgfast.WithStateHook(func(st pgfast.State, cause error) { log.Print(st, cause) }),
	//		pgfast.WithLogger(slog.Default()))
	//	db := sql.OpenDB(c) // db.Close() closes c too
	t0 := time.Now()
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return err
	}
	defer func() {
		db.Close() // stops every goroutine pgfast started
		say("• db closed")
	}()
	say("• sql.Open returned in %s; connecting in the background", roundDur(time.Since(t0)))

	// sql.Open takes no options, but the connector behind db is at hand.
	c := pgfast.ConnectorOf(db)
	stopWatch := watchState(c)
	defer stopWatch()

	if srv != nil {
		// Ready with a short deadline says what each address answered.
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := pgfast.Ready(short, db)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			return errors.New("something answers on the throwaway server's port before it was started")
		}
		say("• Ready(ctx, db) with a 300ms deadline, while the server is down:\n    %s",
			strings.Replace(err.Error(), ": last error: ", "\n    last error: ", 1))

		// A query does not wait out a dead server's timeouts: it fails at once.
		t0 := time.Now()
		var one int
		err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		say("• a query while down fails in %s: errors.Is(err, pgfast.ErrNotReady) = %t",
			roundDur(time.Since(t0)), errors.Is(err, pgfast.ErrNotReady))

		t0 = time.Now()
		if err := srv.Start(); err != nil {
			return err
		}
		say("• server started (pg_ctl start took %s)", roundDur(time.Since(t0)))
	}

	if srv == nil {
		say("• waiting up to 15s for the database (Ctrl+C to stop)…")
	}
	t0 = time.Now()
	wait, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pgfast.Ready(wait, db); err != nil {
		return err
	}
	waited := time.Since(t0)
	stopWatch() // prints the last change
	say("• pgfast.Ready returned after %s", roundDur(waited))

	if err := queries(ctx, db); err != nil {
		return err
	}
	s := c.Stats()
	say("• stats: dials=%d failed=%d state_changes=%d", s.Dials, s.DialFailures, s.StateChanges)
	return nil
}

// queries runs the demo's SQL. A temporary table belongs to one session, so
// the demo pins one connection; it leaves nothing behind on a real database.
func queries(ctx context.Context, db *sql.DB) error {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := db.Conn(qctx)
	if err != nil {
		return err
	}
	defer conn.Close()

	var version string
	if err := conn.QueryRowContext(qctx, "SHOW server_version").Scan(&version); err != nil {
		return err
	}
	say("• connected to PostgreSQL %s", version)

	if _, err := conn.ExecContext(qctx, `CREATE TEMPORARY TABLE todo (
		id    serial PRIMARY KEY,
		title text NOT NULL,
		done  boolean NOT NULL DEFAULT false)`); err != nil {
		return err
	}
	for _, title := range []string{"open a database", "wait until ready", "run a query"} {
		if _, err := conn.ExecContext(qctx, "INSERT INTO todo (title) VALUES ($1)", title); err != nil {
			return err
		}
	}

	// A transaction: both updates or neither.
	tx, err := conn.BeginTx(qctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	if _, err := tx.ExecContext(qctx, "UPDATE todo SET done = true WHERE id <= $1", 2); err != nil {
		return err
	}
	if _, err := tx.ExecContext(qctx, "INSERT INTO todo (title, done) VALUES ($1, $2)", "clean up", false); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}

	rows, err := conn.QueryContext(qctx, "SELECT id, title, done FROM todo ORDER BY id")
	if err != nil {
		return err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var (
			id    int
			title string
			done  bool
		)
		if err := rows.Scan(&id, &title, &done); err != nil {
			return err
		}
		mark := " "
		if done {
			mark = "x"
		}
		lines = append(lines, fmt.Sprintf("    [%s] %d. %s", mark, id, title))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	say("• todo (inserted with args, updated in a transaction):\n%s", strings.Join(lines, "\n"))
	return nil
}

// watchState prints c's state whenever it changes, with the cause when it is
// down, until the returned function is called; that function looks once more,
// waits for the watcher to stop, and may be called more than once. It polls:
// sql.Open takes no options, so it cannot install pgfast.WithStateHook.
func watchState(c *pgfast.Connector) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := pgfast.State(-1)
		for {
			if s := c.Stats(); s.State != last {
				last = s.State
				if s.State == pgfast.StateDown && s.LastError != nil {
					say("  [state] %s (%s)", s.State, rootCause(s.LastError))
				} else {
					say("  [state] %s", s.State)
				}
			}
			select {
			case <-done:
				if c.State() == last {
					return
				}
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-stopped
	}
}

// roundDur rounds d for display.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(10 * time.Millisecond)
}

// rootCause returns the innermost error of err's chain, such as "connection
// refused" or the server's own message, for a one-line summary.
func rootCause(err error) string {
	for {
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		case interface{ Unwrap() []error }:
			if errs := u.Unwrap(); len(errs) > 0 {
				next = errs[0]
			}
		}
		if next == nil {
			line, _, _ := strings.Cut(err.Error(), "\n")
			return line
		}
		err = next
	}
}

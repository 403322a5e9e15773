package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestRoleViolation is the judgement of a server's reported parameters
// against target_session_attrs. "" stands for a parameter the server does not
// report (PostgreSQL before 14): such a server is not judged on it.
func TestRoleViolation(t *testing.T) {
	type params struct{ standby, readOnly string }
	var (
		primaryRW = params{"off", "off"}
		primaryRO = params{"off", "on"} // default_transaction_read_only=on: a demoted primary
		hot       = params{"on", "on"}  // a hot standby reports both
		hotOdd    = params{"on", "off"}
		old       = params{"", ""}
		oldRO     = params{"", "on"}
	)
	cases := []struct {
		tsa       string
		p         params
		violation bool
	}{
		{"any", primaryRW, false}, {"any", primaryRO, false}, {"any", hot, false}, {"any", old, false},
		{"prefer-standby", primaryRW, false}, {"prefer-standby", hot, false},

		{"read-write", primaryRW, false},
		{"read-write", primaryRO, true},
		{"read-write", hot, true},
		{"read-write", hotOdd, true},
		{"read-write", old, false},
		{"read-write", oldRO, true},

		{"primary", primaryRW, false},
		{"primary", primaryRO, false}, // read-only but not in recovery: still the primary
		{"primary", hot, true},
		{"primary", old, false},

		{"standby", hot, false},
		{"standby", hotOdd, false},
		{"standby", primaryRW, true},
		{"standby", primaryRO, true},
		{"standby", old, false},

		{"read-only", hot, false},
		{"read-only", primaryRO, false},
		{"read-only", hotOdd, false},
		{"read-only", primaryRW, true},
		{"read-only", old, false},
	}
	for _, tc := range cases {
		param := func(name string) string {
			switch name {
			case "in_hot_standby":
				return tc.p.standby
			case "default_transaction_read_only":
				return tc.p.readOnly
			}
			return ""
		}
		why, _ := roleViolation(tc.tsa, paramFunc(param))
		if (why != "") != tc.violation {
			t.Errorf("roleViolation(%s, in_hot_standby=%q default_transaction_read_only=%q) = %q, want violation %v",
				tc.tsa, tc.p.standby, tc.p.readOnly, why, tc.violation)
		}
	}
}

// paramFunc serves ParameterStatus from a function.
type paramFunc func(string) string

func (f paramFunc) ParameterStatus(key string) string { return f(key) }

// TestHealthReadOnlyByChoiceDoesNotEvict: on a read-write pool, a 25006 that
// the application brought on itself (a write in a transaction it opened READ
// ONLY, or in a session it made read-only) says nothing about the server's
// role. It must not evict the address: the other connections, including one
// running a query at that moment, keep working and the connector stays
// Ready.
func TestHealthReadOnlyByChoiceDoesNotEvict(t *testing.T) {
	srv := server(t)
	cases := []struct {
		name    string
		readErr func(ctx context.Context, db *sql.DB) error // makes one connection see 25006
	}{
		{"read-only transaction", func(ctx context.Context, db *sql.DB) error {
			tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer tx.Rollback()
			_, err = tx.ExecContext(ctx, "CREATE TABLE hc_read_only_probe (i int)")
			return err
		}},
		{"read-only session", func(ctx context.Context, db *sql.DB) error {
			conn, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "SET default_transaction_read_only = on"); err != nil {
				return err
			}
			_, err = conn.ExecContext(ctx, "CREATE TABLE hc_read_only_probe (i int)")
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b backendCase) {
				db := openT(t, b, withKV(srv.DSN(pgtest.TrustUser), "target_session_attrs=read-write"))
				db.SetMaxIdleConns(4)
				readyT(t, db, 10*time.Second)
				c := ConnectorOf(db)
				hcHoldPIDs(t, db, 3)
				before := c.Stats()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()

				// A query in flight on another connection meanwhile.
				sleeper := make(chan error, 1)
				sleeping, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer sleeping.Close()
				go func() {
					_, err := sleeping.ExecContext(ctx, "SELECT pg_sleep(0.3)")
					sleeper <- err
				}()
				time.Sleep(50 * time.Millisecond)

				err = tc.readErr(ctx, db)
				var coded interface{ SQLState() string }
				if !errors.As(err, &coded) || coded.SQLState() != "25006" {
					t.Fatalf("the write in read-only mode: %v, want SQLSTATE 25006", err)
				}
				if err := <-sleeper; err != nil {
					t.Errorf("a query running on another connection failed: %v", err)
				}
				for i := range 5 {
					if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
						t.Errorf("query %d after the application's own 25006: %v", i, err)
					}
				}
				after := c.Stats()
				if after.Evictions != before.Evictions || after.StateChanges != before.StateChanges {
					t.Errorf("the application's own 25006 evicted the server: evictions %d → %d, state changes %d → %d, state %v, last error %v",
						before.Evictions, after.Evictions, before.StateChanges, after.StateChanges, after.State, after.LastError)
				}
			})
		})
	}
}

// TestHealthWrongRoleErrorReachesCaller: the connection that receives a 25006
// on a read-write pool must return the server's error, with the backend's own
// type (*pgconn.PgError, *pq.Error), whatever pgfast concludes from it about
// the server. Fresh connectors, so that every round is a first 25006.
func TestHealthWrongRoleErrorReachesCaller(t *testing.T) {
	srv := server(t)
	const rounds = 30 // the loss is a race: seen in 20–40% of rounds with -race
	forEachBackend(t, func(t *testing.T, b backendCase) {
		wrong := 0
		for i := range rounds {
			c, err := NewConnector(withKV(srv.DSN(pgtest.TrustUser), "target_session_attrs=read-write"), WithBackend(b.backend))
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = func() error {
				defer cancel()
				defer db.Close()
				if err := c.Ready(ctx); err != nil {
					t.Fatalf("Ready: %v", err)
				}
				tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					t.Fatalf("BeginTx: %v", err)
				}
				defer tx.Rollback()
				_, err = tx.ExecContext(ctx, "CREATE TABLE hc_read_only_probe (i int)")
				return err
			}()
			if !hcIsBackendError(b, err, "25006") {
				if wrong++; wrong <= 3 {
					t.Errorf("round %d: the write in a read-only transaction returned %v (%T), want the backend's error with SQLSTATE 25006", i, err, err)
				}
			}
		}
		if wrong > 0 {
			t.Errorf("%d of %d rounds lost the server's 25006 error", wrong, rounds)
		}
	})
}

// hcIsBackendError reports whether err is the backend's own error type with
// SQLSTATE code.
func hcIsBackendError(b backendCase, err error, code string) bool {
	switch b.backend {
	case PGX:
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == code
	case LibPQ:
		var pqErr *pq.Error
		return errors.As(err, &pqErr) && string(pqErr.Code) == code
	}
	return false
}

// TestEvictionNeverRunsAStatementTwice: shutting down the socket under a
// statement in flight must give the caller an error; pgx would otherwise
// take the closed socket for a statement never sent, and database/sql would
// run it again on a fresh connection.
func TestEvictionNeverRunsAStatementTwice(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db := openT(t, b, srv.DSN(pgtest.TrustUser))
		readyT(t, db, 10*time.Second)
		db.SetMaxOpenConns(1)
		table := "evict_once_" + strings.ReplaceAll(b.name, "-", "_")
		mustExec(t, db, "DROP TABLE IF EXISTS "+table)
		mustExec(t, db, "CREATE TABLE "+table+" (x int)")

		ctx := context.Background()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var tc net.Conn
		if err := conn.Raw(func(dc any) error {
			tc = socketOf(dc.(driver.Conn))
			return nil
		}); err != nil || !netx.Tracked(tc) {
			t.Fatalf("no tracked socket: %v", err)
		}
		conn.Close() // back to the pool: the next statement runs on it

		time.AfterFunc(300*time.Millisecond, func() { netx.ShutDown(tc) })
		start := time.Now()
		_, err = db.ExecContext(ctx, "INSERT INTO "+table+" SELECT 1 FROM pg_sleep(1)")
		if err == nil {
			t.Fatalf("the statement whose socket was shut down succeeded after %v: it ran again", time.Since(start))
		}
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("the caller waited %v after the shutdown", d)
		}
		time.Sleep(1200 * time.Millisecond) // let a cancelled or orphaned run finish
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n > 1 {
			t.Fatalf("rows = %d (%v), want at most 1", n, err)
		}
	})
}

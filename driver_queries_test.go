package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/pgtest"
)

func TestQueriesBehaveAsTheRawDriver(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		for i, dsn := range []string{srv.DSN(pgtest.TrustUser), srv.URL(pgtest.ScramUser)} {
			db := openT(t, b, dsn)
			readyT(t, db, 10*time.Second)
			ctx := context.Background()
			table := fmt.Sprintf("t_%s_%d", strings.ReplaceAll(b.name, "-", "_"), i)

			mustExec(t, db, "DROP TABLE IF EXISTS "+table)
			mustExec(t, db, "CREATE TABLE "+table+" (id int PRIMARY KEY, name text)")

			// Query with an argument.
			var s string
			if err := db.QueryRowContext(ctx, "SELECT $1::text || '!'", "hi").Scan(&s); err != nil || s != "hi!" {
				t.Fatalf("query with argument: %q %v", s, err)
			}
			// A driver.Valuer argument (named value conversion).
			if err := db.QueryRowContext(ctx, "SELECT $1::text", upper("abc")).Scan(&s); err != nil || s != "ABC" {
				t.Fatalf("Valuer argument: %q %v", s, err)
			}

			// Transactions: rollback discards, commit keeps.
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("INSERT INTO "+table+" VALUES ($1, $2)", 1, "rolled back"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			tx, err = db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("INSERT INTO "+table+" VALUES ($1, $2)", 2, "kept"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n != 1 {
				t.Fatalf("count after tx: %d %v", n, err)
			}

			// Prepared statements.
			stmt, err := db.PrepareContext(ctx, "SELECT name FROM "+table+" WHERE id = $1")
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if err := stmt.QueryRow(2).Scan(&s); err != nil || s != "kept" {
					t.Fatalf("prepared: %q %v", s, err)
				}
			}
			stmt.Close()

			// Error types reach the caller unchanged.
			_, err = db.Exec("INSERT INTO "+table+" VALUES ($1, $2)", 2, "dup")
			assertUniqueViolation(t, b, err)

			// Ping.
			if err := db.PingContext(ctx); err != nil {
				t.Fatalf("Ping: %v", err)
			}
			db.Close()
		}
	})
}

func assertUniqueViolation(t *testing.T, b backendCase, err error) {
	t.Helper()
	switch b.backend {
	case PGX:
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			t.Fatalf("want *pgconn.PgError 23505, got %T %v", err, err)
		}
	case LibPQ:
		var pqErr *pq.Error
		if !errors.As(err, &pqErr) || pqErr.Code != "23505" {
			t.Fatalf("want *pq.Error 23505, got %T %v", err, err)
		}
	}
}

// upper is a driver.Valuer.
type upper string

func (u upper) Value() (driver.Value, error) { return strings.ToUpper(string(u)), nil }

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestRawGivesTheNativeConnection(t *testing.T) {
	srv := server(t)
	ctx := context.Background()

	t.Run("pgfast CopyFrom through *stdlib.Conn", func(t *testing.T) {
		db := openT(t, backends[0], srv.DSN(pgtest.TrustUser))
		mustExec(t, db, "DROP TABLE IF EXISTS copy_pgx")
		mustExec(t, db, "CREATE TABLE copy_pgx (id int, name text)")
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		err = conn.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			rows := [][]any{{1, "a"}, {2, "b"}, {3, "c"}}
			n, err := pc.CopyFrom(ctx, pgx.Identifier{"copy_pgx"}, []string{"id", "name"}, pgx.CopyFromRows(rows))
			if err == nil && n != 3 {
				err = fmt.Errorf("copied %d rows", n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM copy_pgx").Scan(&n); err != nil || n != 3 {
			t.Fatalf("count %d %v", n, err)
		}
	})

	t.Run("pgfast-pq CopyIn and Unwrap", func(t *testing.T) {
		db := openT(t, backends[1], srv.DSN(pgtest.TrustUser))
		mustExec(t, db, "DROP TABLE IF EXISTS copy_pq")
		mustExec(t, db, "CREATE TABLE copy_pq (id int, name text)")
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		//lint:ignore SA1019 drop-in: code written for lib/pq uses pq.CopyIn, which must keep working
		stmt, err := tx.Prepare(pq.CopyIn("copy_pq", "id", "name"))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := stmt.Exec(i, fmt.Sprint("row", i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := stmt.Exec(); err != nil {
			t.Fatal(err)
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM copy_pq").Scan(&n); err != nil || n != 3 {
			t.Fatalf("count %d %v", n, err)
		}

		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		err = conn.Raw(func(dc any) error {
			pc, ok := dc.(*PQConn)
			if !ok {
				return fmt.Errorf("Raw gave %T", dc)
			}
			if fmt.Sprintf("%T", pc.Unwrap()) != "*pq.conn" {
				return fmt.Errorf("Unwrap gave %T", pc.Unwrap())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestTCPKeysNeverReachTheServer(t *testing.T) {
	srv := server(t)
	keys := []string{"keepalives=1", "keepalives_idle=7", "keepalives_interval=3", "keepalives_count=4", "tcp_user_timeout=9000", "pgfast_min_conns=2"}
	forEachBackend(t, func(t *testing.T, b backendCase) {
		dsn := withKV(srv.DSN(pgtest.TrustUser), keys...)
		db := openT(t, b, dsn)
		readyT(t, db, 10*time.Second)
		var s string
		if err := db.QueryRow("SHOW tcp_user_timeout").Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s != "0" {
			t.Errorf("server-side tcp_user_timeout = %q: the key reached the server", s)
		}
		cfg := ConnectorOf(db).Config()
		if cfg.KeepalivesIdle != 7*time.Second || cfg.KeepalivesInterval != 3*time.Second || cfg.KeepalivesCount != 4 || cfg.TCPUserTimeout != 9*time.Second || cfg.MinConns != 2 {
			t.Errorf("config = %+v", cfg)
		}

		// The raw driver sends keepalives to the server, which refuses it.
		raw, err := sql.Open(b.raw, withKV(srv.DSN(pgtest.TrustUser), "keepalives_idle=7"))
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := raw.PingContext(ctx); err == nil {
			t.Logf("note: raw %s accepted keepalives_idle", b.raw)
		} else {
			t.Logf("raw %s with keepalives_idle: %v", b.raw, err)
		}
	})
}

func TestWarmConnectionsAreHandedOutFirst(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db := openT(t, b, withKV(srv.DSN(pgtest.TrustUser), "pgfast_min_conns=2"))
		c := ConnectorOf(db)
		readyT(t, db, 10*time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for c.Stats().WarmIdle < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if st := c.Stats(); st.WarmIdle != 2 {
			t.Fatalf("warm idle = %d, want 2 (%+v)", st.WarmIdle, st)
		}
		dials := c.Stats().Dials
		if _, err := db.Exec("SELECT 1"); err != nil {
			t.Fatal(err)
		}
		st := c.Stats()
		if st.WarmHandedOut != 1 || st.Dials != dials {
			t.Fatalf("after one query: %+v (dials before %d)", st, dials)
		}
	})
}

func TestCloseStopsEverything(t *testing.T) {
	srv := server(t)
	leaks := goleak.IgnoreCurrent()
	forEachBackend(t, func(t *testing.T, b backendCase) {
		// A ready one with warm connections and a pool in use.
		db, err := sql.Open(b.name, withKV(srv.DSN(pgtest.TrustUser), "pgfast_min_conns=3"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		readyT(t, db, 10*time.Second)
		if _, err := db.Exec("SELECT 1"); err != nil {
			t.Fatal(err)
		}
		// One that is still trying to connect.
		down, err := sql.Open(b.name, fmt.Sprintf("host=127.0.0.1 port=%d user=x sslmode=disable", freeLoopbackPort(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		time.Sleep(50 * time.Millisecond)
		c := ConnectorOf(db)
		db.Close()
		down.Close()
		c.Close() // idempotent
		if st := c.State(); st != StateClosed {
			t.Fatalf("state after Close = %v", st)
		}
		if _, err := c.Connect(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Connect after Close: %v", err)
		}
		if err := c.Ready(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Ready after Close: %v", err)
		}
	})
	goleak.VerifyNone(t, leaks)
}

func TestNewConnectorWithOpenDB(t *testing.T) {
	srv := server(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var states []State
			var mu sync.Mutex
			c, err := NewConnector(srv.URL(pgtest.TrustUser), WithBackend(b.backend), WithMinConns(1),
				WithStateHook(func(s State, _ error) { mu.Lock(); states = append(states, s); mu.Unlock() }))
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			defer db.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			if ConnectorOf(db) != c {
				t.Fatal("ConnectorOf(sql.OpenDB(c)) != c")
			}
			if c.Backend() != b.backend {
				t.Fatalf("backend %v", c.Backend())
			}
			// The hook runs on a goroutine of its own: it may hear of
			// Ready just after Ready returned.
			seen := func() []State { mu.Lock(); defer mu.Unlock(); return slices.Clone(states) }
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if s := seen(); len(s) > 0 && s[len(s)-1] == StateReady {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("state hook saw %v", seen())
				}
			}
		})
	}
}

func TestDriverOpenConnectsSynchronously(t *testing.T) {
	srv := server(t)
	for _, d := range []*Driver{pgxDriver, pqDriver} {
		dc, err := d.Open(srv.DSN(pgtest.TrustUser))
		if err != nil {
			t.Fatalf("%v: %v", d.backend, err)
		}
		dc.Close()
	}
}

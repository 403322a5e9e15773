package pgfast_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast"
)

// The examples with an Output section run without a database: they point at
// 127.0.0.1:1, a loopback port where nothing listens, so every connection
// attempt is refused at once.
const downDSN = "postgres://app@127.0.0.1:1/app?sslmode=disable"

// sql.Open returns at once and connects in the background; Ready waits for a
// verified connection within a context and says what went wrong otherwise.
// While the database is down a query fails at once with ErrNotReady instead
// of waiting out a dead host's timeouts.
func Example() {
	db, err := sql.Open("pgfast", "postgres://app@127.0.0.1:1/app?sslmode=disable") // nothing listens there
	if err != nil {
		log.Fatal(err) // a bad DSN: *pgfast.ConfigError
	}
	defer db.Close() // stops every goroutine pgfast started

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond) // a real program waits longer
	defer cancel()
	if err := pgfast.Ready(ctx, db); err != nil {
		// pgfast: database not ready (down, waited 500ms): 127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused: ...
		fmt.Println("not ready:", errors.Is(err, pgfast.ErrNotReady))
	}

	start := time.Now()
	var one int
	err = db.QueryRowContext(context.Background(), "SELECT 1").Scan(&one)
	fmt.Println("query not ready:", errors.Is(err, pgfast.ErrNotReady))
	fmt.Println("failed at once:", time.Since(start) < 100*time.Millisecond)
	// Output:
	// not ready: true
	// query not ready: true
	// failed at once: true
}

// Opening a connector of your own lets you pass options; sql.OpenDB turns it
// into a *sql.DB, whose Close closes the connector too.
func ExampleNewConnector() {
	c, err := pgfast.NewConnector(downDSN, pgfast.WithBackend(pgfast.LibPQ), pgfast.WithMinConns(2))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()

	cfg := c.Config() // the effective settings, defaults applied
	fmt.Println(c.Backend(), cfg.ConnectTimeout, cfg.TCPUserTimeout, cfg.MinConns, cfg.Hosts[0])
	// Output:
	// lib/pq 10s 0s 2 127.0.0.1:1
}

// A bad DSN is reported by sql.Open (or NewConnector), not at the first
// query: a *ConfigError naming the key, which never contains the password.
// An unknown pgfast_ key is an error, so a typo cannot silently disable a
// safety net.
func ExampleConfigError() {
	for _, dsn := range []string{
		"host=127.0.0.1 password=hunter2 keepalives_idle=soon",
		"postgres://app:hunter2@127.0.0.1/app?pgfast_min_con=4",
	} {
		_, err := sql.Open("pgfast", dsn)
		var ce *pgfast.ConfigError
		if errors.As(err, &ce) {
			fmt.Printf("key %s; password shown: %t\n", ce.Key, strings.Contains(err.Error(), "hunter2"))
		}
	}
	// Output:
	// key keepalives_idle; password shown: false
	// key pgfast_min_con; password shown: false
}

// Wait for the database at start-up, bounded, and say why it is not there.
func ExampleReady() {
	db, err := sql.Open("pgfast", "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pgfast.Ready(ctx, db); err != nil {
		// e.g. pgfast: database not ready (down, waited 5s): 10.0.0.7:5432: connection refused; ...
		log.Fatal(err)
	}
}

// A *NotReadyError tells the connector's state and what each address last
// answered.
func ExampleNotReadyError() {
	db, err := sql.Open("pgfast", downDSN)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = pgfast.Ready(ctx, db)

	var nre *pgfast.NotReadyError
	if errors.As(err, &nre) {
		fmt.Println("state:", nre.State)
		fmt.Println("context ended:", errors.Is(err, context.DeadlineExceeded))
		for _, a := range nre.Addrs {
			fmt.Println(a.Addr, "refused:", errors.Is(a.Err, syscall.ECONNREFUSED))
		}
	}
	// Output:
	// state: down
	// context ended: true
	// 127.0.0.1:1 refused: true
}

// A *sql.DB made by sql.Open cannot take options, but its connector is at
// hand.
func ExampleConnectorOf() {
	db, err := sql.Open("pgfast-pq", downDSN)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	c := pgfast.ConnectorOf(db) // nil for a *sql.DB that does not use pgfast
	fmt.Println(c.Backend())
	// Output:
	// lib/pq
}

// The connector logs each state change once, with its cause: no storms while
// a database stays down.
func ExampleWithLogger() {
	c, err := pgfast.NewConnector("postgres://app@db.internal/app",
		pgfast.WithLogger(slog.Default().With("db", "main")))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	// level=WARN msg="pgfast: state changed" db=main state=down cause="..."
	// level=INFO msg="pgfast: state changed" db=main state=ready
}

// A hook sees every state change; it runs on the connector's goroutine, so
// it must be quick (here it hands the change to a channel).
func ExampleWithStateHook() {
	changes := make(chan pgfast.State, 16)
	c, err := pgfast.NewConnector(downDSN, pgfast.WithStateHook(func(st pgfast.State, cause error) {
		select {
		case changes <- st:
		default: // never block the connector
		}
	}))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)

	next := func() any {
		select {
		case st := <-changes:
			return st
		case <-time.After(5 * time.Second):
			return "no change within 5s"
		}
	}
	fmt.Println(next())
	db.Close()
	fmt.Println(next())
	// Output:
	// down
	// closed
}

// Keep several connections warm from the start (as pgfast_min_conns=4 in
// the DSN would).
func ExampleWithMinConns() {
	c, err := pgfast.NewConnector(downDSN, pgfast.WithMinConns(4))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	fromDSN, err := pgfast.NewConnector(downDSN + "&pgfast_min_conns=4")
	if err != nil {
		log.Fatal(err)
	}
	defer fromDSN.Close()

	fmt.Println(c.Config().MinConns, fromDSN.Config().MinConns)
	// Output:
	// 4 4
}

// With WithWaitReady(true) (pgfast_wait_ready=1) a query made while the
// database is down waits for it within its context instead of failing at
// once.
func ExampleWithWaitReady() {
	c, err := pgfast.NewConnector(downDSN, pgfast.WithWaitReady(true))
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()

	start := time.Now() // before the context's timer starts
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = db.PingContext(ctx)
	fmt.Println(errors.Is(err, pgfast.ErrNotReady), errors.Is(err, context.DeadlineExceeded))
	fmt.Println("waited for the context:", time.Since(start) >= 300*time.Millisecond)
	// Output:
	// true true
	// waited for the context: true
}

// Ready returns nil once a verified connection exists, a *NotReadyError when
// the context ends first, and ErrClosed after Close.
func ExampleConnector_Ready() {
	c, err := pgfast.NewConnector(downDSN)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	fmt.Println(errors.Is(c.Ready(ctx), pgfast.ErrNotReady))

	db.Close()
	fmt.Println(c.Ready(context.Background()) == pgfast.ErrClosed)
	// Output:
	// true
	// true
}

// State and Stats read the connector without any I/O: cheap enough for a
// health endpoint that must answer at once whatever the database does.
func ExampleConnector_Stats() {
	db, err := sql.Open("pgfast", downDSN)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	c := pgfast.ConnectorOf(db)

	_ = db.PingContext(context.Background()) // fails at once: nothing listens there

	s := c.Stats()
	fmt.Println(s.State, c.State() == s.State, s.Dials >= 1, s.DialFailures >= 1, s.LastError != nil)
	// Output:
	// down true true true true
}

// Backend errors reach the caller unchanged, so errors.As with pgx's
// *pgconn.PgError (or lib/pq's *pq.Error on "pgfast-pq") keeps working.
func Example_backendErrors() {
	db, err := sql.Open("pgfast", "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	_, err = db.Exec("INSERT INTO users (email) VALUES ($1)", "a@example.com")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		fmt.Println("already registered")
	}
	var pqErr *pq.Error // the same with sql.Open("pgfast-pq", ...)
	if errors.As(err, &pqErr) && pqErr.Code == "23505" {
		fmt.Println("already registered")
	}
}

// With "pgfast", conn.Raw hands out pgx's own *stdlib.Conn, so native pgx
// code (CopyFrom, LISTEN/NOTIFY) works unchanged.
func Example_rawPGX() {
	db, err := sql.Open("pgfast", "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()

	conn, err := db.Conn(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn() // *pgx.Conn
		_, err := pc.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"email"},
			pgx.CopyFromRows([][]any{{"a@example.com"}, {"b@example.com"}}))
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}

// With "pgfast-pq", conn.Raw hands out a *PQConn; Unwrap returns lib/pq's
// own connection.
func ExamplePQConn() {
	db, err := sql.Open("pgfast-pq", "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()

	conn, err := db.Conn(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		inner := dc.(*pgfast.PQConn).Unwrap() // lib/pq's driver.Conn
		fmt.Printf("%T\n", inner)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// ReadyHandler answers a readiness probe from the connector's state, without
// touching the database: 200 when ready, else 503 with why.
func ExampleReadyHandler() {
	db, err := sql.Open("pgfast", downDSN)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	_ = db.PingContext(context.Background()) // fails at once: nothing listens there

	mux := http.NewServeMux()
	mux.Handle("GET /readyz", pgfast.ReadyHandler(db)) // a readiness or startup probe, never liveness
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var r struct { // the documented body, the fields this example reads
		State     string `json:"state"`
		LastError string `json:"last_error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Code, r.State, strings.Contains(r.LastError, "refused"))
	// Output:
	// 503 down true
}

package pgfast

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// queryTracer records the SQL of every query pgx traces.
type queryTracer struct {
	mu  sync.Mutex
	sql []string
}

func (q *queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	q.mu.Lock()
	q.sql = append(q.sql, d.SQL)
	q.mu.Unlock()
	return ctx
}

func (q *queryTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryTracer) saw(sql string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range q.sql {
		if s == sql {
			return true
		}
	}
	return false
}

// parsePgxConfig parses the test server's DSN with pgx.
func parsePgxConfig(t *testing.T, extra ...string) *pgx.ConnConfig {
	t.Helper()
	cc, err := pgx.ParseConfig(withKV(server(t).DSN("postgres"), append([]string{"connect_timeout=5"}, extra...)...))
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// openBothFromConfig opens cc on raw pgx (stdlib.OpenDB) and on pgfast
// (NewConnectorFromConfig), closed at the test's end.
func openBothFromConfig(t *testing.T, cc *pgx.ConnConfig) map[string]*sql.DB {
	t.Helper()
	c, err := NewConnectorFromConfig(cc)
	if err != nil {
		t.Fatalf("NewConnectorFromConfig: %v", err)
	}
	dbs := map[string]*sql.DB{"pgx": stdlib.OpenDB(*cc), "pgfast": sql.OpenDB(c)}
	for _, db := range dbs {
		t.Cleanup(func() { db.Close() })
	}
	return dbs
}

// TestNewConnectorFromConfigHonoursHooks: a Tracer sees the queries,
// OnNotice and OnNotification fire, AfterConnect runs: as on raw pgx.
func TestNewConnectorFromConfigHonoursHooks(t *testing.T) {
	cc := parsePgxConfig(t)
	tracer := &queryTracer{}
	notices := make(chan string, 16)
	notifications := make(chan string, 16)
	var afterConnect atomic.Int32
	cc.Tracer = tracer
	cc.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n.Message }
	cc.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { notifications <- n.Payload }
	cc.AfterConnect = func(context.Context, *pgconn.PgConn) error { afterConnect.Add(1); return nil }

	for name, db := range openBothFromConfig(t, cc) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		before := afterConnect.Load()
		q := "select 4217 /* " + name + " */"
		var n int
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 4217 {
			t.Fatalf("%s: %s: %d, %v", name, q, n, err)
		}
		if !tracer.saw(q) {
			t.Errorf("%s: the Tracer did not see %q", name, q)
		}
		if afterConnect.Load() == before && name == "pgx" {
			t.Errorf("%s: AfterConnect did not run", name)
		}
		if afterConnect.Load() == 0 {
			t.Errorf("%s: AfterConnect never ran", name)
		}
		if _, err := db.ExecContext(ctx, `DO $$ BEGIN RAISE NOTICE 'notice from `+name+`'; END $$`); err != nil {
			t.Fatalf("%s: RAISE NOTICE: %v", name, err)
		}
		expect(t, name, "OnNotice", notices, "notice from "+name)
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "LISTEN pgfast_cfg"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "NOTIFY pgfast_cfg, 'notification from "+name+"'"); err != nil {
			t.Fatal(err)
		}
		expect(t, name, "OnNotification", notifications, "notification from "+name)
		conn.Close()
	}
}

// expect waits (bounded) for want on ch.
func expect(t *testing.T, name, what string, ch <-chan string, want string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-timeout:
			t.Errorf("%s: %s never got %q", name, what, want)
			return
		}
	}
}

// TestNewConnectorFromConfigTLSConfig: a TLSConfig set on the ConnConfig is
// used. The test server has no TLS, so raw pgx and pgfast both fail with
// pgx's "server refused TLS connection".
func TestNewConnectorFromConfigTLSConfig(t *testing.T) {
	cc := parsePgxConfig(t)
	cc.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	for name, db := range openBothFromConfig(t, cc) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "server refused TLS connection") {
			t.Errorf("%s: Ping with a TLSConfig on a server without TLS: %v", name, err)
		}
	}
}

// TestNewConnectorFromConfigSettings: pgfast's keys come out of
// RuntimeParams (the server would refuse them) into Config; the caller's
// ConnConfig is left as it was; a LookupFunc resolves for pgfast's dialer.
func TestNewConnectorFromConfigSettings(t *testing.T) {
	cc := parsePgxConfig(t, "keepalives_idle=7", "pgfast_min_conns=2")
	var lookups atomic.Int32
	host := cc.Host
	cc.Host = "pgfast-config-test.invalid"
	cc.LookupFunc = func(_ context.Context, h string) ([]string, error) {
		lookups.Add(1)
		if h != cc.Host {
			return nil, &net.DNSError{Err: "unknown", Name: h, IsNotFound: true}
		}
		return []string{host}, nil
	}
	c, err := NewConnectorFromConfig(cc)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	if got := c.Config(); got.KeepalivesIdle != 7*time.Second || got.MinConns != 2 {
		t.Errorf("Config: keepalives_idle %v, min conns %d; want 7s and 2", got.KeepalivesIdle, got.MinConns)
	}
	if _, ok := cc.RuntimeParams["keepalives_idle"]; !ok {
		t.Error("the caller's RuntimeParams lost keepalives_idle")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if lookups.Load() == 0 {
		t.Error("the ConnConfig's LookupFunc was not used")
	}
}

// TestNewConnectorFromConfigRefuses: a custom DialFunc, a hand-built
// ConnConfig and a nil one are *ConfigErrors, not a panic later.
func TestNewConnectorFromConfigRefuses(t *testing.T) {
	cc, err := pgx.ParseConfig("host=127.0.0.1 user=u")
	if err != nil {
		t.Fatal(err)
	}
	cc.DialFunc = (&net.Dialer{Timeout: time.Second}).DialContext
	if _, err := NewConnectorFromConfig(cc); err != nil {
		t.Errorf("a net.Dialer's DialContext (pgx's default kind): %v", err)
	}
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) { return nil, errors.New("mine") }
	var ce *ConfigError
	if _, err := NewConnectorFromConfig(cc); !errors.As(err, &ce) || ce.Key != "DialFunc" {
		t.Errorf("a custom DialFunc: %v, want a *ConfigError for DialFunc", err)
	}
	if _, err := NewConnectorFromConfig(&pgx.ConnConfig{}); !errors.As(err, &ce) {
		t.Errorf("a hand-built ConnConfig: %v, want a *ConfigError", err)
	}
	if _, err := NewConnectorFromConfig(nil); !errors.As(err, &ce) {
		t.Errorf("nil: %v, want a *ConfigError", err)
	}
	if _, err := NewConnectorFromConfig(cc, WithBackend(LibPQ)); !errors.As(err, &ce) {
		t.Errorf("with the lib/pq backend: %v, want a *ConfigError", err)
	}
}

// TestRegisterConnConfig: a name from pgfast.RegisterConnConfig opens with
// both "pgfast" and "pgx", with the config's Tracer; a name only pgx's
// stdlib.RegisterConnConfig made is a *ConfigError that says what to do.
func TestRegisterConnConfig(t *testing.T) {
	cc := parsePgxConfig(t)
	tracer := &queryTracer{}
	cc.Tracer = tracer
	name := RegisterConnConfig(cc)
	defer UnregisterConnConfig(name)
	for _, driverName := range []string{"pgx", "pgfast"} {
		db, err := sql.Open(driverName, name)
		if err != nil {
			t.Fatalf("sql.Open(%q, %q): %v", driverName, name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		q := "select 1 /* registered, " + driverName + " */"
		_, err = db.ExecContext(ctx, q)
		cancel()
		db.Close()
		if err != nil {
			t.Fatalf("%s: %v", driverName, err)
		}
		if !tracer.saw(q) {
			t.Errorf("%s: the registered config's Tracer did not see %q", driverName, q)
		}
	}

	stdName := stdlib.RegisterConnConfig(cc)
	defer stdlib.UnregisterConnConfig(stdName)
	_, err := sql.Open("pgfast", stdName)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "pgfast.RegisterConnConfig") {
		t.Errorf("sql.Open(\"pgfast\", a stdlib-only name): %v, want a *ConfigError naming pgfast.RegisterConnConfig", err)
	}
	t.Log(err)
}

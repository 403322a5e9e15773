package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
)

// The front ends the fault and failover suites run over: database/sql with
// each backend, and pgx's native pool (pgfast.NewPool). Each has its raw
// baseline (raw pgx stdlib, raw lib/pq, raw pgxpool.New), opened with the
// same DSN minus the keys only pgfast understands. A scenario takes a
// frontEnd and talks to its pool through feDB, so the same code runs the
// same scenario on all three; the connector (Ready, State, Stats) is the
// same type for all of them (ConnectorOf for a *sql.DB, PoolConnector for a
// pool).

// frontEnd is one row of the front-end table. The embedded backendCase gives
// the MEASURE lines' backend= name (pgfast, pgfast-pq, pgfast-pgxpool) and
// the raw baseline's name (pgx, postgres, pgxpool).
type frontEnd struct {
	backendCase
	pool bool // pgx's native pool instead of database/sql
}

// poolFrontEnd is the pgxpool row.
var poolFrontEnd = frontEnd{backendCase: backendCase{name: "pgfast-pgxpool", raw: "pgxpool", backend: PGX}, pool: true}

var frontEnds = []frontEnd{
	{backendCase: backends[0]},
	{backendCase: backends[1]},
	poolFrontEnd,
}

// feEnvFrontEnds narrows the front ends the fault and failover suites run
// over: a comma-separated list of front-end names (pgfast, pgfast-pq,
// pgfast-pgxpool) or raw baselines' names (pgx, postgres, pgxpool).
const feEnvFrontEnds = "PGFAST_FRONTENDS"

// forEachFrontEnd runs f as a subtest per front end (those PGFAST_FRONTENDS
// names, when it is set).
func forEachFrontEnd(t *testing.T, f func(t *testing.T, fe frontEnd)) {
	for _, fe := range selectedFrontEnds(t) {
		t.Run(fe.name, func(t *testing.T) { f(t, fe) })
	}
}

// forEachFrontEndConcurrently is forEachFrontEnd with the subtests running
// at the same time (t.Run from one goroutine each, which the testing package
// allows; t.Parallel would be limited to -test.parallel, GOMAXPROCS by
// default, 2 on CI). It returns when all of them have.
func forEachFrontEndConcurrently(t *testing.T, f func(t *testing.T, fe frontEnd)) {
	var wg sync.WaitGroup
	for _, fe := range selectedFrontEnds(t) {
		wg.Go(func() { t.Run(fe.name, func(t *testing.T) { f(t, fe) }) })
	}
	wg.Wait()
}

// selectedFrontEnds returns the rows PGFAST_FRONTENDS selects (all when
// unset); selecting none is an error, not a silent pass.
func selectedFrontEnds(t *testing.T) []frontEnd {
	want := os.Getenv(feEnvFrontEnds)
	if want == "" {
		return frontEnds
	}
	names := strings.Split(want, ",")
	var out []frontEnd
	for _, fe := range frontEnds {
		if slices.Contains(names, fe.name) || slices.Contains(names, fe.raw) {
			out = append(out, fe)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s=%q selects no front end (names: pgfast, pgfast-pq, pgfast-pgxpool, pgx, postgres, pgxpool)", feEnvFrontEnds, want)
	}
	return out
}

// feDefaultPoolSize is pool_max_conns for a pool opened without a size
// (pgxpool's own default, max(4, CPUs), is below what the scenarios hold).
const feDefaultPoolSize = 10

// sized returns dsn with the pool size for this front end: pool_max_conns
// for a pool (size 0: feDefaultPoolSize); a *sql.DB is sized after opening.
func (fe frontEnd) sized(dsn string, size int) string {
	if !fe.pool {
		return dsn
	}
	if size <= 0 {
		size = feDefaultPoolSize
	}
	return withKV(dsn, fmt.Sprintf("pool_max_conns=%d", size))
}

// open opens dsn with pgfast behind this front end. size > 0 caps the pool
// (SetMaxOpenConns and SetMaxIdleConns, or pool_max_conns); 0 leaves
// database/sql's defaults and gives a pool feDefaultPoolSize.
func (fe frontEnd) open(dsn string, size int, opts ...Option) (feDB, *Connector, error) {
	if fe.pool {
		p, err := NewPool(context.Background(), fe.sized(dsn, size), append([]Option{WithBackend(fe.backend)}, opts...)...)
		if err != nil {
			return nil, nil, err
		}
		return poolDB{p}, PoolConnector(p), nil
	}
	c, err := NewConnector(dsn, append([]Option{WithBackend(fe.backend)}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	db := sql.OpenDB(c)
	if size > 0 {
		db.SetMaxOpenConns(size)
		db.SetMaxIdleConns(size)
	}
	return sqlDB{db}, c, nil
}

// rawHooks are what a raw baseline may be given: a dial wrapper (to record
// its sockets) and a resolver. Either may be nil.
type rawHooks struct {
	dialed func(net.Conn, error) (net.Conn, error)
	lookup func(ctx context.Context, host string) ([]string, error)
}

// openRaw opens dsn with this front end's raw baseline. The raw drivers
// cannot take pgfast's keys (pgx and lib/pq would send keepalives* and
// tcp_user_timeout to the server): dsn must not have them. The hooks keep
// each driver's own default dialer (pgx's DialFunc from ParseConfig, lib/pq's
// zero net.Dialer), so it dials exactly as when opened by name.
func (fe frontEnd) openRaw(dsn string, size int, h rawHooks) (feDB, error) {
	wrapPGX := func(cc *pgx.ConnConfig) {
		if h.dialed != nil {
			dial := cc.DialFunc
			cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				return h.dialed(dial(ctx, network, addr))
			}
		}
		if h.lookup != nil {
			cc.LookupFunc = h.lookup
		}
	}
	var db *sql.DB
	switch {
	case fe.pool:
		cfg, err := pgxpool.ParseConfig(fe.sized(dsn, size))
		if err != nil {
			return nil, err
		}
		wrapPGX(cfg.ConnConfig)
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			return nil, err
		}
		return poolDB{p}, nil
	case fe.backend == PGX:
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		wrapPGX(cfg)
		db = stdlib.OpenDB(*cfg)
	case fe.backend == LibPQ:
		if h.lookup != nil {
			return nil, fmt.Errorf("lib/pq has no resolver hook")
		}
		c, err := pq.NewConnector(dsn)
		if err != nil {
			return nil, err
		}
		c.Dialer(&feRawPQDialer{dialed: h.dialed})
		db = sql.OpenDB(c)
	default:
		return nil, fmt.Errorf("unknown backend %v", fe.backend)
	}
	if size > 0 {
		db.SetMaxOpenConns(size)
		db.SetMaxIdleConns(size)
	}
	return sqlDB{db}, nil
}

// feRawPQDialer is lib/pq's default dialer (a zero net.Dialer) plus an
// optional recording hook.
type feRawPQDialer struct {
	d      net.Dialer
	dialed func(net.Conn, error) (net.Conn, error)
}

func (d *feRawPQDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *feRawPQDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *feRawPQDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nc, err := d.d.DialContext(ctx, network, address)
	if d.dialed != nil {
		return d.dialed(nc, err)
	}
	return nc, err
}

// feDB is a pool behind one front end: what the scenarios do with it.
type feDB interface {
	// Exec runs query and discards its result.
	Exec(ctx context.Context, query string, args ...any) error
	// QueryRowScan runs query and scans its one row (testkit.Querier).
	QueryRowScan(ctx context.Context, query string, args []any, dest ...any) error
	// Ping checks out a connection (dialling one if none is idle) and pings.
	Ping(ctx context.Context) error
	// Hold checks out n connections at once, runs SELECT 1 on each and
	// returns them: the pool then holds at least n idle connections.
	Hold(ctx context.Context, n int) error
	// Conn checks out one connection for the caller's exclusive use.
	Conn(ctx context.Context) (feConn, error)
	// Idle is how many idle connections the pool holds.
	Idle() int
	// Close closes the pool.
	Close()
}

// feConn is a connection checked out of a feDB.
type feConn interface {
	Exec(ctx context.Context, query string, args ...any) error
	// RemoteAddr is the server address of the connection's socket.
	RemoteAddr() (string, error)
	// Release returns the connection to its pool.
	Release()
}

// sqlDB is the database/sql front end.
type sqlDB struct{ db *sql.DB }

func (d sqlDB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := d.db.ExecContext(ctx, query, args...)
	return err
}

func (d sqlDB) QueryRowScan(ctx context.Context, query string, args []any, dest ...any) error {
	return d.db.QueryRowContext(ctx, query, args...).Scan(dest...)
}

func (d sqlDB) Ping(ctx context.Context) error { return d.db.PingContext(ctx) }

func (d sqlDB) Hold(ctx context.Context, n int) error {
	if d.db.Stats().MaxOpenConnections == 0 {
		d.db.SetMaxIdleConns(max(n, 2))
	}
	return holdConns(ctx, n, d.Conn)
}

func (d sqlDB) Conn(ctx context.Context) (feConn, error) {
	c, err := d.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return sqlConn{c}, nil
}

func (d sqlDB) Idle() int { return d.db.Stats().Idle }

func (d sqlDB) Close() { d.db.Close() }

// holdConns takes n connections from conn at once, runs a query on each
// (so each is really open), and releases them all.
func holdConns(ctx context.Context, n int, conn func(context.Context) (feConn, error)) error {
	conns := make([]feConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := conn(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		if err := c.Exec(ctx, "SELECT 1"); err != nil {
			return err
		}
	}
	return nil
}

type sqlConn struct{ c *sql.Conn }

func (c sqlConn) Exec(ctx context.Context, query string, args ...any) error {
	_, err := c.c.ExecContext(ctx, query, args...)
	return err
}

func (c sqlConn) RemoteAddr() (string, error) {
	var addr string
	err := c.c.Raw(func(dc any) error {
		nc := socketOf(dc.(driver.Conn))
		if nc == nil {
			// The raw drivers' connections.
			switch dc := dc.(type) {
			case *stdlib.Conn:
				nc = dc.Conn().PgConn().Conn()
			default:
				return fmt.Errorf("no socket known for %T", dc)
			}
		}
		addr = nc.RemoteAddr().String()
		return nil
	})
	return addr, err
}

func (c sqlConn) Release() { c.c.Close() }

// poolDB is the pgxpool front end.
type poolDB struct{ p *pgxpool.Pool }

func (d poolDB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := d.p.Exec(ctx, query, args...)
	return err
}

func (d poolDB) QueryRowScan(ctx context.Context, query string, args []any, dest ...any) error {
	return d.p.QueryRow(ctx, query, args...).Scan(dest...)
}

func (d poolDB) Ping(ctx context.Context) error { return d.p.Ping(ctx) }

func (d poolDB) Hold(ctx context.Context, n int) error {
	return holdConns(ctx, n, d.Conn)
}

func (d poolDB) Conn(ctx context.Context) (feConn, error) {
	c, err := d.p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return poolConn{c}, nil
}

func (d poolDB) Idle() int { return int(d.p.Stat().IdleConns()) }

func (d poolDB) Close() { d.p.Close() }

type poolConn struct{ c *pgxpool.Conn }

func (c poolConn) Exec(ctx context.Context, query string, args ...any) error {
	_, err := c.c.Exec(ctx, query, args...)
	return err
}

func (c poolConn) RemoteAddr() (string, error) {
	return c.c.Conn().PgConn().Conn().RemoteAddr().String(), nil
}

func (c poolConn) Release() { c.c.Release() }

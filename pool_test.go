package pgfast

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
	"go.uber.org/goleak"
)

// These tests run the pgxpool front end against a real PostgreSQL, next to
// raw pgxpool where the difference is the point.

// newPoolT makes a pgfast pool closed at the end of the test.
func newPoolT(t *testing.T, dsn string, opts ...Option) *pgxpool.Pool {
	t.Helper()
	p, err := NewPool(context.Background(), dsn, opts...)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// waitPoolsStopped waits (bounded) until every pool of earlier tests and
// examples has stopped its connector, so that a goroutine check starts clean.
func waitPoolsStopped(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		poolRegistry.mu.Lock()
		n := len(poolRegistry.m)
		poolRegistry.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pools of earlier tests still registered", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func poolReadyT(t *testing.T, p *pgxpool.Pool, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := PoolConnector(p).Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func TestPoolBadDSNIsConfigError(t *testing.T) {
	for _, dsn := range []string{
		"host=127.0.0.1 password=sekrit keepalives_idle=abc",
		"host=127.0.0.1 password=sekrit pgfast_wait_ready=maybe",
		"postgres://u:sekrit@127.0.0.1/db?pool_max_conns=x",
		"host=127.0.0.1 password=sekrit connect_timeout=zz",
	} {
		p, err := NewPool(context.Background(), dsn)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			if p != nil {
				p.Close()
			}
			t.Errorf("NewPool(%q) = %v, want a *ConfigError", dsn, err)
			continue
		}
		if strings.Contains(err.Error(), "sekrit") {
			t.Errorf("NewPool(%q): error shows the password: %v", dsn, err)
		}
	}
	if _, err := NewPool(context.Background(), "host=127.0.0.1", WithBackend(LibPQ)); err == nil {
		t.Error("NewPool with WithBackend(LibPQ): no error")
	}
}

func TestPoolWithConfigRefusesCustomDialAndLookup(t *testing.T) {
	cfg, err := pgxpool.ParseConfig("host=127.0.0.1 port=1")
	if err != nil {
		t.Fatal(err)
	}
	dialCfg := cfg.Copy()
	dialCfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, errors.New("mine")
	}
	var ce *ConfigError
	if _, err := NewPoolWithConfig(context.Background(), dialCfg); !errors.As(err, &ce) || ce.Key != "DialFunc" {
		t.Errorf("custom DialFunc: %v, want a *ConfigError for DialFunc", err)
	}
	lookupCfg := cfg.Copy()
	lookupCfg.ConnConfig.LookupFunc = func(context.Context, string) ([]string, error) { return nil, nil }
	if _, err := NewPoolWithConfig(context.Background(), lookupCfg); !errors.As(err, &ce) || ce.Key != "LookupFunc" {
		t.Errorf("custom LookupFunc: %v, want a *ConfigError for LookupFunc", err)
	}
	// The defaults ParseConfig set are pgfast's to replace.
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("ParseConfig's own config: %v", err)
	}
	p.Close()
	if cfg.BeforeConnect != nil || cfg.PrepareConn != nil || cfg.ShouldPing != nil || cfg.ConnConfig.Tracer != nil {
		t.Error("NewPoolWithConfig changed the caller's config")
	}
}

// countingTracer counts the connection attempts the pool makes (connects),
// those among them made for its callers (callerConnects: not the
// connector's own attempts, which connect through the pool too; while Down
// each fails at once without a dial, but the tracer sees it), and the
// queries.
type countingTracer struct{ connects, callerConnects, queries atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *countingTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	c.connects.Add(1)
	if !isLoopAttempt(ctx) {
		c.callerConnects.Add(1)
	}
	return ctx
}
func (c *countingTracer) TraceConnectEnd(context.Context, pgx.TraceConnectEndData) {}

func TestPoolServerDownAtStart(t *testing.T) {
	srv := newServer(t, pgtest.Options{})
	cfg, err := pgxpool.ParseConfig(withKV(srv.DSN(pgtest.TrustUser), "pool_min_conns=2", "connect_timeout=5"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &countingTracer{}
	cfg.ConnConfig.Tracer = tr
	start := time.Now()
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("NewPool took %v with the server down (pool_min_conns=2)", d)
	}
	c := PoolConnector(p)
	if c == nil {
		t.Fatal("PoolConnector = nil")
	}
	waitPoolState(t, c, StateDown, 10*time.Second)

	before := tr.callerConnects.Load()
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t0 := time.Now()
		conn, err := p.Acquire(ctx)
		d := time.Since(t0)
		cancel()
		if err == nil {
			conn.Release()
			t.Fatal("Acquire succeeded with the server down")
		}
		if !errors.Is(err, ErrNotReady) {
			t.Fatalf("Acquire while Down: %v, want ErrNotReady", err)
		}
		if d > 500*time.Millisecond {
			t.Errorf("Acquire while Down took %v, want a fast failure", d)
		}
	}
	if n := tr.callerConnects.Load() - before; n != 0 {
		t.Errorf("the pool dialled %d times while Down, want 0", n)
	}
	if _, err := p.Exec(context.Background(), "select 1"); !errors.Is(err, ErrNotReady) {
		t.Errorf("pool.Exec while Down: %v, want ErrNotReady", err)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	poolReadyT(t, p, 15*time.Second)
	var one int
	if err := p.QueryRow(context.Background(), "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query after the server started: %v", err)
	}
	if tr.queries.Load() == 0 {
		t.Error("the application's tracer saw no query")
	}
	if st := c.Stats(); st.State != StateReady || st.Dials == 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// waitPoolState waits (bounded) for c to reach st.
func waitPoolState(t *testing.T, c *Connector, st State, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for c.State() != st {
		if time.Now().After(deadline) {
			t.Fatalf("state %v after %v, want %v", c.State(), d, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPoolWaitReady(t *testing.T) {
	srv := newServer(t, pgtest.Options{})
	p := newPoolT(t, withKV(srv.DSN(pgtest.TrustUser), "pgfast_wait_ready=1"))
	waitPoolState(t, PoolConnector(p), StateDown, 10*time.Second)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = srv.Start()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var one int
	if err := p.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Fatalf("query with pgfast_wait_ready=1 while the server starts: %v", err)
	}
}

func TestPoolSocketOptionsAndKeysNotForwarded(t *testing.T) {
	srv := server(t)
	p := newPoolT(t, withKV(srv.DSN(pgtest.TrustUser), "keepalives_idle=7", "keepalives_interval=3",
		"keepalives_count=4", "tcp_user_timeout=9000", "pgfast_dns_recheck=0"))
	poolReadyT(t, p, 10*time.Second)
	conn, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	got, err := netx.ReadSocketOptions(conn.Conn().PgConn().Conn())
	if err != nil {
		t.Fatal(err)
	}
	want := diag.SocketOptions{Keepalive: true, KeepalivesIdle: 7 * time.Second, KeepalivesInterval: 3 * time.Second, KeepalivesCount: 4, TCPUserTimeout: 9 * time.Second}
	if got != want {
		t.Errorf("socket options %+v, want %+v", got, want)
	}
	var serverSide string
	if err := conn.QueryRow(context.Background(), "show tcp_user_timeout").Scan(&serverSide); err != nil {
		t.Fatal(err)
	}
	if serverSide != "0" {
		t.Errorf("the server's tcp_user_timeout is %q: pgfast's key was forwarded", serverSide)
	}
}

// TestPoolDeadConnDroppedAtCheckout terminates an idle connection's backend:
// with pinging off on both, raw pgxpool hands the dead connection out (the
// query fails) and pgfast drops it at checkout, syscalls only, and hands
// out a working one.
func TestPoolDeadConnDroppedAtCheckout(t *testing.T) {
	srv := server(t)
	dsn := withKV(srv.DSN(pgtest.TrustUser), "pool_max_conns=1")
	fast := newPoolT(t, dsn)
	rawCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	rawCfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	raw, err := pgxpool.NewWithConfig(context.Background(), rawCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	poolReadyT(t, fast, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	killIdle := func(p *pgxpool.Pool) int32 {
		var pid int32
		if err := p.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if err := srv.Exec("select pg_terminate_backend(" + poolItoa(int(pid)) + ")"); err != nil {
			t.Fatal(err)
		}
		// Until the backend is gone (bounded).
		for range 200 {
			out, _ := srv.Query("select count(*) from pg_stat_activity where pid=" + poolItoa(int(pid)))
			if strings.TrimSpace(out) == "0" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return pid
	}

	oldRaw := killIdle(raw)
	var pid int32
	if err := raw.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err == nil {
		t.Logf("raw pgxpool happened to get a working connection (pid %d, old %d)", pid, oldRaw)
	} else {
		t.Logf("raw pgxpool handed out the dead connection: %v", err)
	}

	oldFast := killIdle(fast)
	if err := fast.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("pgfast pool: query after its idle connection was terminated: %v", err)
	}
	if pid == oldFast {
		t.Fatal("pgfast pool reused the terminated backend's pid")
	}
	if st := PoolConnector(fast).State(); st != StateReady {
		t.Errorf("state %v after one terminated session, want Ready", st)
	}
}

func poolItoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

func TestPoolGoroutinesStopAfterClose(t *testing.T) {
	srv := server(t)
	waitPoolsStopped(t)
	ignore := goleak.IgnoreCurrent()
	p, err := NewPool(context.Background(), withKV(srv.DSN(pgtest.TrustUser), "pool_min_conns=2"))
	if err != nil {
		t.Fatal(err)
	}
	c := PoolConnector(p)
	poolReadyT(t, p, 10*time.Second)
	if _, err := p.Exec(context.Background(), "select 1"); err != nil {
		t.Fatal(err)
	}
	p.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the connector's goroutine still runs 10 s after pool.Close")
	}
	if c.State() != StateClosed {
		t.Errorf("state %v after pool.Close", c.State())
	}
	waitPoolsStopped(t) // PoolConnector(p) is nil once its connector stopped
	if PoolConnector(p) != nil {
		t.Error("PoolConnector still finds the closed pool")
	}
	goleak.VerifyNone(t, ignore)
}

func TestPoolClosedChannel(t *testing.T) {
	p, err := NewPool(context.Background(), "host=127.0.0.1 port=1")
	if err != nil {
		t.Fatal(err)
	}
	ch := poolClosed(p)
	if ch == nil {
		t.Fatal("pgxpool.Pool has no closeChan: the connector would stop only when the pool is collected")
	}
	p.Close()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("closeChan not closed by Pool.Close")
	}
}

func TestPoolConnectorOfOtherPool(t *testing.T) {
	cfg, err := pgxpool.ParseConfig("host=127.0.0.1 port=1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if PoolConnector(raw) != nil || PoolConnector(nil) != nil {
		t.Error("PoolConnector found a connector for a pool pgfast did not make")
	}
}

// TestPoolGoroutinesStopWhileDown: closing a pool whose database never
// answered stops the connector's goroutine and its probes too.
func TestPoolGoroutinesStopWhileDown(t *testing.T) {
	waitPoolsStopped(t)
	ignore := goleak.IgnoreCurrent()
	p, err := NewPool(context.Background(), "host=127.0.0.1 port="+poolItoa(freeLoopbackPort(t))+" user=u pool_min_conns=2")
	if err != nil {
		t.Fatal(err)
	}
	c := PoolConnector(p)
	waitPoolState(t, c, StateDown, 10*time.Second)
	p.Close()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the connector's goroutine still runs 10 s after pool.Close")
	}
	goleak.VerifyNone(t, ignore)
}

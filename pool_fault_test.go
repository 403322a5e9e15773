package pgfast

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/netfault"
)

// The pgxpool front end through the fault suite's environment (its own
// network namespace, loopback only): the same scenarios, pgfast's pool
// against raw pgxpool in the same run.

// poolFaultCase stands for the pool front end in the suite's MEASURE lines.
var poolFaultCase = backendCase{name: "pgfast-pgxpool", raw: "pgxpool", backend: PGX}

func TestPoolFaults(t *testing.T) {
	netfault.RunInNamespace(t, "^TestPoolFaultSuite$", map[string][]string{"localhost": {"::1", "127.0.0.1"}}, 3*time.Minute)
}

func TestPoolFaultSuite(t *testing.T) {
	if !netfault.Inside() {
		t.Skip("run by TestPoolFaults inside a network namespace")
	}
	leaks := goleak.IgnoreCurrent()
	for _, sc := range []faultScenario{
		{"ipv6-blackhole-first-query", 45 * time.Second, poolFaultIPv6BlackholeFirstQuery},
		{"active-blackhole", 60 * time.Second, poolFaultActiveBlackhole},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Cleanup(faultWatchdog(t.Name(), sc.cap))
			sc.run(t, poolFaultCase)
		})
	}
	goleak.VerifyNone(t, leaks)
}

// poolFaultPools closes the scenario's pools after the environment's
// cleanup (rules removed, background calls returned): register it before
// faultSetup.
type poolFaultPools struct {
	mu    sync.Mutex
	pools []*pgxpool.Pool
}

func newPoolFaultPools(t *testing.T) *poolFaultPools {
	p := &poolFaultPools{}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pool := range p.pools {
			pool.Close()
		}
	})
	return p
}

func (p *poolFaultPools) add(pool *pgxpool.Pool) *pgxpool.Pool {
	p.mu.Lock()
	p.pools = append(p.pools, pool)
	p.mu.Unlock()
	return pool
}

func (p *poolFaultPools) fast(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	start := time.Now()
	pool, err := NewPool(context.Background(), dsn)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	if d := time.Since(start); d > faultOpenBound {
		t.Errorf("NewPool took %v", d)
	}
	return p.add(pool)
}

func (p *poolFaultPools) raw(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	return p.add(pool)
}

// poolExec returns a call that runs query on pool with ctx.
func poolExec(ctx context.Context, pool *pgxpool.Pool, query string) func() error {
	return func() error {
		_, err := pool.Exec(ctx, query)
		return err
	}
}

// poolFaultIPv6BlackholeFirstQuery: localhost resolves to ::1 first, and
// ::1 is blackholed. pgfast's racing dialer answers the first query over
// 127.0.0.1 at once; raw pgxpool dials ::1 first and waits for it.
func poolFaultIPv6BlackholeFirstQuery(t *testing.T, b backendCase) {
	pools := newPoolFaultPools(t)
	e, srv := faultSetup(t, true)
	port := srv.Port()
	e.drop(netfault.Rule{Addr: "::1", Port: port, Direction: "both"})
	fast := pools.fast(t, faultDSN(port))
	raw := pools.raw(t, faultDSN(port))

	start := time.Now()
	rawCtx, cancel := context.WithTimeout(e.ctx, faultRawCapShort)
	defer cancel()
	rawCh := e.async(poolExec(rawCtx, raw, "SELECT 1"))
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := fast.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("pgfast pool: first query with ::1 blackholed: %v", err)
	}
	took := time.Since(start)
	if took > 3*time.Second {
		t.Errorf("pgfast pool: first query took %v with ::1 blackholed", took)
	}
	faultMeasure(t, "ipv6-blackhole-first-query", b, took, faultRawOutcome(rawCh, start, faultRawCapShort))
}

// poolFaultActiveBlackhole: the network dies under a running query; with
// the tuned TCP keys pgfast's pool fails it within the dead-peer window.
// Raw pgxpool cannot take those keys (it would send them to the server).
func poolFaultActiveBlackhole(t *testing.T, b backendCase) {
	pools := newPoolFaultPools(t)
	e, srv := faultSetup(t, true)
	port := srv.Port()
	fast := pools.fast(t, faultDSN(port, faultTCPKeys...))
	raw := pools.raw(t, faultDSN(port))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := PoolConnector(fast).Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	for _, p := range []*pgxpool.Pool{fast, raw} {
		if _, err := p.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("warming: %v", err)
		}
	}

	rawCtx, cancelRaw := context.WithTimeout(e.ctx, faultRawCapLong)
	defer cancelRaw()
	fastCh := e.async(poolExec(context.Background(), fast, "SELECT pg_sleep(5)"))
	rawCh := e.async(poolExec(rawCtx, raw, "SELECT pg_sleep(5)"))
	time.Sleep(300 * time.Millisecond)
	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})

	took := faultMustFailAfterDrop(t, fastCh, dropAt)
	faultMeasure(t, "active-blackhole", b, took, faultRawOutcome(rawCh, dropAt, faultRawCapLong))
	// The eviction took the pool Down: the next Acquire fails at once.
	// The next query, network still dead: raw pgxpool dials into the
	// blackhole until its context ends; pgfast's pool fails at once.
	rawNext, cancelRawNext := context.WithTimeout(e.ctx, faultRawCapShort)
	defer cancelRawNext()
	t0 := time.Now()
	rawNextCh := e.async(poolExec(rawNext, raw, "SELECT 1"))
	next, cancelNext := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelNext()
	_, err := fast.Exec(next, "SELECT 1")
	d := time.Since(t0)
	switch {
	case err == nil:
		t.Errorf("pgfast pool: a query succeeded with all traffic dropped")
	case !errors.Is(err, ErrNotReady):
		t.Errorf("pgfast pool: the next query failed after %v with %v, want ErrNotReady", d, err)
	case d > time.Second:
		t.Errorf("pgfast pool: the next query took %v to fail", d)
	}
	faultMeasure(t, "outage-fail-fast", b, d, faultRawOutcome(rawNextCh, t0, faultRawCapShort))
}

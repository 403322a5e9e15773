package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// The real-network fault suite. TestFaults re-executes this test binary in a
// network namespace of its own (internal/netfault) where TestFaultSuite
// starts PostgreSQL servers on 127.0.0.1 and ::1 and drops their traffic with
// nft rules. Only loopback addresses are used.
//
// Every scenario runs for both backends, with the same DSN (host=localhost,
// which resolves to ::1 first) against pgfast and, side by side, against the
// raw driver ("pgx" or "postgres"). Each logs one line
//
//	MEASURE scenario=<name> backend=<pgfast|pgfast-pq> pgfast=<duration> raw=<duration or ">cap">
//
// and asserts pgfast's behaviour with generous time bounds (behaviour, not
// speed). The raw drivers' runs are only measured, never asserted, and are
// abandoned at their cap; the scenario's cleanup unblocks them by removing
// the rules and closing their sockets (recorded by a dial hook that keeps the
// raw driver's own dialer), so that no goroutine outlives the scenario.

const (
	// faultSuiteCap bounds the whole namespace child process.
	faultSuiteCap = 8 * time.Minute
	// faultRawCapShort bounds a raw driver's connection attempt.
	faultRawCapShort = 8 * time.Second
	// faultRawCapLong bounds a raw driver's query on a dead network.
	faultRawCapLong = 12 * time.Second
	// faultOpenBound is how long sql.Open may take ("returns at once").
	faultOpenBound = 100 * time.Millisecond
	// faultAfterDropCap is how long the suite waits for a pgfast call on a
	// dead network before declaring it hung.
	faultAfterDropCap = 15 * time.Second
)

// faultTCPKeys are the libpq TCP settings of the blackhole scenarios: a dead
// peer is detected after keepalives_idle + keepalives_count ×
// keepalives_interval = 3 s, and unacknowledged data may wait 3 s.
var faultTCPKeys = []string{"keepalives_idle=1", "keepalives_interval=1", "keepalives_count=2", "tcp_user_timeout=3000"}

// faultKeepaliveBudget is how long the kernel takes to declare an idle
// connection dead with faultTCPKeys.
const faultKeepaliveBudget = 1*time.Second + 2*1*time.Second

func TestFaults(t *testing.T) {
	netfault.RunInNamespace(t, "^TestFaultSuite$", map[string][]string{"localhost": {"::1", "127.0.0.1"}}, faultSuiteCap)
}

// faultScenario is one row of the suite.
type faultScenario struct {
	name string
	cap  time.Duration // hard cap of one backend's run
	run  func(t *testing.T, b backendCase)
}

var faultScenarios = []faultScenario{
	{"ipv6-blackhole-ipv4-up", 45 * time.Second, faultIPv6BlackholeIPv4Up},
	{"ipv6-blackhole-ipv4-refused", 60 * time.Second, faultIPv6BlackholeIPv4Refused},
	{"active-blackhole", 60 * time.Second, faultActiveBlackhole},
	{"active-blackhole-unacked", 60 * time.Second, faultActiveBlackholeUnacked},
	{"active-blackhole-defaults", 60 * time.Second, faultActiveBlackholeDefaults},
	{"active-blackhole-unacked-defaults", 60 * time.Second, faultActiveBlackholeUnackedDefaults},
	{"idle-blackhole", 60 * time.Second, faultIdleBlackhole},
	{"server-restart", 60 * time.Second, faultServerRestart},
}

func TestFaultSuite(t *testing.T) {
	if !netfault.Inside() {
		t.Skip("run by TestFaults inside a network namespace")
	}
	leaks := goleak.IgnoreCurrent()
	suiteStart := time.Now()

	// Every scenario relies on localhost resolving to ::1 first.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	addrs, err := net.DefaultResolver.LookupHost(ctx, "localhost")
	cancel()
	if err != nil || len(addrs) != 2 || addrs[0] != "::1" || addrs[1] != "127.0.0.1" {
		t.Fatalf("localhost resolves to %v (%v), want [::1 127.0.0.1]", addrs, err)
	}

	for _, sc := range faultScenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, b := range backends {
				t.Run(b.name, func(t *testing.T) {
					// Registered first, so it also covers the cleanups.
					t.Cleanup(faultWatchdog(t.Name(), sc.cap))
					sc.run(t, b)
				})
			}
		})
	}

	goleak.VerifyNone(t, leaks)
	t.Logf("fault suite took %v", time.Since(suiteStart).Round(time.Millisecond))
}

// ---- environment: servers, pools, rules, goroutines, cleanup ----

// faultEnv owns what one scenario run creates. Its cleanup, registered with
// t, removes every rule, closes the raw drivers' sockets (unblocking their
// abandoned calls), waits for every goroutine the scenario started, and
// closes every pool; the server's own cleanup (registered before) runs after.
type faultEnv struct {
	t   *testing.T
	srv *pgtest.Server
	// ctx ends when the cleanup starts: the parent of the raw drivers'
	// bounded calls, so that abandoned ones return at once.
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	dbs  []*sql.DB
	raws []*faultRawPool
	bg   sync.WaitGroup
}

// faultRegistry lets the watchdog reach the running scenario's environment.
var faultRegistry struct {
	sync.Mutex
	env *faultEnv
}

// faultSetup creates a server listening on 127.0.0.1 and ::1 (started or
// not) and the scenario's environment.
func faultSetup(t *testing.T, start bool) (*faultEnv, *pgtest.Server) {
	t.Helper()
	srv := newServer(t, pgtest.Options{ListenAddresses: "127.0.0.1,::1"})
	if start {
		if err := srv.Start(); err != nil {
			t.Fatalf("starting the server: %v", err)
		}
	}
	e := &faultEnv{t: t, srv: srv}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	faultRegistry.Lock()
	faultRegistry.env = e
	faultRegistry.Unlock()
	t.Cleanup(e.cleanup)
	return e, srv
}

func (e *faultEnv) cleanup() {
	defer func() {
		faultRegistry.Lock()
		if faultRegistry.env == e {
			faultRegistry.env = nil
		}
		faultRegistry.Unlock()
	}()
	e.cancel()

	step := time.Now()
	slow := func(what string) {
		if d := time.Since(step); d > time.Second {
			e.t.Logf("cleanup: %s took %v", what, faultDur(d))
		}
		step = time.Now()
	}
	if err := netfault.Clear(); err != nil {
		e.t.Errorf("removing the nft rules: %v", err)
	}
	slow("removing the rules")
	e.mu.Lock()
	raws, dbs := e.raws, e.dbs
	e.mu.Unlock()
	for _, p := range raws {
		p.shut()
	}
	done := make(chan struct{})
	go func() {
		e.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		e.t.Errorf("goroutines of this scenario still blocked 15s after the rules were removed and the raw sockets closed:\n%s", faultStacks())
	}
	slow("waiting for the scenario's goroutines")
	for _, p := range raws {
		p.db.Close()
	}
	slow("closing the raw pools")
	for _, db := range dbs {
		db.Close()
	}
	slow("closing the pgfast pools")
}

// emergency unblocks and removes what it can; the watchdog calls it before
// it aborts the process.
func (e *faultEnv) emergency() {
	_ = netfault.Clear()
	e.mu.Lock()
	raws := e.raws
	e.mu.Unlock()
	for _, p := range raws {
		p.shut()
	}
	e.srv.Cleanup()
}

// faultWatchdog aborts the process, with every goroutine's stack, when a
// scenario run exceeds its hard cap. Every wait in the suite is bounded well
// below the cap; this only guards against a bug in those bounds.
func faultWatchdog(name string, limit time.Duration) (stop func()) {
	timer := time.AfterFunc(limit, func() {
		fmt.Fprintf(os.Stderr, "fault scenario %s exceeded its hard cap of %v; goroutines:\n%s\n", name, limit, faultStacks())
		faultRegistry.Lock()
		e := faultRegistry.env
		faultRegistry.Unlock()
		if e != nil {
			e.emergency()
		}
		panic(fmt.Sprintf("fault scenario %s exceeded its hard cap of %v", name, limit))
	})
	return func() { timer.Stop() }
}

func faultStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// open opens dsn with pgfast and reports how long sql.Open took.
func (e *faultEnv) open(b backendCase, dsn string) (*sql.DB, time.Duration) {
	e.t.Helper()
	start := time.Now()
	db, err := sql.Open(b.name, dsn)
	took := time.Since(start)
	if err != nil {
		e.t.Fatalf("sql.Open(%s): %v", b.name, err)
	}
	e.mu.Lock()
	e.dbs = append(e.dbs, db)
	e.mu.Unlock()
	return db, took
}

// drop installs r and returns when it is in effect.
func (e *faultEnv) drop(r netfault.Rule) time.Time {
	e.t.Helper()
	if _, err := netfault.Drop(r); err != nil {
		e.t.Fatalf("netfault.Drop(%+v): %v", r, err)
	}
	return time.Now()
}

// faultResult is the outcome of a call run in the background.
type faultResult struct {
	err error
	end time.Time
}

// async runs f in a goroutine the environment waits for at cleanup.
func (e *faultEnv) async(f func() error) <-chan faultResult {
	ch := make(chan faultResult, 1)
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		err := f()
		ch <- faultResult{err: err, end: time.Now()}
	}()
	return ch
}

// faultWait waits for a result until deadline.
func faultWait(ch <-chan faultResult, deadline time.Time) (faultResult, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case r := <-ch:
		return r, true
	case <-timer.C:
		return faultResult{}, false
	}
}

// faultExec returns a call that runs query on db with ctx.
func faultExec(ctx context.Context, db *sql.DB, query string) func() error {
	return func() error {
		_, err := db.ExecContext(ctx, query)
		return err
	}
}

// mustReady waits for pgfast's readiness or fails the test.
func (e *faultEnv) mustReady(db *sql.DB) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ready(ctx, db); err != nil {
		e.t.Fatalf("Ready: %v", err)
	}
}

// warm makes db hold n idle connections: n concurrent queries force n
// connections open, and they stay idle afterwards.
func (e *faultEnv) warm(db *sql.DB, n int) {
	e.t.Helper()
	db.SetMaxIdleConns(n)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := db.ExecContext(ctx, "SELECT pg_sleep(0.2)"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Fatalf("warming the pool: %v", err)
	}
	if idle := db.Stats().Idle; idle != n {
		e.t.Fatalf("pool holds %d idle connections, want %d", idle, n)
	}
}

// ---- the raw drivers, with their sockets recorded ----

// faultRawPool is a raw-driver pool whose sockets are recorded so that the
// cleanup can close them. The recording hook wraps the driver's own default
// dialer (pgx's DialFunc from ParseConfig, lib/pq's zero net.Dialer), so the
// driver dials exactly as with sql.Open.
type faultRawPool struct {
	db *sql.DB

	mu     sync.Mutex
	socks  []net.Conn
	closed bool
}

// errFaultRawShut is what a raw pool's dials return once the test shut it.
var errFaultRawShut = errors.New("raw pool shut by the test")

// dialed records nc, or closes it when the pool is shut already.
func (p *faultRawPool) dialed(nc net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = nc.Close()
		return nil, errFaultRawShut
	}
	p.socks = append(p.socks, nc)
	return nc, nil
}

// shut closes every socket of the pool and makes further dials fail: a call
// blocked on a socket returns, and database/sql cannot run it again on a new
// connection (pgx reports a statement whose socket was closed under it as
// driver.ErrBadConn, which database/sql retries).
func (p *faultRawPool) shut() {
	p.mu.Lock()
	socks := p.socks
	p.socks, p.closed = nil, true
	p.mu.Unlock()
	for _, nc := range socks {
		_ = nc.Close()
	}
}

// openRaw opens dsn with the raw driver behind b.
func (e *faultEnv) openRaw(b backendCase, dsn string) *faultRawPool {
	e.t.Helper()
	p := &faultRawPool{}
	switch b.backend {
	case PGX:
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			e.t.Fatalf("pgx.ParseConfig: %v", err)
		}
		dial := cfg.DialFunc
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return p.dialed(dial(ctx, network, addr))
		}
		p.db = stdlib.OpenDB(*cfg)
	case LibPQ:
		c, err := pq.NewConnector(dsn)
		if err != nil {
			e.t.Fatalf("pq.NewConnector: %v", err)
		}
		c.Dialer(&faultPQDialer{pool: p})
		p.db = sql.OpenDB(c)
	default:
		e.t.Fatalf("unknown backend %v", b.backend)
	}
	e.mu.Lock()
	e.raws = append(e.raws, p)
	e.mu.Unlock()
	return p
}

// faultPQDialer is lib/pq's default dialer (a zero net.Dialer) plus recording.
type faultPQDialer struct {
	d    net.Dialer
	pool *faultRawPool
}

func (d *faultPQDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *faultPQDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *faultPQDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return d.pool.dialed(d.d.DialContext(ctx, network, address))
}

// mustPing connects the raw pool.
func (p *faultRawPool) mustPing(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.db.PingContext(ctx); err != nil {
		t.Fatalf("raw driver: %v", err)
	}
}

// faultRaw is what a raw driver's run came to.
type faultRaw struct {
	took   time.Duration
	capped bool
	limit  time.Duration
	err    error
}

func (r faultRaw) String() string {
	if r.capped {
		return ">" + r.limit.String()
	}
	return faultDur(r.took)
}

// faultRawOutcome waits for a raw driver's run, measured from ref, until ref+limit.
func faultRawOutcome(ch <-chan faultResult, ref time.Time, limit time.Duration) faultRaw {
	r, ok := faultWait(ch, ref.Add(limit))
	if !ok {
		return faultRaw{capped: true, limit: limit}
	}
	return faultRaw{took: r.end.Sub(ref), limit: limit, err: r.err}
}

func faultDur(d time.Duration) string { return d.Round(time.Millisecond).String() }

// faultMeasure logs the comparison line the project quotes.
func faultMeasure(t *testing.T, scenario string, b backendCase, pgfast time.Duration, raw faultRaw) {
	t.Helper()
	switch {
	case raw.capped:
		t.Logf("raw %s: no answer within the %v cap (abandoned, unblocked at cleanup)", b.raw, raw.limit)
	case raw.err != nil:
		t.Logf("raw %s: answered after %s with: %v", b.raw, faultDur(raw.took), raw.err)
	default:
		t.Logf("raw %s: succeeded after %s", b.raw, faultDur(raw.took))
	}
	t.Logf("MEASURE scenario=%s backend=%s pgfast=%s raw=%s", scenario, b.name, faultDur(pgfast), raw)
}

// faultDSN is the scenarios' DSN: localhost resolves to ::1, then 127.0.0.1.
func faultDSN(port int, kv ...string) string {
	dsn := fmt.Sprintf("host=localhost port=%d user=%s dbname=%s sslmode=disable", port, pgtest.TrustUser, pgtest.Database)
	if len(kv) > 0 {
		dsn = withKV(dsn, kv...)
	}
	return dsn
}

// faultRemoteAddr returns the server address of a pooled pgfast connection.
func faultRemoteAddr(t *testing.T, db *sql.DB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("db.Conn: %v", err)
	}
	defer conn.Close()
	var addr string
	err = conn.Raw(func(dc any) error {
		nc := socketOf(dc.(driver.Conn))
		if nc == nil {
			return fmt.Errorf("no socket known for %T", dc)
		}
		addr = nc.RemoteAddr().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// ---- scenarios ----

// faultIPv6BlackholeIPv4Up: ::1 silently drops everything, 127.0.0.1 serves.
// pgfast races the addresses; the raw pgx tries ::1 until the kernel gives up
// on the SYN (~130 s).
func faultIPv6BlackholeIPv4Up(t *testing.T, b backendCase) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	dsn := faultDSN(port)
	e.drop(netfault.Rule{Addr: "::1", Port: port, Direction: "both"})

	raw := e.openRaw(b, dsn)
	rawStart := time.Now()
	rawCh := e.async(func() error {
		ctx, cancel := context.WithTimeout(e.ctx, faultRawCapShort+time.Second)
		defer cancel()
		return raw.db.PingContext(ctx)
	})

	start := time.Now()
	db, openTook := e.open(b, dsn)
	if openTook > faultOpenBound {
		t.Errorf("sql.Open took %v, want it to return at once", openTook)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ready(ctx, db); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	readyTook := time.Since(start)
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("first query: %v", err)
	}
	firstQuery := time.Since(start)
	if readyTook > time.Second {
		t.Errorf("Ready took %v, want < 1s", readyTook)
	}
	if firstQuery > time.Second {
		t.Errorf("sql.Open + first query took %v, want < 1s", firstQuery)
	}
	if got, want := faultRemoteAddr(t, db), fmt.Sprintf("127.0.0.1:%d", port); got != want {
		t.Errorf("pooled connection goes to %s, want %s (::1 is blackholed)", got, want)
	}
	t.Logf("pgfast: sql.Open %v, Ready %v, first query done %v after sql.Open", openTook, faultDur(readyTook), faultDur(firstQuery))
	faultMeasure(t, "ipv6-blackhole-ipv4-up", b, firstQuery, faultRawOutcome(rawCh, rawStart, faultRawCapShort))
}

// faultIPv6BlackholeIPv4Refused: the server is down; ::1 silently drops, IPv4
// refuses. pgfast answers within the caller's context, naming both
// addresses, and becomes ready soon after the server starts.
func faultIPv6BlackholeIPv4Refused(t *testing.T, b backendCase) {
	e, srv := faultSetup(t, false)
	port := srv.Port()
	dsn := faultDSN(port)
	e.drop(netfault.Rule{Addr: "::1", Port: port, Direction: "both"})

	db, openTook := e.open(b, dsn)
	if openTook > faultOpenBound {
		t.Errorf("sql.Open took %v, want it to return at once", openTook)
	}

	// Ready with a 1 s context: an error by ~1 s naming both addresses.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	start := time.Now()
	err := Ready(ctx, db)
	took := time.Since(start)
	cancel()
	t.Logf("Ready(1s) after %v: %v", faultDur(took), err)
	if took > 1500*time.Millisecond {
		t.Errorf("Ready with a 1s context returned after %v, want by 1.5s", took)
	}
	if !errors.Is(err, ErrNotReady) {
		t.Errorf("Ready: got %v, want ErrNotReady", err)
	}
	if err != nil {
		var missing []string
		for _, addr := range []string{fmt.Sprintf("[::1]:%d", port), fmt.Sprintf("127.0.0.1:%d", port)} {
			if !strings.Contains(err.Error(), addr) {
				missing = append(missing, addr)
			}
		}
		if len(missing) > 0 {
			t.Errorf("Ready's error does not name %s (want both the blackholed [::1]:%d, still pending, and the refusing 127.0.0.1:%d): %q",
				strings.Join(missing, " and "), port, port, err)
		}
	}

	// Cancelling Ready's context returns at once.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	readyCh := e.async(func() error { return Ready(ctx, db) })
	time.Sleep(100 * time.Millisecond)
	cancelled := time.Now()
	cancel()
	r, ok := faultWait(readyCh, cancelled.Add(5*time.Second))
	switch {
	case !ok:
		t.Fatal("Ready did not return within 5s of its context's cancellation")
	case r.end.Sub(cancelled) > 50*time.Millisecond:
		t.Errorf("Ready returned %v after its context was cancelled, want within 50ms", r.end.Sub(cancelled))
	case !errors.Is(r.err, context.Canceled):
		t.Errorf("Ready after cancel: got %v, want context.Canceled", r.err)
	}

	// The server comes up (::1 still blackholed): ready within seconds.
	if err := srv.Start(); err != nil {
		t.Fatalf("starting the server: %v", err)
	}
	started := time.Now()
	raw := e.openRaw(b, dsn)
	rawCh := e.async(func() error {
		ctx, cancel := context.WithTimeout(e.ctx, faultRawCapShort+time.Second)
		defer cancel()
		return raw.db.PingContext(ctx)
	})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ready(ctx, db); err != nil {
		t.Fatalf("Ready after the server started: %v", err)
	}
	readyTook := time.Since(started)
	if readyTook > 5*time.Second {
		t.Errorf("ready %v after the server started, want within 5s", readyTook)
	}
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query after the server started: %v", err)
	}
	t.Logf("pgfast ready %v after the server started (pgfast= below; raw= is a fresh raw pool's first Ping after the start)", faultDur(readyTook))
	faultMeasure(t, "ipv6-blackhole-ipv4-refused", b, readyTook, faultRawOutcome(rawCh, started, faultRawCapShort))
}

// faultActiveBlackhole: the network dies under a running query. Keepalives and
// TCP_USER_TIMEOUT end it; the raw drivers wait for TCP's retransmission
// limits (minutes).
func faultActiveBlackhole(t *testing.T, b backendCase) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, _ := e.open(b, faultDSN(port, faultTCPKeys...))
	e.mustReady(db)
	// The raw drivers cannot take the TCP keys (they would send them to the
	// server, which refuses keepalives*): same DSN without them.
	raw := e.openRaw(b, faultDSN(port))
	raw.mustPing(t)

	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT pg_sleep(5)"))
	rawCh := e.async(faultExec(context.Background(), raw.db, "SELECT pg_sleep(5)"))
	time.Sleep(300 * time.Millisecond)
	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})

	took := faultMustFailAfterDrop(t, pgfastCh, dropAt)
	faultMeasure(t, "active-blackhole", b, took, faultRawOutcome(rawCh, dropAt, faultRawCapLong))
}

// faultActiveBlackholeUnacked: the network is already dead when a query is
// sent on an idle pooled connection; the query's bytes are never
// acknowledged, which TCP_USER_TIMEOUT bounds.
func faultActiveBlackholeUnacked(t *testing.T, b backendCase) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, _ := e.open(b, faultDSN(port, faultTCPKeys...))
	e.mustReady(db)
	e.warm(db, 1)
	raw := e.openRaw(b, faultDSN(port))
	e.warm(raw.db, 1)

	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})
	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT 1"))
	rawCh := e.async(faultExec(context.Background(), raw.db, "SELECT 1"))

	// Measured from the drop, not from the send: the query leaves a little
	// later (checkout, the driver), and the kernel's TCP_USER_TIMEOUT counts
	// from the first retransmission (>= tcp_rto_min): 500ms more than a
	// query already in flight.
	took := faultMustFailWithin(t, pgfastCh, dropAt, faultTunedLimit+500*time.Millisecond)
	faultMeasure(t, "active-blackhole-unacked", b, took, faultRawOutcome(rawCh, dropAt, faultRawCapLong))
}

// faultTunedLimit is how soon after the drop a query in flight must fail with
// faultTCPKeys (issue 10: 3.5 s; the kernel's TCP_USER_TIMEOUT of 3 s ends it).
const faultTunedLimit = 3500 * time.Millisecond

// faultMustFailAfterDrop waits for pgfast's query in a blackhole scenario with
// faultTCPKeys: it must fail, after the drop and within faultTunedLimit. It
// returns how long after the drop the query ended.
func faultMustFailAfterDrop(t *testing.T, pgfastCh <-chan faultResult, dropAt time.Time) time.Duration {
	t.Helper()
	return faultMustFailWithin(t, pgfastCh, dropAt, faultTunedLimit)
}

// faultMustFailWithin waits for pgfast's query in a blackhole scenario: it
// must fail, after the drop and within limit of it.
func faultMustFailWithin(t *testing.T, pgfastCh <-chan faultResult, dropAt time.Time, limit time.Duration) time.Duration {
	t.Helper()
	r, ok := faultWait(pgfastCh, dropAt.Add(faultAfterDropCap))
	if !ok {
		t.Fatalf("pgfast query still blocked %v after all traffic was dropped", faultAfterDropCap)
	}
	took := r.end.Sub(dropAt)
	switch {
	case r.end.Before(dropAt):
		t.Fatalf("pgfast query ended before the drop: %v", r.err)
	case r.err == nil:
		t.Errorf("pgfast query succeeded %v after all traffic was dropped", took)
	case took > limit:
		t.Errorf("pgfast query failed %v after the drop, want within %v: %v", took, limit, r.err)
	}
	t.Logf("pgfast query failed %v after the drop: %v", faultDur(took), r.err)
	return took
}

// faultIdleBlackhole: the network dies while the pool is idle; a query comes
// once keep-alives have had time to declare the idle connections dead. It
// must not hang on them: the checkout check drops them (driver.ErrBadConn),
// and the query fails (at once with ErrNotReady when pgfast already went
// Down, else after one fresh dial bounded by tcp_user_timeout), or succeeds
// on a fresh connection, within 8 s of the drop.
func faultIdleBlackhole(t *testing.T, b backendCase) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, _ := e.open(b, faultDSN(port, faultTCPKeys...))
	e.mustReady(db)
	e.warm(db, 5)
	raw := e.openRaw(b, faultDSN(port))
	e.warm(raw.db, 5)

	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})
	time.Sleep(time.Until(dropAt.Add(faultKeepaliveBudget + 500*time.Millisecond)))
	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT 1"))
	rawCh := e.async(faultExec(context.Background(), raw.db, "SELECT 1"))

	r, ok := faultWait(pgfastCh, dropAt.Add(faultAfterDropCap))
	if !ok {
		t.Fatalf("pgfast query still blocked %v after all traffic was dropped", faultAfterDropCap)
	}
	took := r.end.Sub(dropAt)
	if took > 8*time.Second {
		t.Errorf("pgfast query returned %v after the drop, want within 8s (keep-alive budget %v + slack): %v", took, faultKeepaliveBudget, r.err)
	}
	outcome := "succeeded"
	if r.err != nil {
		outcome = "failed: " + r.err.Error()
	}
	t.Logf("pgfast query returned %v after the drop (%v after it started) and %s", faultDur(took), faultDur(took-faultKeepaliveBudget-500*time.Millisecond), outcome)
	faultMeasure(t, "idle-blackhole", b, took, faultRawOutcome(rawCh, dropAt, faultRawCapLong))
}

// faultServerRestart: pg_ctl restart -m fast under a pool of idle
// connections. The next queries, sequential and concurrent, must all succeed:
// pgfast's checkout check turns each dead connection into driver.ErrBadConn,
// which database/sql retries on another.
func faultServerRestart(t *testing.T, b backendCase) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	dsn := faultDSN(port)
	db, _ := e.open(b, dsn)
	e.mustReady(db)
	e.warm(db, 3)
	raw := e.openRaw(b, dsn)
	e.warm(raw.db, 3)

	restartStart := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatalf("restarting the server: %v", err)
	}
	t.Logf("pg_ctl restart -m fast took %v", faultDur(time.Since(restartStart)))

	pgfastTook, pgfastErrs := faultQueryBatch(db)
	if len(pgfastErrs) > 0 {
		t.Errorf("%d of %d queries after the restart failed, want none to reach the application; first: %v", len(pgfastErrs), faultBatchSize, pgfastErrs[0])
	}
	rawTook, rawErrs := faultQueryBatch(raw.db)
	rawOut := faultRaw{took: rawTook, limit: faultRawCapLong}
	if len(rawErrs) > 0 {
		rawOut.err = fmt.Errorf("%d of %d queries failed; first: %w", len(rawErrs), faultBatchSize, rawErrs[0])
	}
	t.Logf("pgfast: %d of %d queries failed; pool after: %+v", len(pgfastErrs), faultBatchSize, db.Stats())
	faultMeasure(t, "server-restart", b, pgfastTook, rawOut)
}

const (
	faultBatchSequential = 4
	faultBatchConcurrent = 6
	faultBatchSize       = faultBatchSequential + faultBatchConcurrent
)

// faultQueryBatch runs SELECT 1 several times in a row, then several at once,
// each bounded by its own context, and returns how long that took and the
// errors.
func faultQueryBatch(db *sql.DB) (time.Duration, []error) {
	var (
		mu   sync.Mutex
		errs []error
	)
	query := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	start := time.Now()
	for range faultBatchSequential {
		query()
	}
	var wg sync.WaitGroup
	for range faultBatchConcurrent {
		wg.Go(query)
	}
	wg.Wait()
	return time.Since(start), errs
}

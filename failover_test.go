package pgfast

// The health and rapid-recovery suite: real PostgreSQL servers with real
// streaming replication, faults injected with nftables inside a network
// namespace of the suite's own (loopback addresses only). TestFailover
// re-executes the test binary into that namespace to run TestFailoverSuite;
// the scenarios run one after another (timings are measured), each over both
// backends, and log one "MEASURE scenario=... backend=..." line each.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// Loopback addresses of the suite's servers inside its namespace.
const (
	foPrimaryIP = "127.0.0.2" // the primary of a replicated pair
	foStandbyIP = "127.0.0.3" // its streaming standby, promoted by the failover scenarios
	foSingleIP  = "127.0.0.4" // a lone server for the outage and zombie scenarios
	foHostName  = "db"        // the name the DNS scenario repoints
	foWorkers   = 10          // the application's concurrent workers (and pool size)
)

// foFastTCP makes a dead peer noticeable within about 3 s, on idle
// (keepalive) and busy (TCP_USER_TIMEOUT) connections alike.
const foFastTCP = "keepalives_idle=1 keepalives_interval=1 keepalives_count=2 tcp_user_timeout=3000"

// Bounds the scenarios assert (the targets, with slack for a loaded CI box).
const (
	foFailoverLimit = 10 * time.Second        // blackhole → every worker writing on the new primary (target ~6 s)
	foHangLimit     = 8 * time.Second         // no single call may take longer
	foFailFastLimit = 50 * time.Millisecond   // a query while Down
	foRecoverLimit  = 5 * time.Second         // fault lifted → Ready (target ~3 s)
	foQueryCtx      = 2 * time.Second         // the query-ctx-2s scenario's context
	foQueryCtxLimit = 2600 * time.Millisecond // …and how long the call may take (target ~2.1 s)
	foDemotedLimit  = 5 * time.Second         // read-only primary → every worker writing on the other server
	foLeakSettle    = 20 * time.Second        // goroutines and sockets must be gone by then after Close
)

// foEnvRun narrows the scenarios TestFailover runs (a -run pattern for the
// subtests of TestFailoverSuite, e.g. "outage"); for working on one scenario.
const foEnvRun = "PGFAST_FAILOVER_RUN"

// TestFailover runs TestFailoverSuite in a fresh network namespace where the
// name "db" points at the primary's address.
func TestFailover(t *testing.T) {
	pattern := "^TestFailoverSuite$"
	if sub := os.Getenv(foEnvRun); sub != "" {
		pattern += "/" + sub
	}
	netfault.RunInNamespace(t, pattern, map[string][]string{foHostName: {foPrimaryIP}}, 200*time.Second)
}

// TestFailoverSuite is the part of TestFailover that runs in the namespace.
func TestFailoverSuite(t *testing.T) {
	if !netfault.Inside() {
		t.Skip("run by TestFailover inside a network namespace")
	}
	start := time.Now()
	s := &foSuite{suite: t, ignore: goleak.IgnoreCurrent()}
	t.Cleanup(func() {
		if err := netfault.Clear(); err != nil {
			t.Errorf("netfault.Clear: %v", err)
		}
		t.Logf("MEASURE scenario=suite backend=all wall=%v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("failover-dns", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, b backendCase) { s.failover(t, b, true) })
	})
	t.Run("failover-multihost", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, b backendCase) { s.failover(t, b, false) })
	})
	t.Run("dns-repoint-reachable", func(t *testing.T) {
		forEachBackend(t, s.dnsRepoint)
	})
	t.Run("demoted-primary", func(t *testing.T) {
		forEachBackend(t, s.demotedPrimary)
	})
	t.Run("outage", func(t *testing.T) {
		forEachBackend(t, s.outage)
	})
	t.Run("query-ctx-2s", func(t *testing.T) {
		forEachBackend(t, s.queryCtx)
	})
	t.Run("restart-and-idle-zombies", func(t *testing.T) {
		forEachBackend(t, func(t *testing.T, b backendCase) {
			t.Run("restart", func(t *testing.T) { s.restartZombies(t, b) })
			t.Run("idle-blackhole", func(t *testing.T) { s.idleBlackholeZombies(t, b) })
		})
	})
}

// foSuite holds what the scenarios share.
type foSuite struct {
	suite  *testing.T    // TestFailoverSuite itself: owner of the shared server
	ignore goleak.Option // the goroutines that existed before any scenario

	singleOnce sync.Once
	singleSrv  *pgtest.Server
	singleErr  error
}

// single returns the lone server on foSingleIP, started on first use and
// kept for the whole suite (the scenarios using it leave it healthy).
func (s *foSuite) single(t *testing.T) *pgtest.Server {
	t.Helper()
	s.singleOnce.Do(func() {
		srv, err := pgtest.New(pgtest.Options{ListenAddresses: foSingleIP})
		if err != nil {
			s.singleErr = err
			return
		}
		s.suite.Cleanup(srv.Cleanup)
		if err := srv.Start(); err != nil {
			s.singleErr = err
			return
		}
		s.singleSrv = srv
	})
	if s.singleErr != nil {
		if errors.Is(s.singleErr, pgtest.ErrNoPostgres) {
			requireOrSkip(t, s.singleErr.Error())
		}
		t.Fatalf("starting the single server: %v", s.singleErr)
	}
	return s.singleSrv
}

// guard checks, after everything else the test registered has been cleaned
// up (its *sql.DB closed, its servers gone), that no goroutine and no socket
// of this process is left over from it.
func (s *foSuite) guard(t *testing.T, scenario string, b backendCase) {
	t.Helper()
	before := foSocketFDs()
	t.Cleanup(func() {
		if err := netfault.Clear(); err != nil {
			t.Errorf("netfault.Clear: %v", err)
		}
		start := time.Now()
		deadline := start.Add(foLeakSettle)
		for {
			leaked := goleak.Find(s.ignore)
			after := foSocketFDs()
			if leaked == nil && after <= before {
				t.Logf("MEASURE scenario=%s backend=%s leak_check=ok sockets_before=%d sockets_after=%d settled=%v",
					scenario, b.name, before, after, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				if leaked != nil {
					t.Errorf("goroutines left %v after Close: %v", foLeakSettle, leaked)
				}
				if after > before {
					t.Errorf("%d sockets open %v after Close, %d before:\n%s", after, foLeakSettle, before, foSocketReport())
				}
				t.Logf("MEASURE scenario=%s backend=%s leak_check=failed sockets_before=%d sockets_after=%d",
					scenario, b.name, before, after)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// open makes a connector for dsn (with a state recorder and the test's log)
// and a *sql.DB on it, closed at the end of the test.
func (s *foSuite) open(t *testing.T, b backendCase, dsn string, opts ...Option) (*sql.DB, *Connector, *foStates) {
	t.Helper()
	states := &foStates{}
	all := append([]Option{WithBackend(b.backend), WithStateHook(states.record), WithLogger(foLogger(t))}, opts...)
	c, err := NewConnector(dsn, all...)
	if err != nil {
		t.Fatalf("NewConnector: %v", err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db, c, states
}

// foDSN is the key=value DSN of the scenarios.
func foDSN(host string, port int, extra ...string) string {
	return withKV(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", host, port, pgtest.TrustUser, pgtest.Database), extra...)
}

// foReady waits for c within limit and returns how long that took.
func foReady(t *testing.T, c *Connector, limit time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	return time.Since(start)
}

// foBlackhole drops every packet to and from ip:port (a silent blackhole:
// established connections stall, new ones never get an answer) and returns
// the function that lifts it again; the end of the test lifts it too.
func foBlackhole(t *testing.T, ip string, port int) (lift func()) {
	t.Helper()
	remove, err := netfault.Drop(netfault.Rule{Addr: ip, Port: port})
	if err != nil {
		t.Fatalf("netfault.Drop: %v", err)
	}
	var once sync.Once
	lift = func() {
		once.Do(func() {
			if err := remove(); err != nil {
				t.Errorf("lifting the blackhole on %s:%d: %v", ip, port, err)
			}
		})
	}
	t.Cleanup(lift)
	return lift
}

// foAddrStats returns the address book's entry for ip:port.
func foAddrStats(c *Connector, ip string, port int) (AddrStats, bool) {
	want := net.JoinHostPort(ip, strconv.Itoa(port))
	for _, a := range c.Stats().Addrs {
		if a.Addr == want {
			return a, true
		}
	}
	return AddrStats{}, false
}

// foAssertNoConnsTo checks that the connector holds no socket to ip:port and
// evicted at least once.
func foAssertNoConnsTo(t *testing.T, c *Connector, ip string, port int) {
	t.Helper()
	st := c.Stats()
	if st.Evictions < 1 {
		t.Errorf("Stats().Evictions = %d, want ≥ 1", st.Evictions)
	}
	a, ok := foAddrStats(c, ip, port)
	if !ok {
		// Forgotten: the book drops an address DNS no longer lists only
		// once no socket of any generation is open to it.
		return
	}
	if a.OpenConns != 0 {
		t.Errorf("Stats().Addrs[%s].OpenConns = %d after the failover, want 0 (%+v)", a.Addr, a.OpenConns, a)
	}
}

// ---------------------------------------------------------------------------
// Replicated pair.

// foPair is a primary on foPrimaryIP and its streaming standby on
// foStandbyIP, both on the same port (so that one DSN port fits both and a
// name can be repointed from one to the other).
type foPair struct {
	primary, standby *pgtest.Server
	port             int
}

// foTable exists on both servers of a pair: it is created on the primary
// before the standby is cloned.
const foTable = `CREATE TABLE fo_writes (id bigserial PRIMARY KEY, worker int NOT NULL, at timestamptz NOT NULL DEFAULT now())`

// foInsert records one write and says which server took it.
const foInsert = `INSERT INTO fo_writes (worker) VALUES ($1) RETURNING host(inet_server_addr())`

func foStartPair(t *testing.T) *foPair {
	t.Helper()
	start := time.Now()
	primary := newServer(t, pgtest.Options{ListenAddresses: foPrimaryIP})
	if err := primary.Start(); err != nil {
		t.Fatalf("starting the primary: %v", err)
	}
	if err := primary.Exec(foTable); err != nil {
		t.Fatalf("creating the table: %v", err)
	}
	standby, err := primary.StartStandby(pgtest.Options{ListenAddresses: foStandbyIP, Port: primary.Port()})
	if err != nil {
		t.Fatalf("starting the standby: %v", err)
	}
	t.Cleanup(standby.Cleanup)
	if out, err := standby.Query("SELECT pg_is_in_recovery()"); err != nil || out != "t" {
		t.Fatalf("standby: pg_is_in_recovery() = %q, %v", out, err)
	}
	t.Logf("primary %s:%d and standby %s:%d up in %v", foPrimaryIP, primary.Port(), foStandbyIP, standby.Port(), time.Since(start).Round(time.Millisecond))
	return &foPair{primary: primary, standby: standby, port: primary.Port()}
}

// ---------------------------------------------------------------------------
// Scenarios 1 and 2: failover by DNS and by a multi-host DSN.

func (s *foSuite) failover(t *testing.T, b backendCase, viaDNS bool) {
	scenario := "failover-multihost"
	if viaDNS {
		scenario = "failover-dns"
	}
	s.guard(t, scenario, b)
	pair := foStartPair(t)

	host := foPrimaryIP + "," + foStandbyIP
	var opts []Option
	var resolver *foHostsResolver
	if viaDNS {
		host = foHostName
		setHosts := func(ip string) {
			if err := netfault.SetHosts(map[string][]string{foHostName: {ip}}); err != nil {
				t.Fatalf("SetHosts: %v", err)
			}
		}
		setHosts(foPrimaryIP)
		t.Cleanup(func() { setHosts(foPrimaryIP) })
		// The hosts file is read on every lookup: net.DefaultResolver would
		// serve its cached copy for up to 5 s after the repointing.
		resolver = &foHostsResolver{}
		opts = append(opts, WithResolver(resolver))
	}
	dsn := foDSN(host, pair.port, foFastTCP, "target_session_attrs=read-write")
	db, c, states := s.open(t, b, dsn, opts...)
	db.SetMaxOpenConns(foWorkers)
	db.SetMaxIdleConns(foWorkers)
	foReady(t, c, 15*time.Second)

	load := foStartLoad(db, foWorkers, foInsert)
	defer load.stop(t, 2*foHangLimit)
	if _, ok := load.waitAllWroteOn(foPrimaryIP, time.Time{}, time.Now().Add(15*time.Second)); !ok {
		t.Fatalf("not every worker wrote on the primary before the fault: %s", load.summary())
	}

	lift := foBlackhole(t, foPrimaryIP, pair.port)
	t0 := time.Now()
	if err := pair.standby.Promote(); err != nil {
		t.Fatalf("promoting the standby: %v", err)
	}
	promoted := time.Since(t0)
	if viaDNS {
		if err := netfault.SetHosts(map[string][]string{foHostName: {foStandbyIP}}); err != nil {
			t.Fatalf("SetHosts: %v", err)
		}
	}
	repointed := time.Since(t0)

	converged, ok := load.waitAllWroteOn(foStandbyIP, t0, t0.Add(foFailoverLimit))
	load.stop(t, 2*foHangLimit)
	if !ok {
		t.Errorf("not every worker wrote on the new primary within %v of the blackhole: %s", foFailoverLimit, load.summary())
	}
	if hangs := load.hangs.Load(); hangs > 0 {
		t.Errorf("%d calls took longer than %v", hangs, foHangLimit)
	}
	if longest := load.longest(); longest > foHangLimit {
		t.Errorf("the longest call took %v, limit %v", longest, foHangLimit)
	}
	foAssertNoConnsTo(t, c, foPrimaryIP, pair.port)
	st := c.Stats()
	extra := ""
	if resolver != nil {
		extra = fmt.Sprintf(" lookups=%d", resolver.lookups.Load())
	}
	t.Logf("MEASURE scenario=%s backend=%s all_on_new_primary=%v first_on_new_primary=%v longest_query=%v down_after=%v ready_after=%v promote=%v repoint=%v errors=%d not_ready=%d other_errors=%d writes=%d evictions=%d dials=%d dial_failures=%d%s",
		scenario, b.name, foDur(converged, ok), foDur(load.firstWroteOn(foStandbyIP, t0)), load.longest().Round(time.Millisecond),
		foDur(states.after(StateDown, t0)), foDur(states.after(StateReady, t0)), promoted.Round(time.Millisecond), repointed.Round(time.Millisecond),
		load.errorCount(), load.kind("not-ready"), load.errorCount()-load.kind("not-ready"), load.writes.Load(), st.Evictions, st.Dials, st.DialFailures, extra)
	t.Logf("%s: errors by kind %v; samples %q", scenario, load.kinds(), load.samples())
	lift()
}

// ---------------------------------------------------------------------------
// Scenario 1b: the name moves to another writable server while the old one
// stays reachable (a switchover): pgfast_dns_recheck (default 5 s for host
// names) must move the pool.

func (s *foSuite) dnsRepoint(t *testing.T, b backendCase) {
	const scenario = "dns-repoint-reachable"
	s.guard(t, scenario, b)
	pair := foStartPair(t)
	if err := pair.standby.Promote(); err != nil { // two writable servers
		t.Fatalf("promoting the standby: %v", err)
	}
	setHosts := func(ip string) {
		if err := netfault.SetHosts(map[string][]string{foHostName: {ip}}); err != nil {
			t.Fatalf("SetHosts: %v", err)
		}
	}
	setHosts(foPrimaryIP)
	t.Cleanup(func() { setHosts(foPrimaryIP) })
	resolver := &foHostsResolver{} // reads the hosts file on every lookup (Go's resolver caches it for 5 s)
	dsn := foDSN(foHostName, pair.port, foFastTCP, "target_session_attrs=read-write")
	db, c, _ := s.open(t, b, dsn, WithResolver(resolver))
	db.SetMaxOpenConns(foWorkers)
	db.SetMaxIdleConns(foWorkers)
	foReady(t, c, 15*time.Second)
	recheck := c.Config().DNSRecheck
	if recheck <= 0 {
		t.Fatalf("DNSRecheck = %v for a host name, want the default", recheck)
	}

	load := foStartLoad(db, foWorkers, foInsert)
	defer load.stop(t, 2*foHangLimit)
	if _, ok := load.waitAllWroteOn(foPrimaryIP, time.Time{}, time.Now().Add(15*time.Second)); !ok {
		t.Fatalf("not every worker wrote on the first server: %s", load.summary())
	}
	t0 := time.Now()
	setHosts(foStandbyIP)
	limit := recheck + 3*time.Second
	converged, ok := load.waitAllWroteOn(foStandbyIP, t0, t0.Add(limit))
	load.stop(t, 2*foHangLimit)
	if !ok {
		t.Errorf("not every worker wrote on the server the name points to within %v (recheck every %v): %s", limit, recheck, load.summary())
	}
	if hangs := load.hangs.Load(); hangs > 0 {
		t.Errorf("%d calls took longer than %v", hangs, foHangLimit)
	}
	foAssertNoConnsTo(t, c, foPrimaryIP, pair.port)
	st := c.Stats()
	if st.State != StateReady {
		t.Errorf("state %v after the repointing, want ready (the old server was never down)", st.State)
	}
	t.Logf("MEASURE scenario=%s backend=%s all_on_new_server=%v first_on_new_server=%v dns_recheck=%v errors=%d not_ready=%d longest_query=%v evictions=%d state_changes=%d lookups=%d",
		scenario, b.name, foDur(converged, ok), foDur(load.firstWroteOn(foStandbyIP, t0)), recheck, load.errorCount(), load.kind("not-ready"),
		load.longest().Round(time.Millisecond), st.Evictions, st.StateChanges, resolver.lookups.Load())
	t.Logf("%s: errors by kind %v; samples %q", scenario, load.kinds(), load.samples())
}

// ---------------------------------------------------------------------------
// Scenario 3: the primary is demoted (becomes read-only) under a read-write pool.

func (s *foSuite) demotedPrimary(t *testing.T, b backendCase) {
	const scenario = "demoted-primary"
	s.guard(t, scenario, b)
	pair := foStartPair(t)
	if err := pair.standby.Promote(); err != nil { // now two independent writable servers
		t.Fatalf("promoting the standby: %v", err)
	}
	dsn := foDSN(foPrimaryIP+","+foStandbyIP, pair.port, foFastTCP, "target_session_attrs=read-write")
	db, c, states := s.open(t, b, dsn)
	db.SetMaxOpenConns(foWorkers)
	db.SetMaxIdleConns(foWorkers)
	foReady(t, c, 15*time.Second)

	// Observers: single-connection pools of their own on the first host,
	// each of which must see its first 25006 itself, as the server's error.
	const observers = 4
	var obs []*sql.DB
	for i := range observers {
		odb, oc, _ := s.open(t, b, dsn)
		odb.SetMaxOpenConns(1)
		odb.SetMaxIdleConns(1)
		foReady(t, oc, 15*time.Second)
		var addr string
		if err := odb.QueryRow(foInsert, 100+i).Scan(&addr); err != nil || addr != foPrimaryIP {
			t.Fatalf("observer %d: write before the demotion: %q %v", i, addr, err)
		}
		obs = append(obs, odb)
	}

	load := foStartLoad(db, foWorkers, foInsert)
	defer load.stop(t, 2*foHangLimit)
	if _, ok := load.waitAllWroteOn(foPrimaryIP, time.Time{}, time.Now().Add(15*time.Second)); !ok {
		t.Fatalf("not every worker wrote on the first host before the demotion: %s", load.summary())
	}

	t0 := time.Now()
	if err := pair.primary.Exec("ALTER SYSTEM SET default_transaction_read_only = on;\nSELECT pg_reload_conf();"); err != nil {
		t.Fatalf("demoting the primary: %v", err)
	}
	demoted := time.Since(t0)
	lost := 0
	for i, odb := range obs {
		next, first := foObserveDemotion(odb, 100+i, t0.Add(foDemotedLimit))
		if !hcIsBackendError(b, first, "25006") {
			lost++
			t.Errorf("observer %d: the first failed write on the demoted primary returned %v (%T), want the server's 25006 as the backend's error type", i, first, first)
		}
		if next != foStandbyIP {
			t.Errorf("observer %d: no write on the writable server within %v of the demotion (last: %s)", i, foDemotedLimit, next)
		}
	}
	converged, ok := load.waitAllWroteOn(foStandbyIP, t0, t0.Add(foDemotedLimit))
	load.stop(t, 2*foHangLimit)
	if !ok {
		t.Errorf("not every worker wrote on the other server within %v of the demotion: %s", foDemotedLimit, load.summary())
	}
	// Each pooled connection may run into the read-only server once; the
	// first 25006 must evict the others.
	if n := load.kind("25006"); n > foWorkers {
		t.Errorf("%d read-only errors (25006) reached the application; want at most one per pooled connection (%d)", n, foWorkers)
	}
	if hangs := load.hangs.Load(); hangs > 0 {
		t.Errorf("%d calls took longer than %v", hangs, foHangLimit)
	}
	foAssertNoConnsTo(t, c, foPrimaryIP, pair.port)
	st := c.Stats()
	t.Logf("MEASURE scenario=%s backend=%s all_on_writable=%v first_on_writable=%v errors_25006=%d observers_lost_25006=%d/%d errors=%d not_ready=%d longest_query=%v down_after=%v ready_after=%v alter=%v evictions=%d dials=%d",
		scenario, b.name, foDur(converged, ok), foDur(load.firstWroteOn(foStandbyIP, t0)), load.kind("25006"), lost, observers, load.errorCount(), load.kind("not-ready"),
		load.longest().Round(time.Millisecond), foDur(states.after(StateDown, t0)), foDur(states.after(StateReady, t0)), demoted.Round(time.Millisecond), st.Evictions, st.Dials)
	t.Logf("%s: errors by kind %v; samples %q", scenario, load.kinds(), load.samples())
}

// foObserveDemotion writes through db (one connection) until a write fails,
// then until one lands on the writable server; it returns where the last
// write landed (or the last error) and the first error.
func foObserveDemotion(db *sql.DB, worker int, deadline time.Time) (landed string, first error) {
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), foHangLimit)
		var addr string
		err := db.QueryRowContext(ctx, foInsert, worker).Scan(&addr)
		cancel()
		switch {
		case err != nil && first == nil:
			first = err
		case err != nil:
			landed = foShort(err)
		case first != nil && addr == foStandbyIP:
			return addr, first
		default:
			landed = addr
		}
		time.Sleep(5 * time.Millisecond)
	}
	if first == nil {
		first = errors.New("no write failed on the demoted primary")
	}
	return landed, first
}

// ---------------------------------------------------------------------------
// Scenario 4: an outage fails queries fast and recovers at once.

func (s *foSuite) outage(t *testing.T, b backendCase) {
	const scenario = "outage"
	s.guard(t, scenario, b)
	srv := s.single(t)
	db, c, states := s.open(t, b, foDSN(foSingleIP, srv.Port(), foFastTCP))
	foReady(t, c, 10*time.Second)
	foExecN(t, db, 3)

	lift := foBlackhole(t, foSingleIP, srv.Port())
	t0 := time.Now()
	// A query in flight notices (TCP_USER_TIMEOUT); it may fail.
	probeDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*foHangLimit)
		defer cancel()
		_, err := db.ExecContext(ctx, "SELECT 1")
		probeDone <- err
	}()
	if !foWaitFor(10*time.Second, func() bool { return c.State() == StateDown }) {
		t.Fatalf("state %v %v after the blackhole, want down (stats %+v)", c.State(), time.Since(t0), c.Stats())
	}
	downAfter := time.Since(t0)
	select {
	case err := <-probeDone:
		t.Logf("the query in flight returned after %v: %v", time.Since(t0).Round(time.Millisecond), err)
	case <-time.After(2 * foHangLimit):
		t.Fatalf("the query in flight during the blackhole did not return")
	}

	const calls = 200
	type outcome struct {
		err error
		d   time.Duration
	}
	results := make(chan outcome, calls)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			<-gate
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			rows, err := db.QueryContext(ctx, "SELECT 1")
			d := time.Since(start)
			if rows != nil {
				rows.Close()
			}
			results <- outcome{err, d}
		})
	}
	close(gate)
	if !foWaitGroup(&wg, 10*time.Second) {
		t.Fatalf("%d concurrent queries while down did not all return within 10s", calls)
	}
	close(results)
	var durations []time.Duration
	wrong := 0
	for r := range results {
		durations = append(durations, r.d)
		if !errors.Is(r.err, ErrNotReady) {
			if wrong++; wrong <= 3 {
				t.Errorf("query while down: %v, want ErrNotReady", r.err)
			}
		}
	}
	slices.Sort(durations)
	slow := 0
	for _, d := range durations {
		if d >= foFailFastLimit {
			slow++
		}
	}
	if slow > 0 {
		t.Errorf("%d of %d queries while down took ≥ %v (max %v)", slow, calls, foFailFastLimit, durations[len(durations)-1])
	}

	lift()
	t1 := time.Now()
	readyAfter := foReady(t, c, foRecoverLimit)
	foExecN(t, db, 5)
	if readyAfter > 3*time.Second {
		t.Logf("note: Ready took %v after the fault was lifted (target ~3s, limit %v)", readyAfter, foRecoverLimit)
	}
	st := c.Stats()
	t.Logf("MEASURE scenario=%s backend=%s down_after=%v calls=%d not_ready=%d fail_fast_p50=%v fail_fast_p99=%v fail_fast_max=%v ready_after_lift=%v first_ready_event=%v evictions=%d dials=%d dial_failures=%d",
		scenario, b.name, downAfter.Round(time.Millisecond), calls, calls-wrong, durations[len(durations)/2], durations[len(durations)*99/100], durations[len(durations)-1],
		readyAfter.Round(time.Millisecond), foDur(states.after(StateReady, t1)), st.Evictions, st.Dials, st.DialFailures)
}

// ---------------------------------------------------------------------------
// Scenario 5: a query's context bounds it on a blackholed connection.

func (s *foSuite) queryCtx(t *testing.T, b backendCase) {
	const scenario = "query-ctx-2s"
	s.guard(t, scenario, b)
	srv := s.single(t)
	// pgfast's TCP defaults (keepalives after 10 s, TCP_USER_TIMEOUT 25 s):
	// only the context can end the call in time.
	db, c, _ := s.open(t, b, foDSN(foSingleIP, srv.Port()))
	foReady(t, c, 10*time.Second)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Cleanup(func() { foTerminateSleepers(t, srv) })

	type outcome struct {
		err error
		d   time.Duration
	}
	done := make(chan outcome, 1)
	started := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), foQueryCtx)
		defer cancel()
		_, err := conn.ExecContext(ctx, "SELECT pg_sleep(30)")
		done <- outcome{err, time.Since(started)}
	}()
	time.Sleep(300 * time.Millisecond) // the query is running on the server
	lift := foBlackhole(t, foSingleIP, srv.Port())

	var r outcome
	select {
	case r = <-done:
	case <-time.After(3 * foQueryCtx):
		t.Errorf("a query with a %v context on a blackholed connection has not returned after %v", foQueryCtx, time.Since(started).Round(time.Millisecond))
		t.Logf("MEASURE scenario=%s backend=%s returned_after=>%v limit=%v", scenario, b.name, time.Since(started).Round(time.Millisecond), foQueryCtxLimit)
		// Unblock it so that the test ends: lift the fault and end the query.
		lift()
		foTerminateSleepers(t, srv)
		select {
		case r = <-done:
			t.Logf("it returned after %v once the fault was lifted and the backend terminated: %v", r.d.Round(time.Millisecond), r.err)
		case <-time.After(30 * time.Second):
			t.Errorf("it still has not returned")
		}
		return
	}
	lift()
	if r.err == nil {
		t.Errorf("pg_sleep(30) with a %v context succeeded", foQueryCtx)
	}
	if r.d > foQueryCtxLimit {
		t.Errorf("the query returned after %v, want ≤ %v (context %v): %v", r.d, foQueryCtxLimit, foQueryCtx, r.err)
	}
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Logf("note: the error does not match context.DeadlineExceeded: %v", r.err)
	}
	t.Logf("MEASURE scenario=%s backend=%s returned_after=%v limit=%v err=%q", scenario, b.name, r.d.Round(time.Millisecond), foQueryCtxLimit, foShort(r.err))
}

// foTerminateSleepers ends the pg_sleep queries this suite left running.
func foTerminateSleepers(t *testing.T, srv *pgtest.Server) {
	if err := srv.Exec("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND pid <> pg_backend_pid();"); err != nil {
		t.Logf("terminating pg_sleep backends: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Scenario 6: zombies left by a restart or by a blackhole that healed while
// the pool was idle are dropped without an error reaching the application.

// foZombiePool is how many idle connections the zombie scenarios start with.
const foZombiePool = 5

func (s *foSuite) restartZombies(t *testing.T, b backendCase) {
	const scenario = "restart-zombies"
	s.guard(t, scenario, b)
	srv := s.single(t)
	db, c, _ := s.open(t, b, foDSN(foSingleIP, srv.Port(), foFastTCP))
	db.SetMaxIdleConns(foZombiePool * 2)
	foReady(t, c, 10*time.Second)
	foFillPool(t, db, foZombiePool)

	start := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatalf("restarting the server: %v", err)
	}
	restart := time.Since(start)
	before := c.Stats()
	errs := foQueriesAfterHeal(t, db)
	st := c.Stats()
	t.Logf("MEASURE scenario=%s backend=%s restart=%v app_errors=%d dials=%d evictions=%d state_changes=%d state=%v",
		scenario, b.name, restart.Round(time.Millisecond), errs, st.Dials-before.Dials, st.Evictions, st.StateChanges-before.StateChanges, st.State)
}

func (s *foSuite) idleBlackholeZombies(t *testing.T, b backendCase) {
	const scenario = "idle-blackhole-zombies"
	s.guard(t, scenario, b)
	srv := s.single(t)
	db, c, _ := s.open(t, b, foDSN(foSingleIP, srv.Port(), foFastTCP))
	db.SetMaxIdleConns(foZombiePool * 2)
	foReady(t, c, 10*time.Second)
	foFillPool(t, db, foZombiePool)
	if n := foEstablishedTo(foSingleIP, srv.Port()); n < foZombiePool {
		t.Fatalf("%d established connections to the server, want ≥ %d", n, foZombiePool)
	}

	lift := foBlackhole(t, foSingleIP, srv.Port())
	t0 := time.Now()
	// keepalives_idle=1 + 2 × keepalives_interval=1: the kernel kills the
	// idle sockets after ~3 s (they leave the TCP table).
	if !foWaitFor(10*time.Second, func() bool { return foEstablishedTo(foSingleIP, srv.Port()) == 0 }) {
		t.Fatalf("the idle connections are still established %v into the blackhole", time.Since(t0))
	}
	death := time.Since(t0)
	lift()
	before := c.Stats()
	errs := foQueriesAfterHeal(t, db)
	st := c.Stats()
	t.Logf("MEASURE scenario=%s backend=%s keepalive_death=%v app_errors=%d dials=%d evictions=%d state_changes=%d state=%v",
		scenario, b.name, death.Round(time.Millisecond), errs, st.Dials-before.Dials, st.Evictions-before.Evictions, st.StateChanges-before.StateChanges, st.State)
}

// foQueriesAfterHeal runs queries, one after another and then concurrently,
// on a server that is healthy again; any error is the driver's fault.
func foQueriesAfterHeal(t *testing.T, db *sql.DB) int {
	t.Helper()
	var mu sync.Mutex
	errs := 0
	check := func(err error) {
		if err != nil {
			mu.Lock()
			if errs++; errs <= 5 {
				t.Errorf("query on a healthy server after the fault: %v", err)
			}
			mu.Unlock()
		}
	}
	query := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var one int
		return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	}
	for range 2 * foZombiePool {
		check(query())
	}
	var wg sync.WaitGroup
	for range 2 * foZombiePool {
		wg.Go(func() { check(query()) })
	}
	if !foWaitGroup(&wg, 15*time.Second) {
		t.Fatal("concurrent queries after the fault did not return")
	}
	return errs
}

// foFillPool leaves n idle connections in db's pool.
func foFillPool(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	hcHoldPIDs(t, db, n)
}

// foExecN runs n quick queries that must succeed.
func foExecN(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := db.ExecContext(ctx, "SELECT 1")
		cancel()
		if err != nil {
			t.Fatalf("query: %v", err)
		}
	}
}

// ---------------------------------------------------------------------------
// The application workload of the failover scenarios.

// foLoad is n workers looping SELECT then INSERT with context.Background(),
// as an application would, recording where each write landed, how long each
// call took, and the errors that reached them.
type foLoad struct {
	db      *sql.DB
	insert  string
	workers []*foWorker
	stopCh  chan struct{}
	done    chan struct{}
	abandon chan struct{}
	once    sync.Once

	longestNs atomic.Int64
	hangs     atomic.Int64
	writes    atomic.Int64

	mu     sync.Mutex
	errs   map[string]int
	sample []string
}

type foWorker struct {
	id       int
	inflight atomic.Int64 // UnixNano start of the call in flight, 0 between calls
	flagged  atomic.Int64 // the start of a call already counted as hanging

	mu      sync.Mutex
	firstOn map[string]time.Time // server address → first write there
	lastOn  string
}

func foStartLoad(db *sql.DB, n int, insert string) *foLoad {
	l := &foLoad{db: db, insert: insert, stopCh: make(chan struct{}), done: make(chan struct{}), abandon: make(chan struct{}), errs: map[string]int{}}
	var wg sync.WaitGroup
	for i := range n {
		w := &foWorker{id: i, firstOn: map[string]time.Time{}}
		l.workers = append(l.workers, w)
		wg.Go(func() { l.work(w) })
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	go l.watchdog()
	return l
}

func (l *foLoad) work(w *foWorker) {
	for {
		select {
		case <-l.stopCh:
			return
		default:
		}
		var one int
		err := l.call(w, func() error { return l.db.QueryRow("SELECT 1").Scan(&one) })
		if err == nil {
			var addr string
			err = l.call(w, func() error { return l.db.QueryRow(l.insert, w.id).Scan(&addr) })
			if err == nil {
				l.writes.Add(1)
				now := time.Now()
				w.mu.Lock()
				if _, seen := w.firstOn[addr]; !seen {
					w.firstOn[addr] = now
				}
				w.lastOn = addr
				w.mu.Unlock()
			}
		}
		if err != nil {
			l.recordErr(err)
			select { // do not spin while the database is down
			case <-l.stopCh:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// call runs f, timing it for the watchdog and the longest-call record.
func (l *foLoad) call(w *foWorker, f func() error) error {
	start := time.Now()
	w.inflight.Store(start.UnixNano())
	err := f()
	d := time.Since(start)
	w.inflight.Store(0)
	for {
		cur := l.longestNs.Load()
		if int64(d) <= cur || l.longestNs.CompareAndSwap(cur, int64(d)) {
			break
		}
	}
	return err
}

// watchdog counts calls in flight for longer than foHangLimit.
func (l *foLoad) watchdog() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.abandon:
			return
		case <-tick.C:
		}
		for _, w := range l.workers {
			s := w.inflight.Load()
			if s != 0 && time.Since(time.Unix(0, s)) > foHangLimit && w.flagged.Swap(s) != s {
				l.hangs.Add(1)
				l.mu.Lock()
				l.sample = append(l.sample, fmt.Sprintf("worker %d: a call has been running for more than %v", w.id, foHangLimit))
				l.mu.Unlock()
			}
		}
	}
}

func (l *foLoad) recordErr(err error) {
	kind := "other"
	switch {
	case errors.Is(err, ErrNotReady):
		kind = "not-ready"
	case foSQLState(err) != "":
		kind = foSQLState(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs[kind]++
	if kind != "not-ready" && len(l.sample) < 6 {
		l.sample = append(l.sample, kind+": "+foShort(err))
	}
}

// stop ends the workers and waits for them within limit (each is in at most
// one call); workers still busy then are hanging.
func (l *foLoad) stop(t *testing.T, limit time.Duration) {
	t.Helper()
	l.once.Do(func() {
		close(l.stopCh)
		select {
		case <-l.done:
		case <-time.After(limit):
			close(l.abandon)
			t.Errorf("workers still busy %v after being told to stop: a call hangs (%s)", limit, l.summary())
		}
	})
}

// waitAllWroteOn waits until every worker has written on addr at or after
// since, or until deadline; it returns the time from since to the last
// worker's first such write.
func (l *foLoad) waitAllWroteOn(addr string, since, deadline time.Time) (time.Duration, bool) {
	for {
		var last time.Time
		all := true
		for _, w := range l.workers {
			w.mu.Lock()
			at, ok := w.firstOn[addr]
			w.mu.Unlock()
			if !ok || at.Before(since) {
				all = false
				break
			}
			if at.After(last) {
				last = at
			}
		}
		if all {
			return last.Sub(since), true
		}
		if time.Now().After(deadline) {
			return time.Since(since), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstWroteOn returns how long after since the first write on addr came.
func (l *foLoad) firstWroteOn(addr string, since time.Time) (time.Duration, bool) {
	var first time.Time
	for _, w := range l.workers {
		w.mu.Lock()
		at, ok := w.firstOn[addr]
		w.mu.Unlock()
		if ok && !at.Before(since) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first.Sub(since), !first.IsZero()
}

func (l *foLoad) longest() time.Duration { return time.Duration(l.longestNs.Load()) }

func (l *foLoad) kind(k string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs[k]
}

func (l *foLoad) kinds() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.errs))
	for k, v := range l.errs {
		out[k] = v
	}
	return out
}

func (l *foLoad) errorCount() int {
	n := 0
	for _, v := range l.kinds() {
		n += v
	}
	return n
}

func (l *foLoad) samples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sample)
}

// summary says where each worker last wrote and what went wrong.
func (l *foLoad) summary() string {
	var b strings.Builder
	for _, w := range l.workers {
		w.mu.Lock()
		fmt.Fprintf(&b, "w%d→%s ", w.id, w.lastOn)
		w.mu.Unlock()
	}
	fmt.Fprintf(&b, "writes=%d errors=%v samples=%q", l.writes.Load(), l.kinds(), l.samples())
	return b.String()
}

// ---------------------------------------------------------------------------
// Helpers.

// foHostsResolver resolves names from /etc/hosts (inside the namespace, the
// file netfault.SetHosts rewrites), reading it on every call: Go's own
// resolver caches /etc/hosts for up to 5 s, which would hide a repointing.
type foHostsResolver struct {
	lookups atomic.Int64
}

func (r *foHostsResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	// SetHosts rewrites the file in place: a reader may catch it empty.
	for attempt := 0; ; attempt++ {
		addrs, err := foParseHosts("/etc/hosts", network, host)
		if err != nil || len(addrs) > 0 || attempt == 3 {
			if err == nil && len(addrs) == 0 {
				err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			return addrs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// foParseHosts returns host's addresses in a hosts(5) file, in file order,
// limited to network's family ("ip", "ip4", "ip6").
func foParseHosts(path, network, host string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		switch {
		case network == "ip4" && !addr.Unmap().Is4(), network == "ip6" && !addr.Is6():
			continue
		}
		for _, name := range fields[1:] {
			if strings.EqualFold(name, host) {
				out = append(out, addr)
				break
			}
		}
	}
	return out, nil
}

// foStates records the connector's state changes with their times.
type foStates struct {
	mu     sync.Mutex
	events []foStateEvent
}

type foStateEvent struct {
	st  State
	at  time.Time
	err error
}

func (s *foStates) record(st State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, foStateEvent{st, time.Now(), err})
}

// after returns how long after since the connector first entered st.
func (s *foStates) after(st State, since time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.st == st && !e.at.Before(since) {
			return e.at.Sub(since), true
		}
	}
	return 0, false
}

// foDur formats a measured duration, or "none" when there is none.
func foDur(d time.Duration, ok bool) string {
	if !ok {
		return "none"
	}
	return d.Round(time.Millisecond).String()
}

// foLogger sends the connector's log to the test's log until the test ends.
func foLogger(t *testing.T) *slog.Logger {
	w := &foLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type foLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *foLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// foSQLState returns err's SQLSTATE (both backends' error types have one).
func foSQLState(err error) string {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return coded.SQLState()
	}
	return ""
}

// foShort is err's message, cut to a log-friendly length.
func foShort(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// foWaitFor polls cond every 5 ms until it holds or limit passes.
func foWaitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// foWaitGroup waits for wg within limit.
func foWaitGroup(wg *sync.WaitGroup, limit time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

// foSocketFDs counts this process's open socket descriptors (TCP or not,
// alive or killed by the kernel).
func foSocketFDs() int {
	n := 0
	for _, link := range foFDLinks() {
		if strings.HasPrefix(link, "socket:[") {
			n++
		}
	}
	return n
}

func foFDLinks() []string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var links []string
	for _, e := range entries {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			links = append(links, link)
		}
	}
	return links
}

// foTCPEntry is one row of /proc/self/net/tcp{,6}.
type foTCPEntry struct {
	local, remote netip.AddrPort
	state         string // hex, "01" = ESTABLISHED
	inode         string
}

// foTCPTable reads the namespace's TCP sockets.
func foTCPTable() []foTCPEntry {
	var out []foTCPEntry
	for _, path := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 10 {
				continue
			}
			out = append(out, foTCPEntry{local: foProcAddr(f[1]), remote: foProcAddr(f[2]), state: f[3], inode: f[9]})
		}
	}
	return out
}

// foProcAddr decodes /proc/net/tcp's "0100007F:1538" (address words in host
// byte order, little-endian here).
func foProcAddr(s string) netip.AddrPort {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}
	}
	raw, err := hex.DecodeString(hexAddr)
	port, perr := strconv.ParseUint(hexPort, 16, 16)
	if err != nil || perr != nil || len(raw)%4 != 0 {
		return netip.AddrPort{}
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port))
}

// foOwnInodes returns the socket inodes of this process.
func foOwnInodes() map[string]bool {
	own := map[string]bool{}
	for _, link := range foFDLinks() {
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			own[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return own
}

// foEstablishedTo counts this process's established TCP connections to ip:port.
func foEstablishedTo(ip string, port int) int {
	want := netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
	own := foOwnInodes()
	n := 0
	for _, e := range foTCPTable() {
		if e.remote == want && e.state == "01" && own[e.inode] {
			n++
		}
	}
	return n
}

// foSocketReport lists this process's sockets for a leak report.
func foSocketReport() string {
	tcp := map[string]foTCPEntry{}
	for _, e := range foTCPTable() {
		tcp[e.inode] = e
	}
	var b bytes.Buffer
	for ino := range foOwnInodes() {
		if e, ok := tcp[ino]; ok {
			fmt.Fprintf(&b, "  inode %s: tcp %s → %s state %s\n", ino, e.local, e.remote, e.state)
		} else {
			fmt.Fprintf(&b, "  inode %s: not in the TCP table (closed by the kernel, or not TCP)\n", ino)
		}
	}
	return b.String()
}

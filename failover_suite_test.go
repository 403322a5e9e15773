package pgfast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// The health and rapid-recovery suite: real PostgreSQL servers with real
// streaming replication, faults injected with nftables inside a network
// namespace of the suite's own (loopback addresses only). TestFailover
// re-executes the test binary into that namespace to run TestFailoverSuite;
// the scenarios run one after another (timings are measured), each over
// every front end (frontend_test.go: database/sql with pgx or lib/pq, and
// pgx's native pool; PGFAST_FRONTENDS narrows them), and log one
// "MEASURE scenario=... backend=..." line each. For the pool, the failover
// and outage scenarios run raw pgxpool.New side by side and log its line
// too (backend=pgxpool); the database/sql raw baselines are measured by the
// fault suite (TestFaults).

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
	// With pgfast's default TCP settings the dead-peer window (10 s) decides.
	foDefaultsFailoverLimit = 16 * time.Second
	foDefaultsHangLimit     = 14 * time.Second
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
	netfault.RunInNamespace(t, pattern, map[string][]string{foHostName: {foPrimaryIP}}, 300*time.Second)
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
		forEachFrontEnd(t, func(t *testing.T, b frontEnd) { s.failover(t, b, true) })
	})
	t.Run("failover-multihost", func(t *testing.T) {
		forEachFrontEnd(t, func(t *testing.T, b frontEnd) { s.failover(t, b, false) })
	})
	t.Run("failover-multihost-defaults", func(t *testing.T) {
		forEachFrontEnd(t, func(t *testing.T, b frontEnd) { s.failoverWith(t, b, false, true) })
	})
	t.Run("dns-repoint-reachable", func(t *testing.T) {
		forEachFrontEnd(t, s.dnsRepoint)
	})
	t.Run("demoted-primary", func(t *testing.T) {
		forEachFrontEnd(t, s.demotedPrimary)
	})
	t.Run("outage", func(t *testing.T) {
		forEachFrontEnd(t, s.outage)
	})
	t.Run("query-ctx-2s", func(t *testing.T) {
		forEachFrontEnd(t, s.queryCtx)
	})
	t.Run("restart-and-idle-zombies", func(t *testing.T) {
		forEachFrontEnd(t, func(t *testing.T, b frontEnd) {
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
func (s *foSuite) guard(t *testing.T, scenario string, b frontEnd) {
	t.Helper()
	before := testkit.SocketFDs()
	t.Cleanup(func() {
		if err := netfault.Clear(); err != nil {
			t.Errorf("netfault.Clear: %v", err)
		}
		start := time.Now()
		deadline := start.Add(foLeakSettle)
		for {
			leaked := goleak.Find(s.ignore)
			after := testkit.SocketFDs()
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
					t.Errorf("%d sockets open %v after Close, %d before:\n%s", after, foLeakSettle, before, testkit.SocketReport())
				}
				t.Logf("MEASURE scenario=%s backend=%s leak_check=failed sockets_before=%d sockets_after=%d",
					scenario, b.name, before, after)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// open opens dsn with pgfast behind fe (a connector with a state recorder
// and the test's log), closed at the end of the test; size caps the pool
// (frontEnd.open).
func (s *foSuite) open(t *testing.T, fe frontEnd, dsn string, size int, opts ...Option) (feDB, *Connector, *foStates) {
	t.Helper()
	states := &foStates{}
	all := append([]Option{WithStateHook(states.record), WithLogger(testkit.Logger(t))}, opts...)
	db, c, err := fe.open(dsn, size, all...)
	if err != nil {
		t.Fatalf("opening %s: %v", fe.name, err)
	}
	t.Cleanup(db.Close)
	return db, c, states
}

// openRaw opens dsn with fe's raw baseline, closed at the end of the test.
func (s *foSuite) openRaw(t *testing.T, fe frontEnd, dsn string, size int, h rawHooks) feDB {
	t.Helper()
	db, err := fe.openRaw(dsn, size, h)
	if err != nil {
		t.Fatalf("opening raw %s: %v", fe.raw, err)
	}
	t.Cleanup(db.Close)
	return db
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

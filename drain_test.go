package pgfast

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// drainFront is one front end Drain serves, opened on a DSN.
type drainFront struct {
	name string
	open func(t *testing.T, dsn string) drainTarget
}

// drainTarget is an open front end: a query, a connection held, Drain, Close.
type drainTarget struct {
	query func(ctx context.Context) error
	hold  func(ctx context.Context) (release func(), err error)
	drain func(ctx context.Context) error
	close func()
}

func sqlTarget(t *testing.T, driverName, dsn string, maxOpen int) drainTarget {
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(maxOpen)
	readyT(t, db, 10*time.Second)
	return drainTarget{
		query: func(ctx context.Context) error {
			var one int
			return db.QueryRowContext(ctx, "select 1").Scan(&one)
		},
		hold: func(ctx context.Context) (func(), error) {
			conn, err := db.Conn(ctx)
			if err != nil {
				return nil, err
			}
			if err := conn.PingContext(ctx); err != nil {
				return nil, err
			}
			return func() { _ = conn.Close() }, nil
		},
		drain: func(ctx context.Context) error { return Drain(ctx, db) },
		close: func() { _ = db.Close() },
	}
}

var drainFronts = []drainFront{
	{"pgfast", func(t *testing.T, dsn string) drainTarget { return sqlTarget(t, "pgfast", dsn, 0) }},
	{"pgfast-pq", func(t *testing.T, dsn string) drainTarget { return sqlTarget(t, "pgfast-pq", dsn, 0) }},
	// Fewer connections than workers: callers wait for connections others
	// release, where pgx hands them over unchecked (callersMayRefuse).
	{"pgfast-maxopen4", func(t *testing.T, dsn string) drainTarget { return sqlTarget(t, "pgfast", dsn, 4) }},
	{"pgfast-pq-maxopen4", func(t *testing.T, dsn string) drainTarget { return sqlTarget(t, "pgfast-pq", dsn, 4) }},
	{"NewPool", func(t *testing.T, dsn string) drainTarget {
		p, err := NewPool(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := PoolConnector(p).Ready(ctx); err != nil {
			t.Fatal(err)
		}
		return drainTarget{
			query: func(ctx context.Context) error {
				var one int
				return p.QueryRow(ctx, "select 1").Scan(&one)
			},
			hold: func(ctx context.Context) (func(), error) {
				conn, err := p.Acquire(ctx)
				if err != nil {
					return nil, err
				}
				return conn.Release, nil
			},
			drain: func(ctx context.Context) error { return Drain(ctx, p) },
			close: func() {
				p.Close()
				// A pool closed with no connection left (Drain emptied it)
				// has no BeforeClose to tell its connector: PoolConnector
				// looks (poolreg.go).
				PoolConnector(p)
			},
		}
	}},
}

// backendPIDs returns the server's backends for application_name app.
func backendPIDs(t *testing.T, srv *pgtest.Server, app string) []string {
	t.Helper()
	out, err := srv.Query(fmt.Sprintf("select pid from pg_stat_activity where application_name = '%s' order by pid", app))
	if err != nil {
		t.Fatal(err)
	}
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// drainApp names a test's sessions in pg_stat_activity.
func drainApp(t *testing.T) string {
	return strings.NewReplacer("/", "_", "-", "_").Replace(strings.ToLower(t.Name()))
}

// TestDrainUnderLoad: ten workers query without pause; Drain in the middle
// replaces every session (each backend pid there before it is gone when it
// returns), with pgfast_min_conns warm ones, and no query fails. Without
// Drain the old sessions stay (the pids check fails).
func TestDrainUnderLoad(t *testing.T) {
	srv := server(t)
	waitPoolsStopped(t)
	leaks := goleak.IgnoreCurrent()
	for _, f := range drainFronts {
		t.Run(f.name, func(t *testing.T) {
			app := drainApp(t)
			kv := []string{"application_name=" + app}
			if f.name != "NewPool" {
				kv = append(kv, "pgfast_min_conns=2")
			}
			tg := f.open(t, withKV(srv.DSN(pgtest.TrustUser), kv...))
			defer tg.close()

			var ok, failed atomic.Int64
			var firstErr atomic.Pointer[error]
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 10 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						err := tg.query(ctx)
						cancel()
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, &err)
						} else {
							ok.Add(1)
						}
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			before := backendPIDs(t, srv, app)
			if len(before) == 0 {
				t.Fatal("no session before Drain")
			}
			okBefore := ok.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			err := tg.drain(ctx)
			took := time.Since(start)
			cancel()
			if err != nil {
				t.Errorf("Drain: %v", err)
			}
			// The server ends a backend a moment after its client closes.
			var stayed []string
			testkit.WaitFor(2*time.Second, func() bool {
				now := backendPIDs(t, srv, app)
				stayed = stayed[:0]
				for _, pid := range before {
					if slices.Contains(now, pid) {
						stayed = append(stayed, pid)
					}
				}
				return len(stayed) == 0
			})
			if len(stayed) > 0 {
				t.Errorf("sessions from before Drain still there: %v of %v", stayed, before)
			}
			time.Sleep(200 * time.Millisecond)
			okAfterDrain := ok.Load()
			close(stop)
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Errorf("%d queries failed, first: %v", n, *firstErr.Load())
			}
			if okAfterDrain <= okBefore {
				t.Errorf("no query ran during or after Drain (%d before, %d after)", okBefore, okAfterDrain)
			}
			t.Logf("Drain took %v for %d sessions; %d queries, 0 failed", took.Round(time.Millisecond), len(before), ok.Load())
		})
	}
	waitPoolsStopped(t)
	goleak.VerifyNone(t, leaks)
}

// TestDrainBoundedByContext: a connection held for the whole Drain keeps it
// from completing; Drain returns ctx's error saying one is left, and the
// connection goes once released.
func TestDrainBoundedByContext(t *testing.T) {
	srv := server(t)
	waitPoolsStopped(t)
	leaks := goleak.IgnoreCurrent()
	for _, f := range drainFronts {
		t.Run(f.name, func(t *testing.T) {
			app := drainApp(t)
			tg := f.open(t, withKV(srv.DSN(pgtest.TrustUser), "application_name="+app))
			defer tg.close()
			bg := context.Background()
			release, err := tg.hold(bg)
			if err != nil {
				t.Fatal(err)
			}
			held := backendPIDs(t, srv, app)
			ctx, cancel := context.WithTimeout(bg, 300*time.Millisecond)
			start := time.Now()
			err = tg.drain(ctx)
			took := time.Since(start)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 of") {
				t.Errorf("Drain with a connection held: %v, want DeadlineExceeded naming 1 left", err)
			}
			if took > time.Second {
				t.Errorf("Drain returned %v after its context ended", took-300*time.Millisecond)
			}
			// The held session still works, then goes at its release (or at
			// the next checkout).
			release()
			for range 3 {
				if err := tg.query(bg); err != nil {
					t.Fatalf("query after Drain: %v", err)
				}
			}
			if f.name == "pgfast-maxopen4" {
				return // kept until a later Drain (callersMayRefuse)
			}
			if !testkit.WaitFor(2*time.Second, func() bool {
				return !slices.ContainsFunc(backendPIDs(t, srv, app), func(pid string) bool { return slices.Contains(held, pid) })
			}) {
				t.Errorf("the session held during Drain is still there after its release: %v", held)
			}
		})
	}
	waitPoolsStopped(t)
	goleak.VerifyNone(t, leaks)
}

// TestDrainIdleNow: with no load at all, Drain closes the idle sessions at
// once (database/sql's idle list, the pool's idle connections), rather
// than waiting for a checkout that may never come.
func TestDrainIdleNow(t *testing.T) {
	srv := server(t)
	for _, f := range drainFronts {
		t.Run(f.name, func(t *testing.T) {
			app := drainApp(t)
			tg := f.open(t, withKV(srv.DSN(pgtest.TrustUser), "application_name="+app))
			defer tg.close()
			var releases []func()
			for range 3 {
				release, err := tg.hold(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				releases = append(releases, release)
			}
			for _, release := range releases {
				release()
			}
			before := backendPIDs(t, srv, app)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := tg.drain(ctx); err != nil {
				t.Fatalf("Drain of idle connections: %v", err)
			}
			if !testkit.WaitFor(time.Second, func() bool {
				return !slices.ContainsFunc(backendPIDs(t, srv, app), func(pid string) bool { return slices.Contains(before, pid) })
			}) {
				t.Errorf("idle sessions still there after Drain: %v", before)
			}
		})
	}
}

// TestDrainClosedOrDown: Drain returns at once after Close, on a connector
// that is Down, on a pool already closed, and for a *sql.DB without pgfast.
func TestDrainClosedOrDown(t *testing.T) {
	waitPoolsStopped(t)
	leaks := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quick := func(t *testing.T, what string, f func() error, want error) {
		t.Helper()
		start := time.Now()
		err := f()
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: Drain took %v", what, took)
		}
		if (want == nil) != (err == nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%s: Drain = %v, want %v", what, err, want)
		}
	}
	forEachBackend(t, func(t *testing.T, b backendCase) {
		down, err := sql.Open(b.name, fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", freeLoopbackPort(t)))
		if err != nil {
			t.Fatal(err)
		}
		quick(t, "Down", func() error { return Drain(ctx, down) }, nil)
		down.Close()
		quick(t, "closed", func() error { return Drain(ctx, down) }, ErrClosed)
	})
	p, err := NewPool(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", freeLoopbackPort(t)))
	if err != nil {
		t.Fatal(err)
	}
	quick(t, "Down pool", func() error { return Drain(ctx, p) }, nil)
	p.Close()
	quick(t, "closed pool", func() error { return Drain(ctx, p) }, nil)
	other, err := sql.Open("postgres", "host=127.0.0.1 user=x")
	if err != nil {
		t.Fatal(err)
	}
	if err := Drain(ctx, other); !errors.Is(err, errDrainNotPgfast) {
		t.Errorf("Drain of a *sql.DB without pgfast: %v", err)
	}
	other.Close()
	waitPoolsStopped(t)
	goleak.VerifyNone(t, leaks)
}

// TestDrainLooksNamesUp: Drain looks the host name up before anything is
// replaced, even with the scheduled rechecks off: two lookups, Drain's and
// the dial of the one warm connection's replacement (one without the
// recheck).
func TestDrainLooksNamesUp(t *testing.T) {
	srv := server(t)
	r := &drainResolver{addr: netip.MustParseAddr("127.0.0.1")}
	dsn := strings.Replace(srv.DSN(pgtest.TrustUser), "host=127.0.0.1", "host=drain.test", 1)
	if dsn == srv.DSN(pgtest.TrustUser) {
		t.Skipf("the test server's DSN names no 127.0.0.1 host: %s", dsn)
	}
	c, err := NewConnector(withKV(dsn, "pgfast_dns_recheck=0", "pgfast_min_conns=1"), WithResolver(r))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	readyT(t, db, 10*time.Second)
	before := r.lookups.Load()
	if err := Drain(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if !testkit.WaitFor(2*time.Second, func() bool { return c.Stats().WarmIdle == 1 }) {
		t.Fatalf("the warm connection was not replaced: %+v", c.Stats())
	}
	if got := r.lookups.Load() - before; got != 2 {
		t.Errorf("Drain and the warm replacement made %d lookups of drain.test, want 2", got)
	}
}

type drainResolver struct {
	addr    netip.Addr
	lookups atomic.Int64
}

func (r *drainResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host != "drain.test" {
		return nil, fmt.Errorf("unexpected lookup of %s", host)
	}
	r.lookups.Add(1)
	return []netip.Addr{r.addr}, nil
}

// A pool's Drain keeps the pool's type: it is pgx's own *pgxpool.Pool.
var _ = Drain[*pgxpool.Pool]

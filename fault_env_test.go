package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

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
		e.t.Errorf("goroutines of this scenario still blocked 15s after the rules were removed and the raw sockets closed:\n%s", testkit.Stacks())
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
		fmt.Fprintf(os.Stderr, "fault scenario %s exceeded its hard cap of %v; goroutines:\n%s\n", name, limit, testkit.Stacks())
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

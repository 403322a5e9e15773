package pgfast

import (
	"context"
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
// t, removes its rules, closes the raw drivers' sockets (unblocking their
// abandoned calls), waits for every goroutine the scenario started, and
// closes every pool; the server's own cleanup (registered before) runs after.
// The front ends of a scenario run in parallel, each with an environment and
// a server (port) of its own: an environment removes only its own rules.
type faultEnv struct {
	t   *testing.T
	srv *pgtest.Server
	// ctx ends when the cleanup starts: the parent of the raw drivers'
	// bounded calls, so that abandoned ones return at once.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	dbs   []feDB
	raws  []*faultRawPool
	rules []func() error // removes the rules this environment installed
	bg    sync.WaitGroup
}

// faultRegistry lets the watchdog reach the running scenarios' environments.
var faultRegistry struct {
	sync.Mutex
	envs map[*faultEnv]bool
}

// faultSetup creates a server listening on 127.0.0.1 and ::1 (started or
// not) and the scenario's environment.
func faultSetup(t *testing.T, start bool) (*faultEnv, *pgtest.Server) {
	t.Helper()
	return faultSetupOpts(t, start, nil)
}

// faultSetupSettings is faultSetup with a started server and extra
// postgresql.conf settings.
func faultSetupSettings(t *testing.T, settings map[string]string) (*faultEnv, *pgtest.Server) {
	t.Helper()
	return faultSetupOpts(t, true, settings)
}

func faultSetupOpts(t *testing.T, start bool, settings map[string]string) (*faultEnv, *pgtest.Server) {
	t.Helper()
	srv := newServer(t, pgtest.Options{ListenAddresses: "127.0.0.1,::1", Settings: settings})
	if start {
		if err := srv.Start(); err != nil {
			t.Fatalf("starting the server: %v", err)
		}
	}
	e := &faultEnv{t: t, srv: srv}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	faultRegistry.Lock()
	if faultRegistry.envs == nil {
		faultRegistry.envs = map[*faultEnv]bool{}
	}
	faultRegistry.envs[e] = true
	faultRegistry.Unlock()
	t.Cleanup(e.cleanup)
	return e, srv
}

func (e *faultEnv) cleanup() {
	defer func() {
		faultRegistry.Lock()
		delete(faultRegistry.envs, e)
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
	e.mu.Lock()
	raws, dbs, rules := e.raws, e.dbs, e.rules
	e.mu.Unlock()
	for _, remove := range rules {
		if err := remove(); err != nil {
			e.t.Errorf("removing an nft rule: %v", err)
		}
	}
	slow("removing the rules")
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
		if p.db != nil {
			p.db.Close()
		}
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
		var envs []*faultEnv
		for e := range faultRegistry.envs {
			envs = append(envs, e)
		}
		faultRegistry.Unlock()
		for _, e := range envs {
			e.emergency()
		}
		panic(fmt.Sprintf("fault scenario %s exceeded its hard cap of %v", name, limit))
	})
	return func() { timer.Stop() }
}

// open opens dsn with pgfast behind fe and reports how long opening took
// (sql.OpenDB on a new connector, or NewPool).
func (e *faultEnv) open(fe frontEnd, dsn string) (feDB, *Connector, time.Duration) {
	e.t.Helper()
	start := time.Now()
	db, c, err := fe.open(dsn, 0)
	took := time.Since(start)
	if err != nil {
		e.t.Fatalf("opening %s: %v", fe.name, err)
	}
	e.mu.Lock()
	e.dbs = append(e.dbs, db)
	e.mu.Unlock()
	return db, c, took
}

// drop installs r and returns when it is in effect.
func (e *faultEnv) drop(r netfault.Rule) time.Time {
	e.t.Helper()
	remove, err := netfault.Drop(r)
	if err != nil {
		e.t.Fatalf("netfault.Drop(%+v): %v", r, err)
	}
	e.mu.Lock()
	e.rules = append(e.rules, remove)
	e.mu.Unlock()
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
func faultExec(ctx context.Context, db feDB, query string) func() error {
	return func() error { return db.Exec(ctx, query) }
}

// mustReady waits for pgfast's readiness or fails the test.
func (e *faultEnv) mustReady(c *Connector) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		e.t.Fatalf("Ready: %v", err)
	}
}

// warm makes db hold n idle connections: n connections checked out at once
// and returned.
func (e *faultEnv) warm(db feDB, n int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := db.Hold(ctx, n); err != nil {
		e.t.Fatalf("warming the pool: %v", err)
	}
	if idle := db.Idle(); idle != n {
		e.t.Fatalf("pool holds %d idle connections, want %d", idle, n)
	}
}

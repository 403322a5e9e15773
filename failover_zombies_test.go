package pgfast

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

// ---------------------------------------------------------------------------
// Scenario 6: zombies left by a restart or by a blackhole that healed while
// the pool was idle are dropped without an error reaching the application.

// foZombiePool is how many idle connections the zombie scenarios start with.
const foZombiePool = 5

func (s *foSuite) restartZombies(t *testing.T, b frontEnd) {
	const scenario = "restart-zombies"
	s.guard(t, scenario, b)
	srv := s.single(t)
	db, c, _ := s.open(t, b, foDSN(foSingleIP, srv.Port(), foFastTCP), 2*foZombiePool)
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

func (s *foSuite) idleBlackholeZombies(t *testing.T, b frontEnd) {
	const scenario = "idle-blackhole-zombies"
	s.guard(t, scenario, b)
	srv := s.single(t)
	db, c, _ := s.open(t, b, foDSN(foSingleIP, srv.Port(), foFastTCP), 2*foZombiePool)
	foReady(t, c, 10*time.Second)
	foFillPool(t, db, foZombiePool)
	if n := testkit.EstablishedTo(foSingleIP, srv.Port()); n < foZombiePool {
		t.Fatalf("%d established connections to the server, want ≥ %d", n, foZombiePool)
	}

	lift := foBlackhole(t, foSingleIP, srv.Port())
	t0 := time.Now()
	// keepalives_idle=1 + 2 × keepalives_interval=1: the kernel kills the
	// idle sockets after ~3 s (they leave the TCP table).
	if !testkit.WaitFor(10*time.Second, func() bool { return testkit.EstablishedTo(foSingleIP, srv.Port()) == 0 }) {
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
func foQueriesAfterHeal(t *testing.T, db feDB) int {
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
		return db.QueryRowScan(ctx, "SELECT 1", nil, &one)
	}
	for range 2 * foZombiePool {
		check(query())
	}
	var wg sync.WaitGroup
	for range 2 * foZombiePool {
		wg.Go(func() { check(query()) })
	}
	if !testkit.WaitGroup(&wg, 15*time.Second) {
		t.Fatal("concurrent queries after the fault did not return")
	}
	return errs
}

// foFillPool leaves n idle connections in db's pool.
func foFillPool(t *testing.T, db feDB, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.Hold(ctx, n); err != nil {
		t.Fatalf("filling the pool: %v", err)
	}
}

// foExecN runs n quick queries that must succeed.
func foExecN(t *testing.T, db feDB, n int) {
	t.Helper()
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := db.Exec(ctx, "SELECT 1")
		cancel()
		if err != nil {
			t.Fatalf("query: %v", err)
		}
	}
}

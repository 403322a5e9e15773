package pgfast

import (
	"context"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

// ---------------------------------------------------------------------------
// Scenario 3: the primary is demoted (becomes read-only) under a read-write pool.

func (s *foSuite) demotedPrimary(t *testing.T, b frontEnd) {
	const scenario = "demoted-primary"
	s.guard(t, scenario, b)
	pair := foStartPair(t)
	if err := pair.standby.Promote(); err != nil { // now two independent writable servers
		t.Fatalf("promoting the standby: %v", err)
	}
	dsn := foDSN(foPrimaryIP+","+foStandbyIP, pair.port, foFastTCP, "target_session_attrs=read-write")
	db, c, states := s.open(t, b, dsn, foWorkers)
	foReady(t, c, 15*time.Second)

	// Observers: single-connection pools of their own on the first host.
	// An observer's first failure, if it has one, is the server's 25006 as
	// the backend's error; it may have none: another tenant's 25006 makes
	// the shared view evict the demoted server for every tenant. (The loop
	// waited for a failure that never came, using up the other observers'
	// time: a flaky failure of the full run.)
	const observers = 4
	var obs []feDB
	for i := range observers {
		odb, oc, _ := s.open(t, b, dsn, 1)
		foReady(t, oc, 15*time.Second)
		var addr string
		if err := odb.QueryRowScan(context.Background(), foInsert, []any{100 + i}, &addr); err != nil || addr != foPrimaryIP {
			t.Fatalf("observer %d: write before the demotion: %q %v", i, addr, err)
		}
		obs = append(obs, odb)
	}

	load := foStartLoad(db, foWorkers, foInsert)
	defer load.Stop(t, 2*foHangLimit)
	if _, ok := load.WaitAllWroteOn(foPrimaryIP, time.Time{}, time.Now().Add(15*time.Second)); !ok {
		t.Fatalf("not every worker wrote on the first host before the demotion: %s", load.Summary())
	}

	t0 := time.Now()
	if err := pair.primary.Exec("ALTER SYSTEM SET default_transaction_read_only = on;\nSELECT pg_reload_conf();"); err != nil {
		t.Fatalf("demoting the primary: %v", err)
	}
	demoted := time.Since(t0)
	lost := 0
	for i, odb := range obs {
		next, first := foObserveDemotion(odb, 100+i, t0.Add(foDemotedLimit))
		if first != nil && !hcIsBackendError(b.backendCase, first, "25006") {
			lost++
			t.Errorf("observer %d: the first failed write on the demoted primary returned %v (%T), want the server's 25006 as the backend's error type", i, first, first)
		}
		if next != foStandbyIP {
			t.Errorf("observer %d: no write on the writable server within %v of the demotion (last: %s)", i, foDemotedLimit, next)
		}
	}
	converged, ok := load.WaitAllWroteOn(foStandbyIP, t0, t0.Add(foDemotedLimit))
	load.Stop(t, 2*foHangLimit)
	if !ok {
		t.Errorf("not every worker wrote on the other server within %v of the demotion: %s", foDemotedLimit, load.Summary())
	}
	// Each pooled connection may run into the read-only server once; the
	// first 25006 must evict the others.
	if n := load.Kind("25006"); n > foWorkers {
		t.Errorf("%d read-only errors (25006) reached the application; want at most one per pooled connection (%d)", n, foWorkers)
	}
	if hangs := load.Hangs(); hangs > 0 {
		t.Errorf("%d calls took longer than %v", hangs, foHangLimit)
	}
	foAssertNoConnsTo(t, c, foPrimaryIP, pair.port)
	st := c.Stats()
	t.Logf("MEASURE scenario=%s backend=%s all_on_writable=%v first_on_writable=%v errors_25006=%d observers_lost_25006=%d/%d errors=%d not_ready=%d longest_query=%v down_after=%v ready_after=%v alter=%v evictions=%d dials=%d",
		scenario, b.name, foDur(converged, ok), foDur(load.FirstWroteOn(foStandbyIP, t0)), load.Kind("25006"), lost, observers, load.ErrorCount(), load.Kind("not-ready"),
		load.Longest().Round(time.Millisecond), foDur(states.after(StateDown, t0)), foDur(states.after(StateReady, t0)), demoted.Round(time.Millisecond), st.Evictions, st.Dials)
	t.Logf("%s: errors by kind %v; samples %q", scenario, load.Kinds(), load.Samples())
}

// foObserveDemotion writes through db (one connection) until a write fails,
// then until one lands on the writable server; it returns where the last
// write landed (or the last error) and the first error.
func foObserveDemotion(db feDB, worker int, deadline time.Time) (landed string, first error) {
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), foHangLimit)
		var addr string
		err := db.QueryRowScan(ctx, foInsert, []any{worker}, &addr)
		cancel()
		switch {
		case err != nil && first == nil:
			first = err
		case err != nil:
			landed = testkit.Short(err)
		case addr == foStandbyIP:
			// After its own 25006, or none: another tenant's 25006 made
			// the shared view evict the demoted server first.
			return addr, first
		default:
			landed = addr
		}
		time.Sleep(5 * time.Millisecond)
	}
	return landed, first
}

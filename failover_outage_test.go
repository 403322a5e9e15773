package pgfast

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// ---------------------------------------------------------------------------
// Scenario 4: an outage fails queries fast and recovers at once. Over the
// pool, raw pgxpool (same server, no TCP keys) is asked the same queries
// while the blackhole holds: each waits for the caller's context
// (foOutageRawCap).

// foOutageRawCap is the context of the raw pool's queries during the outage.
const foOutageRawCap = 3 * time.Second

func (s *foSuite) outage(t *testing.T, b frontEnd) {
	const scenario = "outage"
	s.guard(t, scenario, b)
	srv := s.single(t)
	db, c, states := s.open(t, b, foDSN(foSingleIP, srv.Port(), foFastTCP), 0)
	foReady(t, c, 10*time.Second)
	foExecN(t, db, 3)
	var raw feDB
	if b.pool {
		raw = s.openRaw(t, b, foDSN(foSingleIP, srv.Port()), 0, rawHooks{})
		foExecN(t, raw, 3)
	}

	lift := foBlackhole(t, foSingleIP, srv.Port())
	t0 := time.Now()
	// A query in flight notices (TCP_USER_TIMEOUT); it may fail.
	probeDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*foHangLimit)
		defer cancel()
		probeDone <- db.Exec(ctx, "SELECT 1")
	}()
	if !testkit.WaitFor(10*time.Second, func() bool { return c.State() == StateDown }) {
		t.Fatalf("state %v %v after the blackhole, want down (stats %+v)", c.State(), time.Since(t0), c.Stats())
	}
	downAfter := time.Since(t0)
	select {
	case err := <-probeDone:
		t.Logf("the query in flight returned after %v: %v", time.Since(t0).Round(time.Millisecond), err)
	case <-time.After(2 * foHangLimit):
		t.Fatalf("the query in flight during the blackhole did not return")
	}

	// One caller at a time first: the latency of a single query (for the
	// pool, one Acquire) while Down.
	const seqCalls = 20
	var seq []time.Duration
	for range seqCalls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		var one int
		err := db.QueryRowScan(ctx, "SELECT 1", nil, &one)
		seq = append(seq, time.Since(start))
		cancel()
		if !errors.Is(err, ErrNotReady) {
			t.Errorf("query while down (one at a time): %v, want ErrNotReady", err)
			break
		}
	}
	slices.Sort(seq)

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
			var one int
			err := db.QueryRowScan(ctx, "SELECT 1", nil, &one)
			results <- outcome{err, time.Since(start)}
		})
	}
	const rawCalls = 20
	rawResults := make(chan outcome, rawCalls)
	var rawWG sync.WaitGroup
	if raw != nil {
		for range rawCalls {
			rawWG.Go(func() {
				<-gate
				ctx, cancel := context.WithTimeout(context.Background(), foOutageRawCap)
				defer cancel()
				start := time.Now()
				var one int
				err := raw.QueryRowScan(ctx, "SELECT 1", nil, &one)
				rawResults <- outcome{err, time.Since(start)}
			})
		}
	}
	dialsBefore := c.Stats().Dials
	close(gate)
	if !testkit.WaitGroup(&wg, 10*time.Second) {
		t.Fatalf("%d concurrent queries while down did not all return within 10s", calls)
	}
	dialsDuring := c.Stats().Dials - dialsBefore
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
	// The connector's own readiness probes may dial meanwhile; the calls
	// must not (fail fast without dialling).
	if dialsDuring > 2 {
		t.Errorf("%d dials while %d queries failed fast, want none but the connector's probes", dialsDuring, calls)
	}
	if raw != nil {
		if !testkit.WaitGroup(&rawWG, foOutageRawCap+5*time.Second) {
			t.Fatalf("raw %s: queries bounded by a %v context did not return", b.raw, foOutageRawCap)
		}
		close(rawResults)
		var rawDur []time.Duration
		rawOK, rawCapped := 0, 0
		for r := range rawResults {
			rawDur = append(rawDur, r.d)
			switch {
			case r.err == nil:
				rawOK++
			case errors.Is(r.err, context.DeadlineExceeded) || r.d >= foOutageRawCap:
				rawCapped++
			}
		}
		slices.Sort(rawDur)
		t.Logf("MEASURE scenario=%s backend=%s calls=%d succeeded=%d ended_by_ctx=%d p50=%v max=%v ctx=%v (raw baseline: measured, not asserted)",
			scenario, b.raw, rawCalls, rawOK, rawCapped, rawDur[len(rawDur)/2].Round(time.Millisecond), rawDur[len(rawDur)-1].Round(time.Millisecond), foOutageRawCap)
	}

	lift()
	t1 := time.Now()
	readyAfter := foReady(t, c, foRecoverLimit)
	foExecN(t, db, 5)
	if readyAfter > 3*time.Second {
		t.Logf("note: Ready took %v after the fault was lifted (target ~3s, limit %v)", readyAfter, foRecoverLimit)
	}
	st := c.Stats()
	t.Logf("MEASURE scenario=%s backend=%s down_after=%v calls=%d not_ready=%d fail_fast_p50=%v fail_fast_p99=%v fail_fast_max=%v one_at_a_time_p50=%v dials_during=%d ready_after_lift=%v first_ready_event=%v evictions=%d dials=%d dial_failures=%d",
		scenario, b.name, downAfter.Round(time.Millisecond), calls, calls-wrong, durations[len(durations)/2], durations[len(durations)*99/100], durations[len(durations)-1], seq[len(seq)/2], dialsDuring,
		readyAfter.Round(time.Millisecond), foDur(states.after(StateReady, t1)), st.Evictions, st.Dials, st.DialFailures)
}

// ---------------------------------------------------------------------------
// Scenario 5: a query's context bounds it on a blackholed connection.

func (s *foSuite) queryCtx(t *testing.T, b frontEnd) {
	const scenario = "query-ctx-2s"
	s.guard(t, scenario, b)
	srv := s.single(t)
	// pgfast's TCP defaults (keepalives after 10 s, TCP_USER_TIMEOUT 25 s):
	// only the context can end the call in time.
	db, c, _ := s.open(t, b, foDSN(foSingleIP, srv.Port()), 0)
	foReady(t, c, 10*time.Second)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
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
		err := conn.Exec(ctx, "SELECT pg_sleep(30)")
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
	t.Logf("MEASURE scenario=%s backend=%s returned_after=%v limit=%v err=%q", scenario, b.name, r.d.Round(time.Millisecond), foQueryCtxLimit, testkit.Short(r.err))
}

// foTerminateSleepers ends the pg_sleep queries this suite left running.
func foTerminateSleepers(t *testing.T, srv *pgtest.Server) {
	if err := srv.Exec("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND pid <> pg_backend_pid();"); err != nil {
		t.Logf("terminating pg_sleep backends: %v", err)
	}
}

package pgfast

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netfault"
)

// faultActiveBlackhole: the network dies under a running query. Keepalives and
// TCP_USER_TIMEOUT end it; the raw drivers wait for TCP's retransmission
// limits (minutes).
func faultActiveBlackhole(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, c, _ := e.open(b, faultDSN(port, faultTCPKeys...))
	e.mustReady(c)
	// The raw drivers cannot take the TCP keys (they would send them to the
	// server, which refuses keepalives*): same DSN without them.
	raw := e.openRaw(b, faultDSN(port))
	raw.mustPing(t)

	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT pg_sleep(5)"))
	rawCh := e.async(faultExec(e.ctx, raw.db, "SELECT pg_sleep(5)"))
	time.Sleep(300 * time.Millisecond)
	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})

	took := faultMustFailAfterDrop(t, pgfastCh, dropAt)
	faultMeasure(t, "active-blackhole", b, took, faultRawOutcome(rawCh, dropAt, faultRawCapLong))
}

// faultActiveBlackholeUnacked: the network is already dead when a query is
// sent on an idle pooled connection; the query's bytes are never
// acknowledged, which TCP_USER_TIMEOUT bounds.
func faultActiveBlackholeUnacked(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, c, _ := e.open(b, faultDSN(port, faultTCPKeys...))
	e.mustReady(c)
	e.warm(db, 1)
	raw := e.openRaw(b, faultDSN(port))
	e.warm(raw.db, 1)

	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})
	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT 1"))
	rawCh := e.async(faultExec(e.ctx, raw.db, "SELECT 1"))

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
func faultIdleBlackhole(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	db, c, _ := e.open(b, faultDSN(port, faultTCPKeys...))
	e.mustReady(c)
	e.warm(db, 5)
	raw := e.openRaw(b, faultDSN(port))
	e.warm(raw.db, 5)

	dropAt := e.drop(netfault.Rule{Port: port, Direction: "both"})
	time.Sleep(time.Until(dropAt.Add(faultKeepaliveBudget + 500*time.Millisecond)))
	pgfastCh := e.async(faultExec(context.Background(), db, "SELECT 1"))
	rawCh := e.async(faultExec(e.ctx, raw.db, "SELECT 1"))

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
func faultServerRestart(t *testing.T, b frontEnd) {
	e, srv := faultSetup(t, true)
	port := srv.Port()
	dsn := faultDSN(port)
	db, c, _ := e.open(b, dsn)
	e.mustReady(c)
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
	t.Logf("pgfast: %d of %d queries failed; connector after: %+v", len(pgfastErrs), faultBatchSize, c.Stats())
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
func faultQueryBatch(db feDB) (time.Duration, []error) {
	var (
		mu   sync.Mutex
		errs []error
	)
	query := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var one int
		if err := db.QueryRowScan(ctx, "SELECT 1", nil, &one); err != nil {
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

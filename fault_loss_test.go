package pgfast

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netfault"
	"github.com/pgfast/pgfast/internal/testkit"
)

// faultLossCompare (issue 19 item 4): random packet loss each way, nothing
// dead. pgfast and the raw driver work at the same time against the same
// server, so both see the same loss: per driver 6 workers on one pool whose
// connections are recycled every 5 s, mixing an INSERT (a unique id per op),
// SELECT 1 and a 500 kB read. TCP's retransmission backoff leaves one socket
// silent for 10 s now and then; that is not a dead host. pgfast must evict
// nothing and fail no more operations than the raw driver (+2), and every
// acknowledged insert must be there, none twice.
//
// PGFAST_LOSS_PERCENT (default 20) and PGFAST_LOSS_SECONDS (default 20) set
// the loss and the length; scripts/fault-loss runs 60 s × 3 at 5, 10, 20 %.
func faultLossCompare(t *testing.T, b frontEnd) {
	percent := faultEnvInt(t, "PGFAST_LOSS_PERCENT", 20)
	length := time.Duration(faultEnvInt(t, "PGFAST_LOSS_SECONDS", 20)) * time.Second
	e, srv := faultSetup(t, true)
	port := srv.Port()
	dsn := faultDSN(port)

	db, c := faultLossOpen(t, e, b, dsn)
	e.mustReady(c)
	raw := faultLossOpenRaw(t, e, b, dsn)
	raw.mustPing(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := raw.db.Exec(ctx, "CREATE TABLE loss_ops (id text, drv text)")
	cancel()
	if err != nil {
		t.Fatalf("creating the table: %v", err)
	}
	evictionsBefore := c.Stats().Evictions

	lift, err := netfault.Drop(netfault.Rule{Port: port, Percent: percent})
	if err != nil {
		t.Fatalf("installing %d%% loss: %v", percent, err)
	}
	e.mu.Lock()
	e.rules = append(e.rules, lift)
	e.mu.Unlock()
	t.Logf("%d%% of packets dropped each way for %v", percent, length)
	stop := time.Now().Add(length)
	runs := []*faultLossRun{{name: b.name, db: db, t: t}, {name: b.raw, db: raw.db, ctx: e.ctx}}
	var wg sync.WaitGroup
	for _, r := range runs {
		for w := range faultLossWorkers {
			wg.Go(func() { r.work(w, stop) })
		}
	}
	wg.Wait()
	// Reconcile without loss.
	if err := lift(); err != nil {
		t.Fatalf("removing the loss rule: %v", err)
	}
	st := c.Stats()
	for _, r := range runs {
		r.reconcile(t, raw.db)
	}
	pg, rw := runs[0], runs[1]
	t.Logf("MEASURE scenario=loss-%d backend=%s ops=%d failed=%d slow=%d raw_ops=%d raw_failed=%d raw_slow=%d evictions=%d state_changes=%d",
		percent, b.name, pg.ops.Load(), pg.failed.Load(), pg.slow.Load(), rw.ops.Load(), rw.failed.Load(), rw.slow.Load(),
		st.Evictions-evictionsBefore, st.StateChanges)
	for _, r := range runs {
		r.logErrors(t)
	}
	if n := st.Evictions - evictionsBefore; n != 0 {
		t.Errorf("pgfast evicted the live server %d times under %d%% loss, want 0", n, percent)
	}
	if pg.failed.Load() > rw.failed.Load()+2 {
		t.Errorf("pgfast failed %d operations, raw %s %d in the same run: want at most raw + 2", pg.failed.Load(), b.raw, rw.failed.Load())
	}
}

const (
	faultLossWorkers  = 6
	faultLossLifetime = 5 * time.Second
	// faultLossOpBound bounds one operation: a raw driver's socket can wait
	// for TCP's retransmission limits (minutes); pgfast closes a silent one
	// on a live path at 3 × its dead-peer window (30 s).
	faultLossOpBound = 45 * time.Second
	faultLossBig     = 500_000
	faultLossSlow    = 10 * time.Second
	faultLossStuck   = 40 * time.Second
)

// faultLossOpen opens pgfast behind fe with the test's pool: at most the
// workers' count of connections, recycled every 5 s.
func faultLossOpen(t *testing.T, e *faultEnv, fe frontEnd, dsn string) (feDB, *Connector) {
	t.Helper()
	if fe.pool {
		dsn = withKV(dsn, "pool_max_conn_lifetime=5s")
	}
	db, c, err := fe.open(dsn, faultLossWorkers)
	if err != nil {
		t.Fatalf("opening %s: %v", fe.name, err)
	}
	if s, ok := db.(sqlDB); ok {
		s.db.SetConnMaxLifetime(faultLossLifetime)
	}
	e.mu.Lock()
	e.dbs = append(e.dbs, db)
	e.mu.Unlock()
	return db, c
}

// faultLossOpenRaw opens fe's raw baseline with the same pool, its sockets
// recorded for the cleanup.
func faultLossOpenRaw(t *testing.T, e *faultEnv, fe frontEnd, dsn string) *faultRawPool {
	t.Helper()
	if fe.pool {
		dsn = withKV(dsn, "pool_max_conn_lifetime=5s")
	}
	p := &faultRawPool{}
	db, err := fe.openRaw(dsn, faultLossWorkers, rawHooks{dialed: p.dialed})
	if err != nil {
		t.Fatalf("opening raw %s: %v", fe.raw, err)
	}
	if s, ok := db.(sqlDB); ok {
		s.db.SetConnMaxLifetime(faultLossLifetime)
	}
	p.db = db
	e.mu.Lock()
	e.raws = append(e.raws, p)
	e.mu.Unlock()
	return p
}

// faultLossRun is one driver's side of the run.
type faultLossRun struct {
	name string
	db   feDB
	ctx  context.Context // parent of each op's context (nil: Background)

	ops, failed atomic.Int64
	// slow counts operations that took longer than faultLossSlow; the
	// first one past faultLossStuck has every goroutine's stack logged.
	slow   atomic.Int64
	dumped atomic.Bool
	t      *testing.T
	mu     sync.Mutex
	acked  []string
	errs   map[string]int // error text → count
}

func (r *faultLossRun) work(w int, stop time.Time) {
	parent := r.ctx
	if parent == nil {
		parent = context.Background()
	}
	for i := 0; time.Now().Before(stop) && parent.Err() == nil; i++ {
		ctx, cancel := context.WithTimeout(parent, faultLossOpBound)
		began := time.Now()
		stuck := time.AfterFunc(faultLossStuck, func() {
			if r.t != nil && r.dumped.CompareAndSwap(false, true) {
				r.t.Logf("%s: an operation (kind %d) still running after %v; goroutines:\n%s", r.name, i%3, faultLossStuck, testkit.Stacks())
			}
		})
		var err error
		switch i % 3 {
		case 0:
			id := fmt.Sprintf("%s-%d-%d", r.name, w, i)
			if err = r.db.Exec(ctx, "INSERT INTO loss_ops (id, drv) VALUES ($1, $2)", id, r.name); err == nil {
				r.mu.Lock()
				r.acked = append(r.acked, id)
				r.mu.Unlock()
			}
		case 1:
			var one int
			err = r.db.QueryRowScan(ctx, "SELECT 1", nil, &one)
		case 2:
			var big string
			err = r.db.QueryRowScan(ctx, "SELECT repeat('x', $1::int)", []any{faultLossBig}, &big)
			if err == nil && len(big) != faultLossBig {
				err = fmt.Errorf("read %d bytes, want %d", len(big), faultLossBig)
			}
		}
		cancel()
		stuck.Stop()
		if time.Since(began) > faultLossSlow {
			r.slow.Add(1)
		}
		r.ops.Add(1)
		if err != nil {
			r.failed.Add(1)
			r.mu.Lock()
			if r.errs == nil {
				r.errs = map[string]int{}
			}
			r.errs[err.Error()]++
			r.mu.Unlock()
		}
	}
}

// reconcile checks the table: every acknowledged insert is there, no id twice.
func (r *faultLossRun) reconcile(t *testing.T, q feDB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var list string
	err := q.QueryRowScan(ctx, "SELECT coalesce(string_agg(id, ','), '') FROM loss_ops WHERE drv = $1", []any{r.name}, &list)
	if err != nil {
		t.Fatalf("reconciling %s: %v", r.name, err)
	}
	present := map[string]int{}
	for _, id := range strings.Split(list, ",") {
		if id != "" {
			present[id]++
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var dups, missing int
	for _, n := range present {
		if n > 1 {
			dups++
		}
	}
	for _, id := range r.acked {
		if present[id] == 0 {
			missing++
		}
	}
	if dups != 0 || missing != 0 {
		t.Errorf("%s: %d ids inserted twice, %d acknowledged inserts missing (of %d)", r.name, dups, missing, len(r.acked))
	}
}

// logErrors logs the most frequent errors (their text up to the first
// digit, so counts in messages do not split them).
func (r *faultLossRun) logErrors(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kinds := map[string]int{}
	for msg, n := range r.errs {
		if i := strings.IndexAny(msg, "0123456789"); i > 40 {
			msg = msg[:i] + "…"
		}
		kinds[msg] += n
	}
	type kind struct {
		msg string
		n   int
	}
	var list []kind
	for msg, n := range kinds {
		list = append(list, kind{msg, n})
	}
	slices.SortFunc(list, func(a, b kind) int { return b.n - a.n })
	for _, k := range list[:min(len(list), 5)] {
		t.Logf("%s: %d× %s", r.name, k.n, k.msg)
	}
}

// faultEnvInt reads a positive integer from the environment, or def.
func faultEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

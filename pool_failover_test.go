package pgfast

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/pgfast/pgfast/internal/netfault"
)

// The failover suite over the pgxpool front end: a replicated pair (the
// failover suite's foStartPair), a multi-host DSN with
// target_session_attrs=read-write, the primary blackholed and the standby
// promoted; pgfast.NewPool and raw pgxpool.New run the same workload in the
// same test, each call bounded by the same context (foHangLimit).

// TestPoolFailover runs TestPoolFailoverSuite in a fresh network namespace.
func TestPoolFailover(t *testing.T) {
	netfault.RunInNamespace(t, "^TestPoolFailoverSuite$", map[string][]string{foHostName: {foPrimaryIP}}, 150*time.Second)
}

// TestPoolFailoverSuite is the part of TestPoolFailover that runs in the
// namespace.
func TestPoolFailoverSuite(t *testing.T) {
	if !netfault.Inside() {
		t.Skip("run by TestPoolFailover inside a network namespace")
	}
	s := &foSuite{suite: t, ignore: goleak.IgnoreCurrent()}
	t.Cleanup(func() {
		if err := netfault.Clear(); err != nil {
			t.Errorf("netfault.Clear: %v", err)
		}
	})
	t.Run("failover-multihost", s.poolFailover)
}

func (s *foSuite) poolFailover(t *testing.T) {
	s.guard(t, "pool-failover-multihost", poolFaultCase)
	pair := foStartPair(t)
	host := foPrimaryIP + "," + foStandbyIP
	size := fmt.Sprintf("pool_max_conns=%d", foWorkers)
	fast, err := NewPool(context.Background(), foDSN(host, pair.port, foFastTCP, "target_session_attrs=read-write", size))
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(fast.Close)
	// Raw pgx would send pgfast's TCP keys to the server as parameters.
	raw, err := pgxpool.New(context.Background(), foDSN(host, pair.port, "target_session_attrs=read-write", size))
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(raw.Close)
	foReady(t, PoolConnector(fast), 15*time.Second)

	fastLoad, rawLoad := startPoolLoad(fast, foWorkers), startPoolLoad(raw, foWorkers)
	defer fastLoad.stop(t)
	defer rawLoad.stop(t)
	for name, l := range map[string]*poolLoad{"pgfast": fastLoad, "raw": rawLoad} {
		if _, ok := l.waitAllOn(foPrimaryIP, time.Time{}, time.Now().Add(15*time.Second)); !ok {
			t.Fatalf("%s: not every worker wrote on the primary before the fault: %s", name, l.summary())
		}
	}

	lift := foBlackhole(t, foPrimaryIP, pair.port)
	t0 := time.Now()
	if err := pair.standby.Promote(); err != nil {
		t.Fatalf("promoting the standby: %v", err)
	}
	fastConv, fastOK := fastLoad.waitAllOn(foStandbyIP, t0, t0.Add(foFailoverLimit))
	// Raw is measured, not asserted: given until twice pgfast's limit.
	rawConv, rawOK := rawLoad.waitAllOn(foStandbyIP, t0, t0.Add(2*foFailoverLimit))
	fastLoad.stop(t)
	rawLoad.stop(t)
	lift()

	if !fastOK {
		t.Errorf("pgfast: not every worker wrote on the new primary within %v of the blackhole: %s", foFailoverLimit, fastLoad.summary())
	}
	if longest := time.Duration(fastLoad.longest.Load()); longest > foHangLimit {
		t.Errorf("pgfast: the longest call took %v, limit %v", longest, foHangLimit)
	}
	t.Logf("MEASURE scenario=pool-failover-multihost backend=pgfast-pgxpool converged=%v longest=%v calls=%d errors=%d",
		foDur(fastConv, fastOK), time.Duration(fastLoad.longest.Load()).Round(time.Millisecond), fastLoad.calls.Load(), fastLoad.errs.Load())
	t.Logf("MEASURE scenario=pool-failover-multihost backend=pgxpool converged=%v longest=%v calls=%d errors=%d (raw: measured, not asserted)",
		foDur(rawConv, rawOK), time.Duration(rawLoad.longest.Load()).Round(time.Millisecond), rawLoad.calls.Load(), rawLoad.errs.Load())
}

// poolLoad is the failover workload on a *pgxpool.Pool: n workers each
// running foInsert in a loop, every call bounded by foHangLimit (the pool
// has no database/sql layer for testkit.Load to drive).
type poolLoad struct {
	stopCh  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	longest atomic.Int64 // ns
	calls   atomic.Int64
	errs    atomic.Int64

	mu      sync.Mutex
	firstOn []map[string]time.Time // per worker: server address → first write there
	lastErr string
}

func startPoolLoad(pool *pgxpool.Pool, n int) *poolLoad {
	l := &poolLoad{stopCh: make(chan struct{}), firstOn: make([]map[string]time.Time, n)}
	for i := range n {
		l.firstOn[i] = map[string]time.Time{}
		l.wg.Go(func() { l.work(pool, i) })
	}
	return l
}

func (l *poolLoad) work(pool *pgxpool.Pool, id int) {
	for {
		select {
		case <-l.stopCh:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), foHangLimit)
		start := time.Now()
		var addr string
		err := pool.QueryRow(ctx, foInsert, id).Scan(&addr)
		cancel()
		d := time.Since(start)
		l.calls.Add(1)
		for cur := l.longest.Load(); int64(d) > cur && !l.longest.CompareAndSwap(cur, int64(d)); cur = l.longest.Load() {
		}
		if err != nil {
			l.errs.Add(1)
			l.mu.Lock()
			l.lastErr = err.Error()
			l.mu.Unlock()
			select { // do not spin while the database is down
			case <-l.stopCh:
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		l.mu.Lock()
		if _, seen := l.firstOn[id][addr]; !seen {
			l.firstOn[id][addr] = now
		}
		l.mu.Unlock()
	}
}

// waitAllOn waits until every worker has written on addr at or after since,
// or until deadline; it returns the time from since to the last worker's
// first such write.
func (l *poolLoad) waitAllOn(addr string, since, deadline time.Time) (time.Duration, bool) {
	for {
		l.mu.Lock()
		var last time.Time
		all := true
		for _, m := range l.firstOn {
			at, ok := m[addr]
			if !ok || at.Before(since) {
				all = false
				break
			}
			if at.After(last) {
				last = at
			}
		}
		l.mu.Unlock()
		if all {
			return last.Sub(since), true
		}
		if time.Now().After(deadline) {
			return time.Since(since), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the workers; each is in at most one call, bounded by foHangLimit.
func (l *poolLoad) stop(t *testing.T) {
	l.once.Do(func() {
		close(l.stopCh)
		done := make(chan struct{})
		go func() { l.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * foHangLimit):
			t.Errorf("pool workers still busy %v after being told to stop", 2*foHangLimit)
		}
	})
}

func (l *poolLoad) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("calls=%d errors=%d last error: %s", l.calls.Load(), l.errs.Load(), l.lastErr)
}

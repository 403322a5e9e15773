package testkit

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load is n workers looping SELECT then INSERT with context.Background(),
// as an application would, recording where each write landed, how long each
// call took, and the errors that reached them.
type Load struct {
	db      Querier
	insert  string
	opts    LoadOptions
	workers []*worker
	stopCh  chan struct{}
	done    chan struct{}
	abandon chan struct{}
	once    sync.Once

	longestNs atomic.Int64
	hangs     atomic.Int64
	writes    atomic.Int64

	mu     sync.Mutex
	errs   map[string]int
	sample []string
}

// worker is one of a Load's workers.
type worker struct {
	id       int
	inflight atomic.Int64 // UnixNano start of the call in flight, 0 between calls
	flagged  atomic.Int64 // the start of a call already counted as hanging

	mu      sync.Mutex
	firstOn map[string]time.Time // server address → first write there
	lastOn  string
}

// LoadOptions tune a Load.
type LoadOptions struct {
	// HangLimit is how long a call may run before the watchdog counts it as
	// hanging.
	HangLimit time.Duration
	// NotReady tells the errors counted under the kind "not-ready" (and not
	// sampled) apart; nil counts none so.
	NotReady func(error) bool
	// CallTimeout bounds each call with a context of its own; 0 runs every
	// call with context.Background(), as an application would. A raw
	// baseline that may block for the kernel's TCP timeouts sets it.
	CallTimeout time.Duration
}

// Querier runs a query returning one row and scans it into dest: what a
// Load needs from a pool, whatever its front end (*sql.DB, pgxpool).
type Querier interface {
	QueryRowScan(ctx context.Context, query string, args []any, dest ...any) error
}

// SQLDB adapts a *sql.DB to Querier.
func SQLDB(db *sql.DB) Querier { return sqlQuerier{db} }

type sqlQuerier struct{ db *sql.DB }

func (q sqlQuerier) QueryRowScan(ctx context.Context, query string, args []any, dest ...any) error {
	return q.db.QueryRowContext(ctx, query, args...).Scan(dest...)
}

// StartLoad starts n workers on db; insert is the INSERT each runs with its
// worker number, returning the address of the server that took the write.
func StartLoad(db *sql.DB, n int, insert string, opts LoadOptions) *Load {
	return StartLoadOn(SQLDB(db), n, insert, opts)
}

// StartLoadOn is StartLoad on any front end.
func StartLoadOn(db Querier, n int, insert string, opts LoadOptions) *Load {
	l := &Load{db: db, insert: insert, opts: opts, stopCh: make(chan struct{}), done: make(chan struct{}), abandon: make(chan struct{}), errs: map[string]int{}}
	var wg sync.WaitGroup
	for i := range n {
		w := &worker{id: i, firstOn: map[string]time.Time{}}
		l.workers = append(l.workers, w)
		wg.Go(func() { l.work(w) })
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	go l.watchdog()
	return l
}

func (l *Load) work(w *worker) {
	for {
		select {
		case <-l.stopCh:
			return
		default:
		}
		var one int
		err := l.call(w, func(ctx context.Context) error { return l.db.QueryRowScan(ctx, "SELECT 1", nil, &one) })
		if err == nil {
			var addr string
			err = l.call(w, func(ctx context.Context) error { return l.db.QueryRowScan(ctx, l.insert, []any{w.id}, &addr) })
			if err == nil {
				l.writes.Add(1)
				now := time.Now()
				w.mu.Lock()
				if _, seen := w.firstOn[addr]; !seen {
					w.firstOn[addr] = now
				}
				w.lastOn = addr
				w.mu.Unlock()
			}
		}
		if err != nil {
			l.recordErr(err)
			select { // do not spin while the database is down
			case <-l.stopCh:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// call runs f, timing it for the watchdog and the longest-call record.
func (l *Load) call(w *worker, f func(ctx context.Context) error) error {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if l.opts.CallTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, l.opts.CallTimeout)
	}
	defer cancel()
	start := time.Now()
	w.inflight.Store(start.UnixNano())
	err := f(ctx)
	d := time.Since(start)
	w.inflight.Store(0)
	for {
		cur := l.longestNs.Load()
		if int64(d) <= cur || l.longestNs.CompareAndSwap(cur, int64(d)) {
			break
		}
	}
	return err
}

// watchdog counts calls in flight for longer than the hang limit.
func (l *Load) watchdog() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.abandon:
			return
		case <-tick.C:
		}
		for _, w := range l.workers {
			s := w.inflight.Load()
			if s != 0 && time.Since(time.Unix(0, s)) > l.opts.HangLimit && w.flagged.Swap(s) != s {
				l.hangs.Add(1)
				l.mu.Lock()
				l.sample = append(l.sample, fmt.Sprintf("worker %d: a call has been running for more than %v", w.id, l.opts.HangLimit))
				l.mu.Unlock()
			}
		}
	}
}

// recordErr counts err by kind and keeps a few samples.
func (l *Load) recordErr(err error) {
	kind := "other"
	switch {
	case l.opts.NotReady != nil && l.opts.NotReady(err):
		kind = "not-ready"
	case SQLState(err) != "":
		kind = SQLState(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs[kind]++
	if kind != "not-ready" && len(l.sample) < 6 {
		l.sample = append(l.sample, kind+": "+Short(err))
	}
}

// Stop ends the workers and waits for them within limit (each is in at most
// one call); workers still busy then are hanging.
func (l *Load) Stop(t testing.TB, limit time.Duration) {
	t.Helper()
	l.once.Do(func() {
		close(l.stopCh)
		select {
		case <-l.done:
		case <-time.After(limit):
			close(l.abandon)
			t.Errorf("workers still busy %v after being told to stop: a call hangs (%s)", limit, l.Summary())
		}
	})
}

// WaitAllWroteOn waits until every worker has written on addr at or after
// since, or until deadline; it returns the time from since to the last
// worker's first such write.
func (l *Load) WaitAllWroteOn(addr string, since, deadline time.Time) (time.Duration, bool) {
	for {
		var last time.Time
		all := true
		for _, w := range l.workers {
			w.mu.Lock()
			at, ok := w.firstOn[addr]
			w.mu.Unlock()
			if !ok || at.Before(since) {
				all = false
				break
			}
			if at.After(last) {
				last = at
			}
		}
		if all {
			return last.Sub(since), true
		}
		if time.Now().After(deadline) {
			return time.Since(since), false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FirstWroteOn returns how long after since the first write on addr came.
func (l *Load) FirstWroteOn(addr string, since time.Time) (time.Duration, bool) {
	var first time.Time
	for _, w := range l.workers {
		w.mu.Lock()
		at, ok := w.firstOn[addr]
		w.mu.Unlock()
		if ok && !at.Before(since) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first.Sub(since), !first.IsZero()
}

// Longest is the longest call so far.
func (l *Load) Longest() time.Duration { return time.Duration(l.longestNs.Load()) }

// Kind is how many errors of kind k (a SQLSTATE, "not-ready" or "other") the workers saw.
func (l *Load) Kind(k string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs[k]
}

// Kinds is the error count by kind.
func (l *Load) Kinds() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.errs))
	for k, v := range l.errs {
		out[k] = v
	}
	return out
}

// ErrorCount is how many errors the workers saw.
func (l *Load) ErrorCount() int {
	n := 0
	for _, v := range l.Kinds() {
		n += v
	}
	return n
}

// Samples are a few of the errors, for the log.
func (l *Load) Samples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sample)
}

// Summary says where each worker last wrote and what went wrong.
func (l *Load) Summary() string {
	var b strings.Builder
	for _, w := range l.workers {
		w.mu.Lock()
		fmt.Fprintf(&b, "w%d→%s ", w.id, w.lastOn)
		w.mu.Unlock()
	}
	fmt.Fprintf(&b, "writes=%d errors=%v samples=%q", l.writes.Load(), l.Kinds(), l.Samples())
	return b.String()
}

// Hangs is how many calls the watchdog saw run longer than the hang limit.
func (l *Load) Hangs() int64 { return l.hangs.Load() }

// Writes is how many writes succeeded.
func (l *Load) Writes() int64 { return l.writes.Load() }

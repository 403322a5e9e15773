package pgfast

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// The application workload of the failover scenarios.

// foLoad is n workers looping SELECT then INSERT with context.Background(),
// as an application would, recording where each write landed, how long each
// call took, and the errors that reached them.
type foLoad struct {
	db      *sql.DB
	insert  string
	workers []*foWorker
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

type foWorker struct {
	id       int
	inflight atomic.Int64 // UnixNano start of the call in flight, 0 between calls
	flagged  atomic.Int64 // the start of a call already counted as hanging

	mu      sync.Mutex
	firstOn map[string]time.Time // server address → first write there
	lastOn  string
}

func foStartLoad(db *sql.DB, n int, insert string) *foLoad {
	l := &foLoad{db: db, insert: insert, stopCh: make(chan struct{}), done: make(chan struct{}), abandon: make(chan struct{}), errs: map[string]int{}}
	var wg sync.WaitGroup
	for i := range n {
		w := &foWorker{id: i, firstOn: map[string]time.Time{}}
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

func (l *foLoad) work(w *foWorker) {
	for {
		select {
		case <-l.stopCh:
			return
		default:
		}
		var one int
		err := l.call(w, func() error { return l.db.QueryRow("SELECT 1").Scan(&one) })
		if err == nil {
			var addr string
			err = l.call(w, func() error { return l.db.QueryRow(l.insert, w.id).Scan(&addr) })
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
func (l *foLoad) call(w *foWorker, f func() error) error {
	start := time.Now()
	w.inflight.Store(start.UnixNano())
	err := f()
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

// watchdog counts calls in flight for longer than foHangLimit.
func (l *foLoad) watchdog() {
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
			if s != 0 && time.Since(time.Unix(0, s)) > foHangLimit && w.flagged.Swap(s) != s {
				l.hangs.Add(1)
				l.mu.Lock()
				l.sample = append(l.sample, fmt.Sprintf("worker %d: a call has been running for more than %v", w.id, foHangLimit))
				l.mu.Unlock()
			}
		}
	}
}

func (l *foLoad) recordErr(err error) {
	kind := "other"
	switch {
	case errors.Is(err, ErrNotReady):
		kind = "not-ready"
	case foSQLState(err) != "":
		kind = foSQLState(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs[kind]++
	if kind != "not-ready" && len(l.sample) < 6 {
		l.sample = append(l.sample, kind+": "+foShort(err))
	}
}

// stop ends the workers and waits for them within limit (each is in at most
// one call); workers still busy then are hanging.
func (l *foLoad) stop(t *testing.T, limit time.Duration) {
	t.Helper()
	l.once.Do(func() {
		close(l.stopCh)
		select {
		case <-l.done:
		case <-time.After(limit):
			close(l.abandon)
			t.Errorf("workers still busy %v after being told to stop: a call hangs (%s)", limit, l.summary())
		}
	})
}

// waitAllWroteOn waits until every worker has written on addr at or after
// since, or until deadline; it returns the time from since to the last
// worker's first such write.
func (l *foLoad) waitAllWroteOn(addr string, since, deadline time.Time) (time.Duration, bool) {
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

// firstWroteOn returns how long after since the first write on addr came.
func (l *foLoad) firstWroteOn(addr string, since time.Time) (time.Duration, bool) {
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

func (l *foLoad) longest() time.Duration { return time.Duration(l.longestNs.Load()) }

func (l *foLoad) kind(k string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs[k]
}

func (l *foLoad) kinds() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.errs))
	for k, v := range l.errs {
		out[k] = v
	}
	return out
}

func (l *foLoad) errorCount() int {
	n := 0
	for _, v := range l.kinds() {
		n += v
	}
	return n
}

func (l *foLoad) samples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sample)
}

// summary says where each worker last wrote and what went wrong.
func (l *foLoad) summary() string {
	var b strings.Builder
	for _, w := range l.workers {
		w.mu.Lock()
		fmt.Fprintf(&b, "w%d→%s ", w.id, w.lastOn)
		w.mu.Unlock()
	}
	fmt.Fprintf(&b, "writes=%d errors=%v samples=%q", l.writes.Load(), l.kinds(), l.samples())
	return b.String()
}

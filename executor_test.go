package pgfast

import (
	"context"
	"database/sql"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// pgfastGoroutines returns the stacks of the goroutines running code of the
// root package that no test started (the connector's own: its loop's drain,
// attempts, timers' posts).
func pgfastGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "\ngithub.com/pgfast/pgfast.") || strings.Contains(g, "testing.tRunner") {
			continue
		}
		if i := strings.LastIndex(g, "created by "); i >= 0 && strings.Contains(g[i:], "_test.go:") {
			continue
		}
		out = append(out, g)
	}
	return out
}

// TestIdleConnectorHoldsNoGoroutine: a Ready connector with nothing to do
// runs no goroutine of its own (issue 19 item 5): its loop is started by
// the reports it gets and ends when it has applied them. Before, each
// connector had its goroutine (and a DNS ticker) until Close.
func TestIdleConnectorHoldsNoGoroutine(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		c, err := NewConnector(srv.DSN(pgtest.TrustUser), WithBackend(b.backend))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.PingContext(ctx); err != nil { // takes the warm connection
			t.Fatal(err)
		}
		var left []string
		deadline := time.Now().Add(3 * time.Second)
		for {
			if left = pgfastGoroutines(); len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Fatalf("Ready and idle, %d goroutines of pgfast's:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		// It still acts when told something: an eviction makes it Down,
		// then it connects again on its own.
		c.post(event{kind: evEvicted, addr: netip.MustParseAddrPort("127.0.0.1:1"), err: netDown, down: true})
		waitFor(t, c, StateDown, 5*time.Second)
		waitFor(t, c, StateReady, 10*time.Second)
	})
}

// TestPostRacesDrainExit: reports posted from many goroutines while drains
// start and end are all applied, by one drain at a time (the state hook is
// never called twice at once), and none is left waiting for a drain that
// already decided to exit. Run it with -race.
func TestPostRacesDrainExit(t *testing.T) {
	fb := &fakeBackend{}
	h := &hookRecorder{}
	c := newFakeConnector(t, fb, options{stateHook: h.hook})
	defer c.Close()
	waitFor(t, c, StateReady, 5*time.Second)
	stop := make(chan struct{})
	var noise sync.WaitGroup
	for range 4 {
		noise.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.post(event{kind: evWake})
				runtime.Gosched()
			}
		})
	}
	addr := netip.MustParseAddrPort("127.0.0.1:1")
	downs := func() int {
		n := 0
		for _, st := range h.states() {
			if st == StateDown {
				n++
			}
		}
		return n
	}
	for i := range 300 {
		// Down is seen through the hook: the loop's next attempt (the fake
		// backend succeeds at once) may end it before a poll would.
		want := downs() + 1
		c.post(event{kind: evEvicted, addr: addr, err: netDown, down: true})
		deadline := time.Now().Add(2 * time.Second)
		for downs() < want && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		if downs() < want {
			close(stop)
			noise.Wait()
			t.Fatalf("round %d: an eviction posted was not applied within 2 s (state %v)", i, c.State())
		}
		c.post(event{kind: evVerified, fresh: true})
		if !waitConnState(c, StateReady, 2*time.Second) {
			close(stop)
			noise.Wait()
			t.Fatalf("round %d: a verification posted was not applied within 2 s (state %v)", i, c.State())
		}
	}
	close(stop)
	noise.Wait()
	if h.overlap.Load() {
		t.Error("the state hook was called twice at once: two drains ran together")
	}
}

func waitConnState(c *Connector, st State, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for c.State() != st {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Microsecond)
	}
	return true
}

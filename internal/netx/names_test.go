package netx

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// countingResolver answers every lookup with its current addresses and
// counts the lookups; while gate is set, lookups wait for it to close.
type countingResolver struct {
	mu      sync.Mutex
	addrs   []netip.Addr
	gate    chan struct{}
	lookups atomic.Int64
}

func (r *countingResolver) set(addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs = r.addrs[:0]
	for _, a := range addrs {
		r.addrs = append(r.addrs, netip.MustParseAddr(a))
	}
}

func (r *countingResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	r.mu.Lock()
	gate, out := r.gate, append([]netip.Addr(nil), r.addrs...)
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// TestNamesOneLookupPerInterval: 1,000 subscribers of one name cost one
// lookup per interval (not one each); each hears the first answer once, and
// every one hears a move; once all stop, no timer and no lookup is left.
// Before names.go each connector looked its names up on its own ticker.
func TestNamesOneLookupPerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNameRegistry()
		r := &countingResolver{}
		r.set("10.0.0.1", "10.0.0.2")
		const subs = 1000
		var told atomic.Int64
		var moved atomic.Int64
		watches := make([]*NameWatch, subs)
		for i := range watches {
			watches[i] = g.watch(r, "db.example", 5*time.Second, func(cur map[netip.Addr]bool) {
				told.Add(1)
				if cur[netip.MustParseAddr("10.0.0.3")] {
					moved.Add(1)
				}
			})
		}
		time.Sleep(60*time.Second + time.Second)
		synctest.Wait()
		if n := r.lookups.Load(); n < 11 || n > 12 {
			t.Errorf("%d lookups in 61 s for %d subscribers every 5 s, want 12", n, subs)
		}
		if n := told.Load(); n != subs {
			t.Errorf("%d notifications for an unchanged name, want %d (each subscriber's first answer)", n, subs)
		}
		r.set("10.0.0.3")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := moved.Load(); n != subs {
			t.Errorf("%d subscribers told of the move, want %d", n, subs)
		}
		for _, w := range watches {
			w.Stop()
			w.Stop() // idempotent
		}
		g.mu.Lock()
		left, armed := len(g.names)+len(g.due), !g.armed.IsZero()
		g.mu.Unlock()
		if left != 0 || armed {
			t.Errorf("after every Stop: %d names/due entries, timer armed %v; want none", left, armed)
		}
		before := r.lookups.Load()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := r.lookups.Load() - before; n != 0 {
			t.Errorf("%d lookups after every subscriber stopped", n)
		}
	})
}

// TestNamesShortestInterval: a name is rechecked at its subscribers' shortest
// interval, and at the next shortest once that subscriber leaves.
func TestNamesShortestInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNameRegistry()
		r := &countingResolver{}
		r.set("10.0.0.1")
		slow := g.watch(r, "db", 10*time.Second, func(map[netip.Addr]bool) {})
		fast := g.watch(r, "db", time.Second, func(map[netip.Addr]bool) {})
		time.Sleep(10*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if n := r.lookups.Load(); n < 9 || n > 11 {
			t.Errorf("%d lookups in 10.5 s with a 1 s subscriber, want ~10", n)
		}
		fast.Stop()
		before := r.lookups.Load()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if n := r.lookups.Load() - before; n < 2 || n > 4 {
			t.Errorf("%d lookups in 30 s once only the 10 s subscriber is left, want ~3", n)
		}
		slow.Stop()
	})
}

// TestNamesPerResolver: the same host through two resolvers is two names,
// and a resolver that is not a pointer is never shared.
func TestNamesPerResolver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNameRegistry()
		r1, r2 := &countingResolver{}, &countingResolver{}
		r1.set("10.0.0.1")
		r2.set("10.0.0.1")
		var calls atomic.Int64
		fn := funcResolver(func(context.Context, string, string) ([]netip.Addr, error) {
			calls.Add(1)
			return []netip.Addr{netip.MustParseAddr("10.0.0.1")}, nil
		})
		ws := []*NameWatch{
			g.watch(r1, "db", time.Second, func(map[netip.Addr]bool) {}),
			g.watch(r2, "db", time.Second, func(map[netip.Addr]bool) {}),
			g.watch(fn, "db", time.Second, func(map[netip.Addr]bool) {}),
			g.watch(fn, "db", time.Second, func(map[netip.Addr]bool) {}),
		}
		time.Sleep(3*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if a, b, c := r1.lookups.Load(), r2.lookups.Load(), calls.Load(); a != 3 || b != 3 || c != 6 {
			t.Errorf("lookups r1 %d, r2 %d, func resolver %d (two watches); want 3, 3, 6", a, b, c)
		}
		for _, w := range ws {
			w.Stop()
		}
	})
}

type funcResolver func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f funcResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// TestNamesSingleFlight: identical lookups in flight at once are one lookup;
// a joiner whose own context ends returns at once; a lookup begun after it
// ended is a new one (no cache).
func TestNamesSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNameRegistry()
		r := &countingResolver{gate: make(chan struct{})}
		r.set("10.0.0.1")
		var wg sync.WaitGroup
		var ok atomic.Int64
		for range 100 {
			wg.Go(func() {
				ips, err := g.lookup(context.Background(), r, r, "ip", "db")
				if err == nil && len(ips) == 1 {
					ok.Add(1)
				}
			})
		}
		synctest.Wait() // the leader waits in the resolver, the rest joined it
		ctx, cancel := context.WithCancel(context.Background())
		impatient := make(chan error, 1)
		go func() { _, err := g.lookup(ctx, r, r, "ip", "db"); impatient <- err }()
		synctest.Wait()
		cancel()
		if err := <-impatient; err == nil {
			t.Error("a joiner whose context ended got an answer, want its context's error")
		}
		close(r.gate)
		wg.Wait()
		if n := r.lookups.Load(); n != 1 {
			t.Errorf("%d lookups for 101 identical ones in flight, want 1", n)
		}
		if n := ok.Load(); n != 100 {
			t.Errorf("%d of 100 joiners got the answer", n)
		}
		if _, err := g.lookup(context.Background(), r, r, "ip", "db"); err != nil || r.lookups.Load() != 2 {
			t.Errorf("a later lookup: %v, %d lookups; want a new one (no cache)", err, r.lookups.Load())
		}
	})
}

// TestNamesLeaderCancelled: a joiner is not failed by its leader's context.
func TestNamesLeaderCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNameRegistry()
		r := &countingResolver{gate: make(chan struct{})}
		r.set("10.0.0.1")
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _, _ = g.lookup(ctx, r, r, "ip", "db") }()
		synctest.Wait()
		got := make(chan error, 1)
		go func() { _, err := g.lookup(context.Background(), r, r, "ip", "db"); got <- err }()
		synctest.Wait()
		cancel()
		synctest.Wait()
		close(r.gate)
		if err := <-got; err != nil {
			t.Errorf("joiner failed with its leader's cancellation: %v", err)
		}
	})
}

// TestNamesMovedBetweenRechecks: a name that moved and came back between two
// rechecks (a dial saw the other answer) is still told to every subscriber,
// so sockets dialled to the passing address are let go.
func TestNamesMovedBetweenRechecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNameRegistry()
		r := &countingResolver{}
		r.set("10.0.0.1")
		var told atomic.Int64
		w := g.watch(r, "db", 5*time.Second, func(map[netip.Addr]bool) { told.Add(1) })
		defer w.Stop()
		time.Sleep(6 * time.Second)
		synctest.Wait()
		g.observe(r, "db", []netip.Addr{netip.MustParseAddr("10.0.0.2")})
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := told.Load(); n != 2 {
			t.Errorf("told %d times, want 2 (the first answer, then after a dial saw another)", n)
		}
	})
}

// TestWatchNameInBubbleIsPrivate: a subscriber inside a synctest bubble gets
// a registry of its own, so no process-wide timer ever fires into a bubble.
func TestWatchNameInBubbleIsPrivate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &countingResolver{}
		r.set("10.0.0.1")
		w := WatchName(r, "db", time.Second, func(map[netip.Addr]bool) {})
		defer w.Stop()
		if w.reg == names {
			t.Fatal("a watch made inside a bubble uses the process-wide registry")
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if r.lookups.Load() != 1 {
			t.Errorf("%d lookups, want 1", r.lookups.Load())
		}
	})
	if InBubble() {
		t.Fatal("inBubble outside a bubble")
	}
}

// TestNamesStopDuringLookup: subscribers leaving (and joining) while a
// recheck's lookup runs neither race with it nor get a name rescheduled once
// the last one left.
func TestNamesStopDuringLookup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNameRegistry()
		r := &countingResolver{gate: make(chan struct{})}
		r.set("10.0.0.1")
		a := g.watch(r, "db", time.Second, func(map[netip.Addr]bool) {})
		b := g.watch(r, "db", 2*time.Second, func(map[netip.Addr]bool) {})
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait() // the lookup waits at the gate
		a.Stop()
		b.Stop()
		close(r.gate)
		synctest.Wait()
		g.mu.Lock()
		left, armed := len(g.names)+len(g.due), !g.armed.IsZero()
		g.mu.Unlock()
		if left != 0 || armed {
			t.Errorf("after the last Stop during a lookup: %d names/due entries, timer armed %v", left, armed)
		}
	})
}

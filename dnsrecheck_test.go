package pgfast

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// switchResolver answers every name with its current address and counts the
// lookups.
type switchResolver struct {
	mu      sync.Mutex
	addr    netip.Addr
	lookups atomic.Int64
}

func (r *switchResolver) set(a string) {
	r.mu.Lock()
	r.addr = netip.MustParseAddr(a)
	r.mu.Unlock()
}

func (r *switchResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	return []netip.Addr{r.addr}, nil
}

// TestDNSRecheckPerName: 1,000 connectors on one name cost one lookup per
// pgfast_dns_recheck, not one each, also while they are Down (a Down tenant
// must learn where its name points); once closed they cost none and leave no
// goroutine. Before names.go each connector had its own ticker and looked up
// only while Ready: 0 lookups here while Down, ~1,000 per second once Ready.
func TestDNSRecheckPerName(t *testing.T) {
	const tenants = 1000
	r := &switchResolver{}
	r.set("127.0.0.1")
	fb := &fakeBackend{}
	fb.set(func(context.Context) error { return netDown })
	dsn := "host=db.pgfast.test port=1 user=u dbname=d sslmode=disable connect_timeout=2 pgfast_dns_recheck=1"
	g0 := runtime.NumGoroutine()
	cs := make([]*Connector, 0, tenants)
	for range tenants {
		c, err := newConnector(dsn, options{resolver: r, testBackend: func(core) driver.Connector { return fb }})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	closed := false
	closeAll := func() {
		if !closed {
			for _, c := range cs {
				c.Close()
			}
			closed = true
		}
	}
	defer closeAll()
	for _, c := range cs {
		waitFor(t, c, StateDown, 10*time.Second)
	}
	before := r.lookups.Load()
	time.Sleep(3500 * time.Millisecond)
	down := r.lookups.Load() - before
	if down < 2 || down > 5 {
		t.Errorf("%d lookups in 3.5 s for %d Down connectors rechecking every 1 s, want ~3", down, tenants)
	}
	fb.set(nil)
	for _, c := range cs {
		c.post(event{kind: evAttemptNow})
	}
	for _, c := range cs {
		waitFor(t, c, StateReady, 10*time.Second)
	}
	before = r.lookups.Load()
	time.Sleep(3500 * time.Millisecond)
	ready := r.lookups.Load() - before
	if ready < 2 || ready > 5 {
		t.Errorf("%d lookups in 3.5 s for %d Ready connectors rechecking every 1 s, want ~3", ready, tenants)
	}
	closeAll()
	before = r.lookups.Load()
	time.Sleep(2500 * time.Millisecond)
	if n := r.lookups.Load() - before; n != 0 {
		t.Errorf("%d lookups after every connector closed, want 0", n)
	}
	if g := settleTo(g0, 5*time.Second); g > g0 {
		t.Errorf("%d goroutines after closing, %d before", g, g0)
	}
}

// settleTo waits (bounded) until the goroutine count is at most want and
// returns the count.
func settleTo(want int, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDNSRecheckEvictsMovedAddress: once the connector's name no longer lists
// the address of its warm connection, the recheck evicts it softly (the
// connection is not handed out) and the connector stays Ready.
func TestDNSRecheckEvictsMovedAddress(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		r := &switchResolver{}
		r.set("127.0.0.1")
		dsn := fmt.Sprintf("host=db.pgfast.test port=%d user=%s dbname=%s sslmode=disable pgfast_dns_recheck=1",
			srv.Port(), pgtest.TrustUser, pgtest.Database)
		c, err := NewConnector(dsn, WithBackend(b.backend), WithResolver(r))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := c.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		r.set("127.0.0.9") // the name moved
		deadline := time.Now().Add(5 * time.Second)
		for c.Stats().Evictions == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no eviction 5 s after the name moved (recheck every 1 s): %+v", c.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if st := c.State(); st != StateReady {
			t.Errorf("state %v after the name moved, want ready (the old address was never down)", st)
		}
	})
}

package pgfast

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestPoolRegistryNoWatcherGoroutine: a NewPool pool has no goroutine of
// pgfast's watching it for Close (issue 19 item 5, fleet.md C4); it failed
// before, with one registerPool watcher per pool.
func TestPoolRegistryNoWatcherGoroutine(t *testing.T) {
	pools := make([]*pgxpool.Pool, 0, 20)
	for range 20 {
		p, err := NewPool(context.Background(), "host=127.0.0.1 port=1 connect_timeout=2")
		if err != nil {
			t.Fatal(err)
		}
		pools = append(pools, p)
	}
	defer func() {
		for _, p := range pools {
			p.Close()
		}
	}()
	buf := make([]byte, 1<<22)
	stacks := buf[:runtime.Stack(buf, true)]
	if n := bytes.Count(stacks, []byte("pgfast.registerPool")); n > 0 {
		t.Errorf("%d goroutines in registerPool for 20 pools, want none", n)
	}
}

// TestPoolClosedStopsConnector: once its pool is closed, the connector is
// closed at the next look through the pool (PoolConnector), even with no
// connection left for pgxpool to close.
func TestPoolClosedStopsConnector(t *testing.T) {
	p, err := NewPool(context.Background(), "host=127.0.0.1 port=1 connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	c := PoolConnector(p)
	if c == nil {
		t.Fatal("no connector for a new pool")
	}
	p.Close()
	if PoolConnector(p) != nil {
		t.Error("PoolConnector found the connector of a closed pool")
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the connector still runs 10 s after its pool was closed and looked up")
	}
	if st := c.State(); st != StateClosed {
		t.Errorf("state %v, want closed", st)
	}
	poolRegistry.mu.Lock()
	_, listed := poolRegistry.m[c.pool.Load().key]
	poolRegistry.mu.Unlock()
	if listed {
		t.Error("the closed pool is still registered")
	}
}

// TestPoolConnectorClosedDirectly: a connector closed by itself leaves the
// registry at once.
func TestPoolConnectorClosedDirectly(t *testing.T) {
	p, err := NewPool(context.Background(), "host=127.0.0.1 port=1 connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := PoolConnector(p)
	c.Close()
	poolRegistry.mu.Lock()
	_, listed := poolRegistry.m[c.pool.Load().key]
	poolRegistry.mu.Unlock()
	if listed || PoolConnector(p) != nil {
		t.Errorf("a closed connector is still registered (%v) or found (%v)", listed, PoolConnector(p) != nil)
	}
}

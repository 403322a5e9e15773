package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestShareOffIsolated: a host-level verdict one tenant reaches (here the
// dead-peer watcher's, forced on one socket) reaches every tenant sharing
// the process's view (Down at once, its sockets shut down), but not a
// tenant with pgfast_share=0, which keeps serving. The pulse then finds the
// server answering and the sharing tenants serve again. Before the view,
// tenant b never heard of a's verdict.
func TestShareOffIsolated(t *testing.T) {
	srv := newServer(t, pgtest.Options{}) // its own port: no other test's tenants share the verdict
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", srv.Port(), pgtest.TrustUser, pgtest.Database)
	type tenant struct {
		c    *Connector
		db   *sql.DB
		down atomic.Int32
	}
	open := func(dsn string) *tenant {
		tn := &tenant{}
		c, err := NewConnector(dsn, WithStateHook(func(st State, _ error) {
			if st == StateDown {
				tn.down.Add(1)
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		tn.c, tn.db = c, sql.OpenDB(c)
		t.Cleanup(func() { tn.db.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tn.db.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		return tn
	}
	a, b, c := open(dsn), open(dsn), open(dsn+" pgfast_share=0")

	conn, err := a.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var nc net.Conn
	if err := conn.Raw(func(dc any) error { nc = socketOf(dc.(driver.Conn)); return nil }); err != nil || !netx.EvictDead(nc) {
		t.Fatalf("could not evict a's socket: %v", err)
	}
	conn.Close()

	deadline := time.Now().Add(time.Second)
	for b.down.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if b.down.Load() == 0 {
		t.Error("a tenant sharing the view did not go Down on another's verdict")
	}
	if n := b.c.Stats().Evictions; n != 1 {
		t.Errorf("sharing tenant: %d evictions, want 1", n)
	}
	if c.down.Load() != 0 || c.c.Stats().Evictions != 0 {
		t.Errorf("the pgfast_share=0 tenant was affected: %d Down, %d evictions", c.down.Load(), c.c.Stats().Evictions)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.db.PingContext(ctx); err != nil {
		t.Errorf("the pgfast_share=0 tenant: %v", err)
	}
	// The pulse gets the server's answer: the sharing tenants serve again.
	for _, tn := range []*tenant{a, b} {
		if err := tn.c.Ready(ctx); err != nil {
			t.Errorf("a sharing tenant not Ready again after the pulse: %v", err)
		}
	}
}

package pgfast

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestPoolTargetSessionAttrs: a DSN listing a standby first and the primary
// second, with target_session_attrs=read-write, gets the primary on every
// connection of the pool; with only the standby it is Down, and Acquire
// fails fast.
func TestPoolTargetSessionAttrs(t *testing.T) {
	primary := newServer(t, pgtest.Options{})
	if err := primary.Start(); err != nil {
		t.Fatal(err)
	}
	standby, err := primary.StartStandby(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(standby.Cleanup)
	dsn := fmt.Sprintf("host=%s,%s port=%d,%d user=%s dbname=%s sslmode=disable target_session_attrs=read-write pool_max_conns=3",
		standby.Host(), primary.Host(), standby.Port(), primary.Port(), pgtest.TrustUser, pgtest.Database)
	p := newPoolT(t, dsn)
	poolReadyT(t, p, 15*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := range 3 {
		var recovery bool
		if err := p.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&recovery); err != nil {
			t.Fatal(err)
		}
		if recovery {
			t.Fatalf("query %d ran on the standby with target_session_attrs=read-write", i)
		}
	}

	only := newPoolT(t, withKV(standby.DSN(pgtest.TrustUser), "target_session_attrs=read-write"))
	waitPoolState(t, PoolConnector(only), StateDown, 10*time.Second)
	t0 := time.Now()
	if _, err := only.Exec(ctx, "select 1"); err == nil {
		t.Fatal("a query succeeded with only a standby and target_session_attrs=read-write")
	} else if d := time.Since(t0); d > time.Second {
		t.Errorf("Exec took %v while Down: %v", d, err)
	}
}

// TestPoolLoadBalanceHosts: with load_balance_hosts=random the pool's
// connections spread over the hosts (two servers; the order is drawn per
// connection).
func TestPoolLoadBalanceHosts(t *testing.T) {
	a := server(t)
	b := newServer(t, pgtest.Options{})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("host=%s,%s port=%d,%d user=%s dbname=%s sslmode=disable load_balance_hosts=random pool_max_conns=16",
		a.Host(), b.Host(), a.Port(), b.Port(), pgtest.TrustUser, pgtest.Database)
	p := newPoolT(t, dsn)
	poolReadyT(t, p, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ports := map[int]int{}
	for range 16 {
		c, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release() // held: 16 distinct connections
		ports[c.Conn().PgConn().Conn().RemoteAddr().(*net.TCPAddr).Port]++
	}
	if len(ports) != 2 {
		t.Errorf("16 connections with load_balance_hosts=random went to %v, want both servers", ports)
	}
}

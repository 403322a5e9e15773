package pgfast

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestPoolEagerConnectsAreTheAttempt: with pool_min_conns or
// pool_min_idle_conns, NewPool makes exactly the connections raw pgxpool
// makes at construction (BeforeConnect, AfterConnect, NewConnsCount): the
// connector's first attempt takes one of pgxpool's eager
// connections instead of dialling one more. Before, it made MinConns + 1
// (pgxpool's TestPoolBackgroundChecksMinConns, excluded then), and with
// pool_min_conns = pool_max_conns the eager connects waited for the attempt
// while the attempt waited for a free connection, both until
// connect_timeout.
func TestPoolEagerConnectsAreTheAttempt(t *testing.T) {
	srv := server(t)
	dsn := withKV(srv.DSN(pgtest.TrustUser), "connect_timeout=15")
	type counts struct{ before, after, newConns int64 }
	for _, shape := range []struct{ min, minIdle, max int }{
		{2, 0, 4}, {2, 0, 2}, {1, 0, 1}, {0, 1, 4}, {3, 0, 3}, {0, 2, 2},
	} {
		name := fmt.Sprintf("min%d-idle%d-max%d", shape.min, shape.minIdle, shape.max)
		t.Run(name, func(t *testing.T) {
			got := map[string]counts{}
			for _, fe := range []string{"pgxpool", "NewPool"} {
				pc, err := pgxpool.ParseConfig(withKV(dsn,
					"pool_min_conns="+itoa(int64(shape.min)),
					"pool_min_idle_conns="+itoa(int64(shape.minIdle)),
					"pool_max_conns="+itoa(int64(shape.max))))
				if err != nil {
					t.Fatal(err)
				}
				var before, after atomic.Int64
				pc.BeforeConnect = func(context.Context, *pgx.ConnConfig) error { before.Add(1); return nil }
				pc.AfterConnect = func(context.Context, *pgx.Conn) error { after.Add(1); return nil }
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				start := time.Now()
				var p *pgxpool.Pool
				if fe == "NewPool" {
					p, err = NewPoolWithConfig(ctx, pc)
					if err == nil {
						err = PoolConnector(p).Ready(ctx)
					}
				} else {
					p, err = pgxpool.NewWithConfig(ctx, pc)
				}
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", fe, err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("%s: ready after %v (connect_timeout 15 s): the eager connects and the attempt waited for each other", fe, d)
				}
				want := int32(max(shape.min, shape.minIdle))
				deadline := time.Now().Add(10 * time.Second)
				for p.Stat().IdleConns() < want && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(300 * time.Millisecond) // anything more would have started by now
				got[fe] = counts{before.Load(), after.Load(), p.Stat().NewConnsCount()}
				if err := p.Ping(context.Background()); err != nil {
					t.Errorf("%s: %v", fe, err)
				}
				p.Close()
			}
			n := int64(max(shape.min, shape.minIdle))
			if fast, raw := got["NewPool"], got["pgxpool"]; fast != raw || fast != (counts{n, n, n}) {
				t.Errorf("BeforeConnect, AfterConnect, NewConnsCount: NewPool %+v, raw pgxpool %+v, want %d each", fast, raw, n)
			}
		})
	}
}

// TestPoolEagerRecoversAfterRestart: the eager login stands for the first
// attempt only. Before, every later attempt returned at once as if an eager
// connect had logged in for it, so a pool with pool_min_conns stayed Down
// for good after its server restarted (found by an outside review).
func TestPoolEagerRecoversAfterRestart(t *testing.T) {
	srv := newServer(t, pgtest.Options{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for _, min := range []string{"0", "1", "2"} {
		t.Run("min"+min, func(t *testing.T) {
			p, err := NewPool(context.Background(), withKV(srv.DSN(pgtest.TrustUser), "pool_min_conns="+min, "connect_timeout=5"))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			c := PoolConnector(p)
			waitPoolState(t, c, StateReady, 15*time.Second)
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			// An application pinging while the server is away, and after.
			pingUntil := func(ok bool, limit time.Duration) {
				t.Helper()
				deadline := time.Now().Add(limit)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := p.Ping(ctx)
					cancel()
					if (err == nil) == ok && (ok || c.State() == StateDown) {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("after %v: ping %v, state %v", limit, err, c.State())
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			pingUntil(false, 20*time.Second)
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			pingUntil(true, 15*time.Second)
			waitPoolState(t, c, StateReady, 5*time.Second)
		})
	}
}

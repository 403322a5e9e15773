package pgfast

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// poolTracer implements every tracer interface pgxpool looks for.
type poolTracer struct {
	countingTracer
	acquires, releases atomic.Int64
}

func (p *poolTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	p.acquires.Add(1)
	return ctx
}
func (p *poolTracer) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {}
func (p *poolTracer) TraceRelease(*pgxpool.Pool, pgxpool.TraceReleaseData)                        { p.releases.Add(1) }

// TestPoolWithConfigKeepsHooks: the application's hooks and tracer still
// run, after pgfast's, on a pool NewPoolWithConfig equipped.
func TestPoolWithConfigKeepsHooks(t *testing.T) {
	srv := server(t)
	cfg, err := pgxpool.ParseConfig(withKV(srv.DSN(pgtest.TrustUser), "pool_max_conns=2", "keepalives_idle=7"))
	if err != nil {
		t.Fatal(err)
	}
	var before, after, prepare, closed atomic.Int64
	cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
		if cc.DialFunc == nil {
			return errors.New("no DialFunc")
		}
		before.Add(1)
		return nil
	}
	cfg.AfterConnect = func(context.Context, *pgx.Conn) error { after.Add(1); return nil }
	cfg.PrepareConn = func(context.Context, *pgx.Conn) (bool, error) { prepare.Add(1); return true, nil }
	cfg.BeforeClose = func(*pgx.Conn) { closed.Add(1) }
	tr := &poolTracer{}
	cfg.ConnConfig.Tracer = tr
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	poolReadyT(t, p, 10*time.Second)
	for range 3 {
		if _, err := p.Exec(context.Background(), "select 1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := p.Config().ConnConfig.RuntimeParams["keepalives_idle"]; ok {
		t.Error("keepalives_idle left in RuntimeParams: it would be sent to the server")
	}
	p.Close()
	for name, n := range map[string]int64{"BeforeConnect": before.Load(), "AfterConnect": after.Load(),
		"PrepareConn": prepare.Load(), "BeforeClose": closed.Load(), "TraceConnectStart": tr.connects.Load(),
		"TraceQueryStart": tr.queries.Load(), "TraceAcquireStart": tr.acquires.Load(), "TraceRelease": tr.releases.Load()} {
		if n == 0 {
			t.Errorf("the application's %s never ran", name)
		}
	}
}

// TestPoolBeforeAcquireKept: the deprecated BeforeAcquire still decides.
func TestPoolBeforeAcquireKept(t *testing.T) {
	srv := server(t)
	cfg, err := pgxpool.ParseConfig(srv.DSN(pgtest.TrustUser))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	//lint:ignore SA1019 the deprecated hook must keep working
	cfg.BeforeAcquire = func(context.Context, *pgx.Conn) bool { calls.Add(1); return true }
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Exec(context.Background(), "select 1"); err != nil {
		t.Fatal(err)
	}
	if calls.Load() == 0 {
		t.Error("BeforeAcquire never ran")
	}
}

// TestPoolPermanentErrorFailsAtOnce: a wrong password is pgconn's own error
// on the first Acquire, and every later one fails at once (no dial) with a
// *NotReadyError through which the *pgconn.PgError is still reachable.
func TestPoolPermanentErrorFailsAtOnce(t *testing.T) {
	srv := server(t)
	dsn := strings.Replace(srv.DSN(pgtest.ScramUser), pgtest.ScramPassword, "wrong-pw", 1)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	tr := &countingTracer{}
	cfg.ConnConfig.Tracer = tr
	p, err := NewPoolWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pgErr *pgconn.PgError
	if err := PoolConnector(p).Ready(ctx); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("Ready with a wrong password: %v, want the server's 28P01", err)
	}
	dials := tr.connects.Load()
	for range 3 {
		t0 := time.Now()
		_, err := p.Exec(ctx, "select 1")
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("Exec: %v, want 28P01 reachable", err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("Exec took %v after a permanent error", d)
		}
	}
	if n := tr.connects.Load() - dials; n > 0 {
		t.Errorf("the pool dialled %d times after the permanent error", n)
	}
	if strings.Contains(PoolConnector(p).Stats().LastError.Error(), "wrong-pw") {
		t.Error("the password shows in the last error")
	}
}

package pgfast

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// hookCounts counts a pool's acquire and release hooks and tracers.
type hookCounts struct {
	prepare, afterRelease, acquireStart, acquireEnd, release atomic.Int64
}

func (h *hookCounts) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (h *hookCounts) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (h *hookCounts) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	h.acquireStart.Add(1)
	return ctx
}
func (h *hookCounts) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {
	h.acquireEnd.Add(1)
}
func (h *hookCounts) TraceRelease(*pgxpool.Pool, pgxpool.TraceReleaseData) { h.release.Add(1) }

func (h *hookCounts) String() string {
	return "prepare=" + itoa(h.prepare.Load()) + " afterRelease=" + itoa(h.afterRelease.Load()) +
		" acquireStart=" + itoa(h.acquireStart.Load()) + " acquireEnd=" + itoa(h.acquireEnd.Load()) +
		" release=" + itoa(h.release.Load())
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestPoolAttemptHiddenFromAcquireHooks: the connector's attempt (the
// pool's first connection: Acquire, Ping, Release) is not an acquire of the
// application's. Its PrepareConn (or BeforeAcquire), AfterRelease and
// acquire and release tracers are called exactly as on a raw pgxpool doing
// the same work (pgxpool's own TestPoolPrepareConn, TestPoolAfterRelease and
// TestTraceAcquire count them; they failed through pgfast).
func TestPoolAttemptHiddenFromAcquireHooks(t *testing.T) {
	srv := server(t)
	dsn := srv.DSN(pgtest.TrustUser)
	counts := map[string]string{}
	for _, name := range []string{"pgxpool", "NewPool"} {
		for _, variant := range []string{"all hooks", "tracer only", "after release only"} {
			h := &hookCounts{}
			pc, err := pgxpool.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			if variant != "after release only" {
				pc.ConnConfig.Tracer = h
			}
			if variant == "all hooks" {
				pc.PrepareConn = func(context.Context, *pgx.Conn) (bool, error) { h.prepare.Add(1); return true, nil }
			}
			if variant != "tracer only" {
				pc.AfterRelease = func(*pgx.Conn) bool { h.afterRelease.Add(1); return true }
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var p *pgxpool.Pool
			if name == "NewPool" {
				p, err = NewPoolWithConfig(ctx, pc)
				if err == nil {
					err = PoolConnector(p).Ready(ctx)
				}
			} else {
				p, err = pgxpool.NewWithConfig(ctx, pc)
			}
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // the attempt's release hook, were it called
			for range 3 {
				conn, err := p.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conn.Release()
			}
			time.Sleep(200 * time.Millisecond) // pgxpool runs AfterRelease in a goroutine
			counts[name+"/"+variant] = h.String()
			p.Close()
			cancel()
		}
	}
	for _, variant := range []string{"all hooks", "tracer only", "after release only"} {
		if raw, ours := counts["pgxpool/"+variant], counts["NewPool/"+variant]; raw != ours {
			t.Errorf("%s: NewPool + Ready + 3 acquires: %s; pgxpool: %s", variant, ours, raw)
		}
	}
}

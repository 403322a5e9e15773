package pgfast

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// Paired connect benchmarks, raw pgxpool against pgfast's pool (issue 12's
// "connect" pair, next to the query and Acquire+Release pairs of
// pool_bench_test.go): raw and pgfast alternate within each op (which goes
// first alternates too), so that the shared machine's varying load falls on
// both alike. Each reports the median time of each side, the ratio of the
// medians and the median of the per-op ratios (raw/pgfast: 1 means as fast,
// below 1 slower). Run with
//
//	go test -run '^$' -bench 'PoolConnectPaired' -count 10 .

// pairedConnectOp times one side's op; the pair's ops alternate order.
type pairedConnectOp func(b *testing.B, fast bool) time.Duration

// runConnectPaired runs op for both sides per iteration and reports the
// medians and ratios.
func runConnectPaired(b *testing.B, op pairedConnectOp) {
	var tRaw, tFast []time.Duration
	var ratios []float64
	i := 0
	for b.Loop() {
		var r, f time.Duration
		if i%2 == 0 {
			r = op(b, false)
			f = op(b, true)
		} else {
			f = op(b, true)
			r = op(b, false)
		}
		tRaw, tFast = append(tRaw, r), append(tFast, f)
		if f > 0 {
			ratios = append(ratios, float64(r)/float64(f))
		}
		i++
	}
	mRaw, mFast := medianDuration(tRaw), medianDuration(tFast)
	b.ReportMetric(float64(mRaw.Nanoseconds()), "raw-median-ns/op")
	b.ReportMetric(float64(mFast.Nanoseconds()), "pgfast-median-ns/op")
	if mFast > 0 {
		b.ReportMetric(float64(mRaw)/float64(mFast), "ratio")
	}
	if len(ratios) > 0 {
		slices.Sort(ratios)
		b.ReportMetric(ratios[len(ratios)/2], "pair-ratio")
	}
}

// newBenchPoolOf makes a pool of one side, without waiting for anything.
func newBenchPoolOf(b *testing.B, fast bool, dsn string) *pgxpool.Pool {
	var (
		p   *pgxpool.Pool
		err error
	)
	if fast {
		p, err = NewPool(context.Background(), dsn)
	} else {
		p, err = pgxpool.New(context.Background(), dsn)
	}
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkPoolConnectPaired/new-pool: a pool made and its first Acquire,
// which dials, starts up and authenticates a connection (trust, 127.0.0.1):
// what a program pays for its first query. pgfast's first Acquire dials at
// once; the connector's first attempt (what Ready needs) runs beside it.
// The pool's Close is not timed.
//
// BenchmarkPoolConnectPaired/new-conn: in an open pool with no idle
// connection, one Acquire that dials a new connection (pgfast: its racing
// dialer, tracked socket, connect tracer and checkout check); the
// connection is then hijacked and closed, untimed, so the next Acquire
// dials again. Checked: every op made a new connection.
func BenchmarkPoolConnectPaired(b *testing.B) {
	dsn := server(b).DSN(pgtest.TrustUser)
	b.Run("op=new-pool", func(b *testing.B) {
		runConnectPaired(b, func(b *testing.B, fast bool) time.Duration {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			p := newBenchPoolOf(b, fast, dsn)
			c, err := p.Acquire(ctx)
			if err != nil {
				p.Close()
				b.Fatal(err)
			}
			d := time.Since(start)
			c.Release()
			p.Close()
			return d
		})
	})
	b.Run("op=new-conn", func(b *testing.B) {
		pools := map[bool]*pgxpool.Pool{}
		for _, fast := range []bool{false, true} {
			p := newBenchPoolOf(b, fast, dsn)
			b.Cleanup(p.Close)
			pools[fast] = p
			if fast {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := PoolConnector(p).Ready(ctx)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		before := map[bool]int64{false: pools[false].Stat().NewConnsCount(), true: pools[true].Stat().NewConnsCount()}
		ops := 0
		runConnectPaired(b, func(b *testing.B, fast bool) time.Duration {
			p := pools[fast]
			if n := p.Stat().TotalConns(); n != 0 {
				b.Fatalf("%d connections in the pool before the op, want 0", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			c, err := p.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			if err := c.Hijack().Close(ctx); err != nil {
				b.Fatal(err)
			}
			if fast {
				ops++
			}
			return d
		})
		for fast, p := range pools {
			if got := p.Stat().NewConnsCount() - before[fast]; got != int64(ops) {
				b.Errorf("pgfast=%v: %d new connections for %d ops", fast, got, ops)
			}
		}
	})
}

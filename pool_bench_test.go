package pgfast

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// Paired benchmarks: raw pgxpool and pgfast's pool in the same run, on the
// shared server. Compare with benchstat -col /pool.

func openBenchPool(b *testing.B, fast bool) *pgxpool.Pool {
	b.Helper()
	p := newBenchPoolOf(b, fast, server(b).DSN(pgtest.TrustUser))
	b.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		b.Fatal(err)
	}
	return p
}

var benchPools = []struct {
	name string
	fast bool
}{{"pgxpool", false}, {"pgfast", true}}

// BenchmarkPoolQuery runs one small query per op through the pool.
func BenchmarkPoolQuery(b *testing.B) {
	for _, bp := range benchPools {
		b.Run("pool="+bp.name, func(b *testing.B) {
			p := openBenchPool(b, bp.fast)
			ctx := context.Background()
			m := startCPUMetric(b)
			b.ResetTimer()
			for b.Loop() {
				var n int
				if err := p.QueryRow(ctx, "select 1").Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
			m.report()
		})
	}
}

// BenchmarkPoolAcquireRelease measures the checkout path alone (pgfast's
// liveness check against pgxpool's ping after one second idle, which a busy
// pool never pays).
func BenchmarkPoolAcquireRelease(b *testing.B) {
	for _, bp := range benchPools {
		b.Run("pool="+bp.name, func(b *testing.B) {
			p := openBenchPool(b, bp.fast)
			ctx := context.Background()
			m := startCPUMetric(b)
			b.ResetTimer()
			for b.Loop() {
				c, err := p.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				c.Release()
			}
			m.report()
		})
	}
}

// BenchmarkPoolQueryPaired alternates raw pgxpool and pgfast's pool query by
// query in one loop (which goes first alternates too), so that the shared
// machine's varying load falls on both alike. It reports each side's median
// time per query and the ratio of the medians (raw/pgfast: 1 means as fast,
// below 1 slower); medians, because one scheduler stall of milliseconds on
// either side would swamp a ratio of sums.
func BenchmarkPoolQueryPaired(b *testing.B) {
	raw, fast := openBenchPool(b, false), openBenchPool(b, true)
	ctx := context.Background()
	var tRaw, tFast []time.Duration
	query := func(p *pgxpool.Pool) time.Duration {
		start := time.Now()
		var n int
		if err := p.QueryRow(ctx, "select 1").Scan(&n); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			tRaw = append(tRaw, query(raw))
			tFast = append(tFast, query(fast))
		} else {
			tFast = append(tFast, query(fast))
			tRaw = append(tRaw, query(raw))
		}
		i++
	}
	mRaw, mFast := medianDuration(tRaw), medianDuration(tFast)
	b.ReportMetric(float64(mRaw.Nanoseconds()), "raw-median-ns/query")
	b.ReportMetric(float64(mFast.Nanoseconds()), "pgfast-median-ns/query")
	if mFast > 0 {
		b.ReportMetric(float64(mRaw)/float64(mFast), "ratio")
	}
}

func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// poolPinnedQueries are BenchmarkPoolPinnedPaired's queries, as
// pinnedQueries' through database/sql.
var poolPinnedQueries = []struct {
	name string
	run  func(p *pgxpool.Pool, i int) error
}{
	{"select1", func(p *pgxpool.Pool, _ int) error {
		var one int
		return p.QueryRow(context.Background(), "SELECT 1").Scan(&one)
	}},
	{"arg", func(p *pgxpool.Pool, i int) error {
		var n int
		return p.QueryRow(context.Background(), "SELECT $1::int", i).Scan(&n)
	}},
}

// BenchmarkPoolPinnedPaired is BenchmarkPinnedPaired for pgxpool: raw
// pgxpool and pgfast's pool (one connection each) interleaved query by
// query, with the test binary and the PostgreSQL it starts pinned to one CPU
// (scripts/bench --pinned), so that a query's time is the CPU it costs,
// client plus server. pgfast/raw is the median over blocks of raw time ÷
// pgfast time (the ratio of queries per second).
func BenchmarkPoolPinnedPaired(b *testing.B) {
	for _, q := range poolPinnedQueries {
		b.Run("query="+q.name, func(b *testing.B) {
			pools := [2]*pgxpool.Pool{openBenchPool(b, false), openBenchPool(b, true)}
			for _, p := range pools {
				checkPinnedPID(b, func() (int, error) {
					var pid int
					err := p.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid)
					return pid, err
				})
				for i := 0; i < 100; i++ {
					if err := q.run(p, i); err != nil {
						b.Fatal(err)
					}
				}
			}
			runPaired(b, func(side, i int) error { return q.run(pools[side], i) })
		})
	}
}

package pgfast

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// Paired benchmarks: raw pgxpool and pgfast's pool in the same run, on the
// shared server. Compare with benchstat -col /pool.

func openBenchPool(b *testing.B, fast bool) *pgxpool.Pool {
	b.Helper()
	dsn := server(b).DSN(pgtest.TrustUser)
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
// query in one loop, so that the shared machine's varying load falls on
// both alike; it reports each one's mean time per query and their ratio
// (raw/pgfast: 1 means as fast, below 1 slower).
func BenchmarkPoolQueryPaired(b *testing.B) {
	raw, fast := openBenchPool(b, false), openBenchPool(b, true)
	ctx := context.Background()
	var tRaw, tFast time.Duration
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
			tRaw += query(raw)
			tFast += query(fast)
		} else {
			tFast += query(fast)
			tRaw += query(raw)
		}
		i++
	}
	b.ReportMetric(float64(tRaw.Nanoseconds())/float64(b.N), "raw-ns/query")
	b.ReportMetric(float64(tFast.Nanoseconds())/float64(b.N), "pgfast-ns/query")
	b.ReportMetric(float64(tRaw)/float64(tFast), "ratio")
}

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

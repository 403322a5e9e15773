package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"net"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// ---------------------------------------------------------------------------
// Benchmarks.

// BenchmarkPQQueryWrapperOverhead compares raw lib/pq ("postgres") with
// pgfast-pq on one query, with a context that never ends (nothing is armed)
// and with a cancellable one (a context.AfterFunc per call).
func BenchmarkPQQueryWrapperOverhead(b *testing.B) {
	srv := server(b)
	for _, name := range []string{pqCase().raw, pqCase().name} {
		db, err := sql.Open(name, srv.DSN(pgtest.TrustUser))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := db.PingContext(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		db.SetMaxOpenConns(1)
		for _, mode := range []string{"background", "cancellable"} {
			b.Run("driver="+name+"/ctx="+mode, func(b *testing.B) {
				ctx := context.Background()
				if mode == "cancellable" {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					defer cancel()
				}
				var n int
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := db.QueryRowContext(ctx, "SELECT $1::int", i).Scan(&n); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		db.Close()
	}
}

// BenchmarkPQWrapperCallOverhead measures the wrapper alone, on the fake
// backend: one QueryContext, Next and Close per iteration.
func BenchmarkPQWrapperCallOverhead(b *testing.B) {
	a, peer := net.Pipe()
	defer a.Close()
	defer peer.Close()
	pb := &pipeBackend{sock: a}
	pc := &PQConn{inner: pb, sock: a, core: &fakeCore{}}
	v := make([]driver.Value, 1)
	for _, mode := range []string{"inner", "background", "cancellable"} {
		b.Run("call="+mode, func(b *testing.B) {
			ctx := context.Background()
			if mode == "cancellable" {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			var q driver.QueryerContext = pc
			if mode == "inner" {
				q = pb
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				rows, err := q.QueryContext(ctx, "x", nil)
				if err != nil {
					b.Fatal(err)
				}
				_ = rows.Next(v)
				rows.Close()
			}
		})
	}
}

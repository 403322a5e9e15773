package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// The benchmarks compare pgfast with the raw driver in the same run. Compare
// with benchstat, e.g.:
//
//	go test -run '^$' -bench . -count 10 > bench.txt
//	benchstat -col /driver bench.txt

// benchDrivers pairs each raw driver with its pgfast counterpart.
var benchDrivers = []string{"pgx", "pgfast", "postgres", "pgfast-pq"}

func openBench(b *testing.B, name string) *sql.DB {
	b.Helper()
	srv := server(b)
	db, err := sql.Open(name, srv.DSN(pgtest.TrustUser))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Ready(ctx, db); err != nil {
		b.Fatal(err)
	}
	return db
}

func BenchmarkSelect1(b *testing.B) {
	for _, name := range benchDrivers {
		b.Run("driver="+name, func(b *testing.B) {
			db := openBench(b, name)
			var one int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkQueryArg(b *testing.B) {
	for _, name := range benchDrivers {
		b.Run("driver="+name, func(b *testing.B) {
			db := openBench(b, name)
			var n int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := db.QueryRow("SELECT $1::int + 1", i).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenUnreachable measures sql.Open on a DSN whose server does not
// answer (a refused loopback port). The *sql.DBs are closed in batches
// outside the timer.
func BenchmarkOpenUnreachable(b *testing.B) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", freeLoopbackPort(b))
	for _, name := range benchDrivers {
		b.Run("driver="+name, func(b *testing.B) {
			b.ReportAllocs()
			const batch = 200
			dbs := make([]*sql.DB, 0, batch)
			closeBatch := func() {
				b.StopTimer()
				for _, db := range dbs {
					db.Close()
				}
				dbs = dbs[:0]
				b.StartTimer()
			}
			for i := 0; i < b.N; i++ {
				db, err := sql.Open(name, dsn)
				if err != nil {
					b.Fatal(err)
				}
				if dbs = append(dbs, db); len(dbs) == batch {
					closeBatch()
				}
			}
			closeBatch()
		})
	}
}

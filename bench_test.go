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

// cpuMetric reports the client process's CPU time per op ("client-cpu-ns/op")
// next to the wall time. A query's wall time is mostly the round trip and the
// server, which share this machine's cores and make it noisy; what a driver
// wrapper adds is client CPU, which this isolates.
type cpuMetric struct {
	b     *testing.B
	start time.Duration
	ok    bool
}

func startCPUMetric(b *testing.B) cpuMetric {
	start, ok := processCPU()
	return cpuMetric{b: b, start: start, ok: ok}
}

func (m cpuMetric) report() {
	end, ok := processCPU()
	if !m.ok || !ok || m.b.N == 0 {
		return
	}
	m.b.ReportMetric(float64((end-m.start).Nanoseconds())/float64(m.b.N), "client-cpu-ns/op")
}

// BenchmarkSelect1 runs SELECT 1 through each driver's *sql.DB.
func BenchmarkSelect1(b *testing.B) {
	for _, name := range benchDrivers {
		b.Run("driver="+name, func(b *testing.B) {
			db := openBench(b, name)
			var one int
			b.ResetTimer()
			cpu := startCPUMetric(b)
			for i := 0; i < b.N; i++ {
				if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report()
		})
	}
}

// BenchmarkQueryArg runs a one-argument query through each driver's *sql.DB.
func BenchmarkQueryArg(b *testing.B) {
	for _, name := range benchDrivers {
		b.Run("driver="+name, func(b *testing.B) {
			db := openBench(b, name)
			var n int
			b.ResetTimer()
			cpu := startCPUMetric(b)
			for i := 0; i < b.N; i++ {
				if err := db.QueryRow("SELECT $1::int + 1", i).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report()
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

// BenchmarkQueryPaired measures pgfast's query overhead over its raw driver
// with the noise of a shared machine cancelled out: every op runs the same
// query once through the raw driver and once through pgfast, alternating
// which goes first, and times each. A slow millisecond hits both sides alike,
// so the ratio of the two sums ("pgfast/raw") is stable where the separate
// wall times of BenchmarkSelect1 and BenchmarkQueryArg vary by ±20 % from
// run to run.
func BenchmarkQueryPaired(b *testing.B) {
	pairs := []struct{ raw, wrapped string }{{"pgx", "pgfast"}, {"postgres", "pgfast-pq"}}
	queries := []struct {
		name string
		run  func(db *sql.DB, i int) error
	}{
		{"select1", func(db *sql.DB, _ int) error {
			var one int
			return db.QueryRow("SELECT 1").Scan(&one)
		}},
		{"arg", func(db *sql.DB, i int) error {
			var n int
			return db.QueryRow("SELECT $1::int + 1", i).Scan(&n)
		}},
	}
	for _, p := range pairs {
		for _, q := range queries {
			b.Run(fmt.Sprintf("query=%s/driver=%s", q.name, p.wrapped), func(b *testing.B) {
				dbs := [2]*sql.DB{openBench(b, p.raw), openBench(b, p.wrapped)}
				var spent [2]time.Duration
				for _, db := range dbs { // warm both: statement caches, first checkout
					if err := q.run(db, 0); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for k := 0; k < 2; k++ {
						side := (i + k) % 2
						t0 := time.Now()
						if err := q.run(dbs[side], i); err != nil {
							b.Fatal(err)
						}
						spent[side] += time.Since(t0)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "raw-ns/op")
				b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "pgfast-ns/op")
				b.ReportMetric(float64(spent[1])/float64(spent[0]), "pgfast/raw")
			})
		}
	}
}

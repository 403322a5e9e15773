//go:build linux

package pgfast

import (
	"database/sql"
	"testing"
	"time"
)

// idleMeasure is how long BenchmarkIdleTenantsCPU measures each driver's idle
// tenants.
const idleMeasure = 10 * time.Second

// BenchmarkIdleTenantsCPU is the CPU 1,000 idle tenants cost the process:
// 1,000 *sql.DB on one server, opened with a new user's DSN (newUserDSN: no
// pgfast_ keys, a SCRAM password, a host name), each pinged once so it holds
// one pooled connection, then idleMeasure of nothing. It reports the process's
// CPU time over that period as a share of one core ("%core"), for pgfast's
// two backends and, paired in the same run, the raw drivers (whose idle
// pools cost only the Go runtime). pgfast's share includes its connector
// goroutines, their timers and the dead-peer watcher's ticks over the 1,000
// registered sockets.
//
//	go test -run '^$' -bench BenchmarkIdleTenantsCPU -benchtime 1x -count 3 .
func BenchmarkIdleTenantsCPU(b *testing.B) {
	srv := scaleServer(b)
	for _, name := range []string{"pgfast", "pgx", "pgfast-pq", "postgres"} {
		dsn := newUserDSN(srv)
		b.Run("driver="+name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				tenants := benchTenants(scaleTenants)
				dbs := make([]*sql.DB, 0, tenants)
				for t := 0; t < tenants; t++ {
					db, err := sql.Open(name, dsn)
					if err != nil {
						b.Fatal(err)
					}
					db.SetMaxIdleConns(1)
					dbs = append(dbs, db)
				}
				pingAll(b, dbs, 300*time.Second)
				settleGoroutines(5 * time.Second)
				time.Sleep(2 * time.Second) // let start-up timers and GC settle
				cpu0, ok0 := processCPU()
				t0 := time.Now()
				time.Sleep(idleMeasure)
				cpu1, ok1 := processCPU()
				wall := time.Since(t0)
				if ok0 && ok1 {
					b.ReportMetric(100*float64(cpu1-cpu0)/float64(wall), "%core")
				}
				closeAll(dbs)
			}
		})
	}
}

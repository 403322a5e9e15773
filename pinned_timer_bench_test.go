package pgfast

import (
	"database/sql"
	"fmt"
	"testing"
	"time"
)

// BenchmarkPinnedTimer explains why BenchmarkPinned's separate runs show
// pgx through database/sql ~5 % dearer with pgfast than raw, while the
// paired form (BenchmarkPinnedPaired) shows ~1 %: run pinned to one CPU
// (taskset -c 0, as scripts/bench --pinned does), a process with no timer
// pending at all blocks in the network poller more cheaply than one with a
// timer, and pgfast's dead-peer watcher keeps a 500 ms ticker while a
// pgfast socket exists. Raw pgx with database/sql's own connection cleaner
// (SetConnMaxLifetime, which nearly every production pool sets; a timer)
// costs what pgfast costs:
//
//	taskset -c 0 ./pgfast.test -test.run '^$' -test.bench '^BenchmarkPinnedTimer$'
//
// The sides run in the order given; alternate it between runs.
func BenchmarkPinnedTimer(b *testing.B) {
	sides := []struct {
		name, driver string
		lifetime     time.Duration
	}{
		{"raw", "pgx", 0},
		{"raw-with-conn-max-lifetime", "pgx", time.Hour},
		{"pgfast", "pgfast", 0},
	}
	for _, s := range sides {
		b.Run(fmt.Sprintf("backend=pgx/driver=%s", s.name), func(b *testing.B) {
			db := openBench(b, s.driver)
			db.SetMaxIdleConns(1)
			if s.lifetime > 0 {
				db.SetConnMaxLifetime(s.lifetime)
			}
			checkPinned(b, db)
			runPinnedSide(b, db)
		})
	}
}

// runPinnedSide runs SELECT 1 b.N times after a warm-up.
func runPinnedSide(b *testing.B, db *sql.DB) {
	q := pinnedQueries[0]
	for i := 0; i < 100; i++ {
		if err := q.run(db, i); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := q.run(db, i); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

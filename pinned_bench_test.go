package pgfast

import (
	"cmp"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// envPinnedOrder flips the order of BenchmarkPinned's two sides: "pgfast"
// runs pgfast before the raw driver, anything else the raw driver first.
// scripts/bench -pinned alternates it from round to round.
const envPinnedOrder = "PGFAST_BENCH_FIRST"

// pinnedQueries are BenchmarkPinned's queries.
var pinnedQueries = []struct {
	name string
	run  func(db *sql.DB, i int) error
}{
	{"select1", func(db *sql.DB, _ int) error {
		var one int
		return db.QueryRow("SELECT 1").Scan(&one)
	}},
	{"arg", func(db *sql.DB, i int) error {
		var n int
		return db.QueryRow("SELECT $1::int", i).Scan(&n)
	}},
}

// BenchmarkPinned measures the CPU a query costs, client and server together.
// Run it with the test binary (and so the PostgreSQL it starts, which inherits
// the affinity) pinned to one CPU:
//
//	taskset -c 0 ./pgfast.test -test.run '^$' -test.bench '^BenchmarkPinned$'
//
// With one CPU for both there is no idle wake-up and no parallelism: the
// client and the server backend take turns, so a query's time is the CPU
// both spend on it, and queries per second (1e9 / ns/op) compare drivers'
// CPU cost. Each backend's raw and pgfast sides run back to back against the
// same server; scripts/bench -pinned alternates which goes first from round
// to round and reports pgfast/raw (raw ns/op ÷ pgfast ns/op, that is the
// ratio of queries per second) per round and its median.
func BenchmarkPinned(b *testing.B) {
	pairs := []struct{ backend, raw, wrapped string }{
		{"pgx", "pgx", "pgfast"},
		{"pq", "postgres", "pgfast-pq"},
	}
	for _, q := range pinnedQueries {
		for _, p := range pairs {
			sides := []struct{ label, driver string }{{"raw", p.raw}, {"pgfast", p.wrapped}}
			if os.Getenv(envPinnedOrder) == "pgfast" {
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, s := range sides {
				b.Run(fmt.Sprintf("query=%s/backend=%s/driver=%s", q.name, p.backend, s.label), func(b *testing.B) {
					db := openBench(b, s.driver)
					db.SetMaxIdleConns(1)
					checkPinned(b, db)
					for i := 0; i < 100; i++ { // warm: statement cache, first checkout
						if err := q.run(db, i); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportAllocs()
					b.ResetTimer()
					cpu := startCPUMetric(b)
					for i := 0; i < b.N; i++ {
						if err := q.run(db, i); err != nil {
							b.Fatal(err)
						}
					}
					cpu.report()
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
				})
			}
		}
	}
}

// checkPinned fails the benchmark when this process is pinned to a CPU set
// but the server backend answering db is not pinned to the same set (the
// PostgreSQL the tests start inherits the test binary's affinity).
func checkPinned(b *testing.B, db *sql.DB) {
	b.Helper()
	checkPinnedPID(b, func() (int, error) {
		var pid int
		err := db.QueryRow("SELECT pg_backend_pid()").Scan(&pid)
		return pid, err
	})
}

// checkPinnedPID is checkPinned for the server backend whose PID backendPID
// returns.
func checkPinnedPID(b *testing.B, backendPID func() (int, error)) {
	b.Helper()
	pid, err := backendPID()
	if err != nil {
		b.Fatal(err)
	}
	same, self, srv, err := sameAffinity(pid)
	if err != nil {
		b.Skipf("no CPU affinity to compare: %v", err)
	}
	if !same {
		b.Fatalf("server backend %d runs on %d CPUs, this process on %d: not pinned together", pid, srv, self)
	}
}

// pairedBlock is how many paired queries make one block of
// BenchmarkPinnedPaired.
const pairedBlock = 64

// runPaired runs b.N pairs of queries, run(0, i) on the raw side and
// run(1, i) on pgfast's, interleaved (raw then pgfast, then pgfast then raw,
// ...), each timed on its own, and reports the median over blocks of
// pairedBlock pairs of raw time ÷ pgfast time ("pgfast/raw"), with that
// block's per-query times ("raw-ns/op", "pgfast-ns/op").
func runPaired(b *testing.B, run func(side, i int) error) {
	b.Helper()
	blocks := b.N/pairedBlock + 1
	spent := [2][]time.Duration{make([]time.Duration, blocks), make([]time.Duration, blocks)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := 0; k < 2; k++ {
			side := (i + k) % 2
			t0 := time.Now()
			if err := run(side, i); err != nil {
				b.Fatal(err)
			}
			spent[side][i/pairedBlock] += time.Since(t0)
		}
	}
	b.StopTimer()
	if b.N < pairedBlock {
		return // the first, calibrating run
	}
	full := b.N / pairedBlock
	type blk struct{ ratio, raw, wrapped float64 }
	bs := make([]blk, full)
	for i := range bs {
		bs[i] = blk{float64(spent[0][i]) / float64(spent[1][i]), float64(spent[0][i]), float64(spent[1][i])}
	}
	slices.SortFunc(bs, func(x, y blk) int { return cmp.Compare(x.ratio, y.ratio) })
	m := bs[full/2]
	b.ReportMetric(m.raw/pairedBlock, "raw-ns/op")
	b.ReportMetric(m.wrapped/pairedBlock, "pgfast-ns/op")
	b.ReportMetric(m.ratio, "pgfast/raw")
}

// BenchmarkPinnedPaired is BenchmarkPinned with the two sides interleaved
// query by query (raw then pgfast, then pgfast then raw, ...), each query
// timed on its own. On a shared machine a pinned CPU is still taken now and
// then by other processes; interleaving makes both sides meet the same
// interruptions, and the ratio is the median over blocks of pairedBlock
// pairs of raw time ÷ pgfast time ("pgfast/raw", the ratio of queries per
// second), so that a block hit by a long preemption does not move it.
// raw-ns/op and pgfast-ns/op are the median blocks' per-query times.
func BenchmarkPinnedPaired(b *testing.B) {
	pairs := []struct{ backend, raw, wrapped string }{
		{"pgx", "pgx", "pgfast"},
		{"pq", "postgres", "pgfast-pq"},
	}
	for _, q := range pinnedQueries {
		for _, p := range pairs {
			b.Run(fmt.Sprintf("query=%s/backend=%s", q.name, p.backend), func(b *testing.B) {
				dbs := [2]*sql.DB{openBench(b, p.raw), openBench(b, p.wrapped)}
				for _, db := range dbs {
					db.SetMaxIdleConns(1)
					checkPinned(b, db)
					for i := 0; i < 100; i++ {
						if err := q.run(db, i); err != nil {
							b.Fatal(err)
						}
					}
				}
				runPaired(b, func(side, i int) error { return q.run(dbs[side], i) })
			})
		}
	}
}

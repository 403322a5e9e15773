//go:build linux

package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
	"github.com/pgfast/pgfast/internal/testkit"
)

// The scale benchmarks open many tenants' *sql.DB in one process. Run them
// once each (they set up a server of their own with room for the
// connections):
//
//	go test -run '^$' -bench BenchmarkScale -benchtime 1x -count 5 .
//
// The blackholed tenants point at a loopback listener whose accept queue is
// full, so the kernel drops their SYNs exactly like a blackholed address.

const scaleTenants = 1000

// scaleServer starts a server with room for every tenant's connection.
func scaleServer(b *testing.B) *pgtest.Server {
	b.Helper()
	srv := newServer(b, pgtest.Options{Settings: map[string]string{"max_connections": "2100"}})
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	return srv
}

// BenchmarkScaleOpen opens scaleTenants tenants and reports the wall time all
// opens took, the slowest single open, and when the last healthy tenant was
// Ready (measured from the first open).
// mix=half-live is the scenario: every other tenant on a live server,
// the rest blackholed, so the server forks a backend per live tenant on the
// same cores while the loop runs. mix=all-blackholed has no server work
// competing for the CPU.
func BenchmarkScaleOpen(b *testing.B) {
	srv := scaleServer(b)
	live := withKV(srv.DSN(pgtest.TrustUser), "pgfast_dns_recheck=0")
	blackhole := blackholeDSN(b)
	for _, bc := range backends {
		for _, mix := range []string{"half-live", "all-blackholed"} {
			b.Run(fmt.Sprintf("driver=%s/mix=%s", bc.name, mix), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					scaleOpenOnce(b, bc.name, func(t int) string {
						if mix == "half-live" && t%2 == 0 {
							return live
						}
						return blackhole
					}, mix == "half-live")
				}
			})
		}
	}
}

// scaleOpenOnce opens scaleTenants tenants with dsnOf(t), reports the open
// metrics, waits for the live (even) tenants to be Ready when waitLive, and
// closes them all.
func scaleOpenOnce(b *testing.B, driverName string, dsnOf func(t int) string, waitLive bool) {
	dbs := make([]*sql.DB, 0, scaleTenants)
	var slowest time.Duration
	start := time.Now()
	for t := 0; t < scaleTenants; t++ {
		t0 := time.Now()
		db, err := sql.Open(driverName, dsnOf(t))
		if err != nil {
			b.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
		dbs = append(dbs, db)
	}
	opened := time.Since(start)
	defer closeAll(dbs)
	b.ReportMetric(float64(opened.Microseconds())/1000, "open-all-ms")
	b.ReportMetric(float64(slowest.Microseconds())/1000, "slowest-open-ms")
	if !waitLive {
		return
	}
	readyAll := waitReady(b, dbs, 0, 2, 20*time.Second)
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "healthy-ready-ms")
	if !readyAll {
		b.Fatal("healthy tenants not all ready within 20 s")
	}
}

// BenchmarkScaleIdle measures what an idle tenant costs: goroutines and heap
// per tenant once settled. tenant=ready is a new user's tenant (sql.Open with
// newUserDSN, then Ping: one pooled connection each), for pgfast's backends
// and, in the same run, the raw drivers; tenant=down is a pgfast tenant whose
// database refuses (no connection at all).
//
//	go test -run '^$' -bench BenchmarkScaleIdle -benchtime 1x -count 5 .
func BenchmarkScaleIdle(b *testing.B) {
	srv := scaleServer(b)
	down := fmt.Sprintf("host=127.0.0.1 port=%d user=x sslmode=disable", freeLoopbackPort(b))
	for _, name := range []string{"pgfast", "pgx", "pgfast-pq", "postgres"} {
		wrapped := name == "pgfast" || name == "pgfast-pq"
		kinds := []string{"ready"}
		if wrapped {
			kinds = append(kinds, "down")
		}
		for _, kind := range kinds {
			b.Run(fmt.Sprintf("driver=%s/tenant=%s", name, kind), func(b *testing.B) {
				dsn := newUserDSN(srv)
				if kind == "down" {
					dsn = down
				}
				for i := 0; i < b.N; i++ {
					goroutines0, heap0 := settledFootprint()
					tenants := benchTenants(scaleTenants / 2)
					dbs := make([]*sql.DB, 0, tenants)
					for t := 0; t < tenants; t++ {
						db, err := sql.Open(name, dsn)
						if err != nil {
							b.Fatal(err)
						}
						dbs = append(dbs, db)
					}
					if kind == "down" {
						waitState(b, dbs, StateDown, 20*time.Second)
					} else {
						pingAll(b, dbs, 300*time.Second)
					}
					settleGoroutines(5 * time.Second) // let overlapping attempts finish
					goroutines1, heap1 := settledFootprint()
					n := float64(len(dbs))
					b.ReportMetric(float64(goroutines1-goroutines0)/n, "goroutines/tenant")
					b.ReportMetric(float64(int64(heap1)-int64(heap0))/n/1024, "heap-KiB/tenant")
					closeAll(dbs)
				}
			})
		}
	}
}

// newUserDSN is what a new user writes: no pgfast_ keys, a SCRAM password and
// a host name (so pgfast's defaults, DNS rechecks included, all apply).
func newUserDSN(srv *pgtest.Server) string {
	return fmt.Sprintf("host=localhost port=%d user=%s password=%s dbname=%s sslmode=disable",
		srv.Port(), pgtest.ScramUser, pgtest.ScramPassword, pgtest.Database)
}

// pingAll pings every db until it answers (one pooled connection each), as a
// new user's start-up does: 16 tenants at a time, retrying while a tenant is
// not ready yet (a pgfast tenant fails fast while Down); it fails the
// benchmark at limit.
func pingAll(b *testing.B, dbs []*sql.DB, limit time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	next := make(chan *sql.DB)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for db := range next {
				for {
					pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
					err := db.PingContext(pctx)
					pcancel()
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						errs <- err
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
feed:
	for _, db := range dbs {
		select {
		case next <- db:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeAll(dbs)
		b.Fatal(err)
	}
}

// benchTenants is how many tenants the idle benchmarks open:
// PGFAST_BENCH_TENANTS, or def (on a loaded machine, fewer tenants still
// give per-tenant numbers).
func benchTenants(def int) int {
	if n, err := strconv.Atoi(os.Getenv("PGFAST_BENCH_TENANTS")); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkScaleNaiveStartup is the raw drivers' naive start-up loop for
// comparison: db.PingContext per tenant in turn, half blackholed, capped at
// 10 s; it reports how many healthy tenants were reachable when the cap hit.
// raw lib/pq ignores the context while connecting (sql.Open("postgres") dials
// with context.Background()), so its ping is abandoned at the cap and left to
// the kernel's SYN retries (~130 s).
func BenchmarkScaleNaiveStartup(b *testing.B) {
	srv := scaleServer(b)
	live := srv.DSN(pgtest.TrustUser)
	blackhole := blackholeDSN(b)
	for _, raw := range []string{"pgx", "postgres"} {
		b.Run("driver="+raw, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				healthy := 0
				for t := 0; t < scaleTenants && ctx.Err() == nil; t++ {
					dsn := live
					if t%2 == 1 {
						dsn = blackhole
					}
					db, err := sql.Open(raw, dsn)
					if err != nil {
						b.Fatal(err)
					}
					pinged := make(chan error, 1)
					go func() { pinged <- db.PingContext(ctx); db.Close() }()
					select {
					case err := <-pinged:
						if err == nil {
							healthy++
						}
					case <-ctx.Done():
					}
				}
				cancel()
				b.ReportMetric(float64(healthy), "healthy-ready-in-10s")
			}
		})
	}
}

// blackholeDSN is a DSN whose server never answers a SYN.
func blackholeDSN(b *testing.B) string {
	host, port, _ := net.SplitHostPort(testkit.Blackhole(b))
	return fmt.Sprintf("host=%s port=%s user=x sslmode=disable pgfast_dns_recheck=0", host, port)
}

// waitReady waits until every db at index start, start+step, ... is Ready.
func waitReady(b *testing.B, dbs []*sql.DB, start, step int, limit time.Duration) bool {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	for i := start; i < len(dbs); i += step {
		wg.Add(1)
		go func(db *sql.DB) {
			defer wg.Done()
			if err := Ready(ctx, db); err != nil {
				mu.Lock()
				ok = false
				mu.Unlock()
			}
		}(dbs[i])
	}
	wg.Wait()
	return ok
}

// waitState waits until every db's connector is in state want.
func waitState(b *testing.B, dbs []*sql.DB, want State, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for _, db := range dbs {
		for ConnectorOf(db).State() != want {
			if time.Now().After(deadline) {
				b.Fatalf("state %v, want %v", ConnectorOf(db).State(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// settledFootprint returns the goroutine count and live heap after a GC.
func settledFootprint() (int, uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapAlloc
}

// settleGoroutines waits until the goroutine count has not changed for
// 300 ms, at most limit.
func settleGoroutines(limit time.Duration) {
	deadline := time.Now().Add(limit)
	last, since := runtime.NumGoroutine(), time.Now()
	for time.Now().Before(deadline) && time.Since(since) < 300*time.Millisecond {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != last {
			last, since = n, time.Now()
		}
	}
}

func closeAll(dbs []*sql.DB) {
	for _, db := range dbs {
		db.Close()
	}
}

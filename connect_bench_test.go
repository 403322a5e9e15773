package pgfast

import (
	"context"
	"database/sql/driver"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// BenchmarkConnect measures one connection per op: dial, startup,
// authentication, and Close, through each driver's driver.Connector against
// the shared server (trust authentication, 127.0.0.1). Compare with
//
//	go test -run '^$' -bench BenchmarkConnect -count 10 . > connect.txt
//	benchstat -col /driver connect.txt
//
// A pgfast connector hands out the warm connection its background goroutine
// made first. So the benchmark waits for Ready, takes that warm connection
// and closes it before the timer starts, and afterwards checks with Stats
// that every op was a real dial (Dials grew by b.N and no further warm
// connection was handed out).
func BenchmarkConnect(b *testing.B) {
	srv := server(b)
	dsn := srv.DSN(pgtest.TrustUser)
	for _, name := range []string{"pgx", "pgfast", "postgres", "pgfast-pq"} {
		b.Run("driver="+name, func(b *testing.B) {
			connector, verify := benchConnectConnector(b, name, dsn)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				dc, err := connector.Connect(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := dc.Close(); err != nil {
					b.Fatal(err)
				}
			}
			verify(b.N)
		})
	}
}

// benchConnectConnector returns the driver.Connector for driver name and a
// check to run after the ops.
func benchConnectConnector(b *testing.B, name, dsn string) (driver.Connector, func(ops int)) {
	b.Helper()
	none := func(int) {}
	switch name {
	case "pgx":
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			b.Fatal(err)
		}
		return stdlib.GetConnector(*cfg), none
	case "postgres":
		c, err := pq.NewConnector(dsn)
		if err != nil {
			b.Fatal(err)
		}
		return c, none
	}

	backend := PGX
	if name == "pgfast-pq" {
		backend = LibPQ
	}
	c, err := NewConnector(dsn, WithBackend(backend))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	// Drain the warm connection(s): from here on Connect dials.
	for c.Stats().WarmIdle > 0 {
		dc, err := c.Connect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		dc.Close()
	}
	before := c.Stats()
	return c, func(ops int) {
		after := c.Stats()
		if after.WarmHandedOut != before.WarmHandedOut {
			b.Fatalf("%d warm connections were handed out during the benchmark: not every op was a dial", after.WarmHandedOut-before.WarmHandedOut)
		}
		if dials := after.Dials - before.Dials; dials != int64(ops) {
			b.Fatalf("%d dials for %d ops", dials, ops)
		}
	}
}

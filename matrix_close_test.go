package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"
)

// TestMatrixCloseAfterRefusedIsPrompt: after a failed Ping against hosts that
// refuse, db.Close returns about as fast as the raw driver's (which has
// nothing in flight and returns in microseconds).
//
// Found by the matrix: Close once waited for a probe pausing 1 s per
// remaining host in closedPause (meant only for attempts Close abandoned).
func TestMatrixCloseAfterRefusedIsPrompt(t *testing.T) {
	t.Parallel()
	down1, down2 := freeLoopbackPort(t), freeLoopbackPort(t)
	dsn := fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=x dbname=y sslmode=disable", down1, down2)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		t.Parallel()
		for i := range 3 {
			raw := closeTime(t, b.raw, dsn)
			fast := closeTime(t, b.name, dsn)
			if fast > raw+300*time.Millisecond {
				t.Errorf("round %d: %s Close took %s, raw %s %s", i, b.name, fast, b.raw, raw)
			}
		}
	})
}

// closeTime opens dsn with driverName, pings (which fails), and returns how
// long db.Close takes.
func closeTime(t *testing.T, driverName, dsn string) time.Duration {
	t.Helper()
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err == nil {
		t.Fatalf("%s: Ping succeeded with every host down", driverName)
	}
	start := time.Now()
	db.Close()
	return time.Since(start)
}

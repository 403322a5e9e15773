//go:build linux

package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// WaitQuiet waits, at most limit in all, until srv is ready for the next
// run, so that a run does not pay for the one before, and returns how long
// it waited. First a login over TCP must succeed: the accept queue is FIFO,
// so the connections an earlier run abandoned in it (the server still
// forks a backend for each, which then finds its client gone) are behind
// us. Then pg_stat_activity must show no client session but psql's own.
func WaitQuiet(srv *pgtest.Server, limit time.Duration) time.Duration {
	start := time.Now()
	deadline := start.Add(limit)
	probe := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgtest.Superuser, srv.Port(), pgtest.Database)
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		conn, err := pgx.Connect(ctx, probe)
		if err == nil {
			conn.Close(ctx)
			cancel()
			break
		}
		cancel()
	}
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n, err := srv.Query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
		if err == nil && n == "0" {
			break
		}
	}
	return time.Since(start)
}

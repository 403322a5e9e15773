package pgfast

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestPQPreferStandbyAllHostsDownReturns: lib/pq alone retries
// prefer-standby forever when no host answers; pgfast-pq must return an
// error (and Close must not hang).
func TestPQPreferStandbyAllHostsDownReturns(t *testing.T) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d sslmode=disable target_session_attrs=prefer-standby connect_timeout=2", freeLoopbackPort(t))
	c, err := NewConnector(dsn, WithBackend(LibPQ))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if dc, err := c.backend.Connect(ctx); err == nil {
		dc.Close()
		t.Fatal("connected to a closed port")
	} else if ctx.Err() != nil {
		t.Fatalf("Connect ran until its context ended (%v): lib/pq's prefer-standby loop", time.Since(start))
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close hangs")
	}
}

// TestPQPreferStandbyFallsBackToPrimary: with no standby, prefer-standby
// connects to the primary.
func TestPQPreferStandbyFallsBackToPrimary(t *testing.T) {
	s := server(t)
	c, err := NewConnector(s.DSN(pgtest.TrustUser)+" target_session_attrs=prefer-standby", WithBackend(LibPQ))
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var standby bool
	if err := db.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		t.Fatal(err)
	}
	if standby {
		t.Error("connected to a standby, there is none")
	}
}

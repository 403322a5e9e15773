package pgfast

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestTerminateMidWriteDropsOnlyThatConnection is item 2 of issue 10:
// pg_terminate_backend of a backend whose client keeps writing (a COPY)
// makes the server's kernel answer with RST; the reader may see EOF first,
// the writer ECONNRESET or EPIPE. Whatever the order, only that connection
// fails: no eviction, the connector stays Ready and a neighbour's query in
// flight finishes. Three rounds per backend, since the order varies.
func TestTerminateMidWriteDropsOnlyThatConnection(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		dsn := srv.DSN(pgtest.TrustUser)
		db := openT(t, b, dsn)
		readyT(t, db, 10*time.Second)
		c := ConnectorOf(db)
		table := "terminate_" + sanitize(b.name)
		mustExec(t, db, "DROP TABLE IF EXISTS "+table)
		mustExec(t, db, "CREATE TABLE "+table+" (id int, pad text)")
		before := settledStats(t, c)
		for round := range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			copyErr := make(chan error, 1)
			go func() { copyErr <- copyInto(ctx, db, b.name, table, 0, 50_000_000) }()
			neighbour := make(chan error, 1)
			go func() {
				_, err := db.ExecContext(ctx, "SELECT pg_sleep(2)")
				neighbour <- err
			}()
			pid := waitCopyPID(t, srv, table)
			time.Sleep(300 * time.Millisecond) // well into the COPY
			if err := srv.Exec(fmt.Sprintf("SELECT pg_terminate_backend(%d, 5000);", pid)); err != nil {
				t.Fatalf("pg_terminate_backend: %v", err)
			}
			select {
			case err := <-copyErr:
				if err == nil {
					t.Errorf("round %d: the COPY of a terminated backend succeeded", round+1)
				} else {
					t.Logf("round %d: COPY failed as expected: %v", round+1, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: the COPY of a terminated backend still runs after 30s", round+1)
			}
			if err := <-neighbour; err != nil {
				t.Errorf("round %d: the neighbour's pg_sleep(2) failed: %v", round+1, err)
			}
			cancel()
			var one int
			if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
				t.Errorf("round %d: a query after the terminate failed: %v", round+1, err)
			}
		}
		after := c.Stats()
		if after.Evictions != before.Evictions {
			t.Errorf("Evictions %d → %d: a terminated backend evicted the address (last error %v)", before.Evictions, after.Evictions, after.LastError)
		}
		if after.State != StateReady || after.StateChanges != before.StateChanges {
			t.Errorf("state %v (%d changes, %d before), want Ready throughout: %v", after.State, after.StateChanges, before.StateChanges, after.LastError)
		}
	})
}

// settledStats returns c's Stats once its move to Ready is counted (Ready
// can return a moment before the counter moves).
func settledStats(t *testing.T, c *Connector) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := c.Stats()
		if st.State == StateReady && st.StateChanges > 0 || time.Now().After(deadline) {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCopyPID returns the backend PID of the COPY into table once it runs.
func waitCopyPID(t *testing.T, srv *pgtest.Server, table string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := srv.Query(fmt.Sprintf(
			"SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query ILIKE 'COPY%%%s%%' AND pid <> pg_backend_pid() LIMIT 1", table))
		if err == nil && out != "" {
			pid, err := strconv.Atoi(strings.TrimSpace(out))
			if err == nil {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no COPY into %s showed up in pg_stat_activity", table)
	return 0
}

func netipAddrPort(t *testing.T, ip string, port int) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}

// registeredSockets is how many sockets the process's watcher has.
func registeredSockets() int { return netx.WatchedSockets() }

// TestPeerWatcherFollowsRealSockets: every socket pgfast dials is registered
// with the process's watcher and leaves it when it closes; with no pgfast
// socket left, the watcher goroutine is stopped.
func TestPeerWatcherFollowsRealSockets(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		before := registeredSockets()
		db := openT(t, b, srv.DSN(pgtest.TrustUser))
		readyT(t, db, 10*time.Second)
		var one int
		if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		if n := registeredSockets(); n <= before {
			t.Fatalf("%d sockets registered with a ready pool open, %d before", n, before)
		}
		done := netx.WatcherDone()
		if done == nil {
			t.Fatal("no watcher goroutine with pgfast sockets open")
		}
		db.Close()
		deadline := time.Now().Add(5 * time.Second)
		for registeredSockets() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := registeredSockets(); n != before {
			t.Errorf("%d sockets registered after the pool closed, %d before", n, before)
		}
		if before == 0 {
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				t.Error("the watcher goroutine still runs 2s after the last pgfast socket closed")
			}
		}
	})
}

package pgfast

// Health checks that need no fault namespace: the checkout liveness check
// (and its cost), a terminated backend, the role judgement, and the order in
// which hosts are tried after one failed.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// hcSocketOf runs f with the socket under one of db's connections.
func hcSocketOf(tb testing.TB, db *sql.DB, f func(nc net.Conn)) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		nc := socketOf(dc.(driver.Conn))
		if nc == nil {
			return fmt.Errorf("no pgfast socket under %T", dc)
		}
		f(nc)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkCheckout measures the liveness check database/sql runs (through
// ResetSession) before it reuses a connection, on a live connection to a real
// server: one non-blocking peek, no round trip (target < 2 µs/op). pgx's own
// Ping, the round trip pgfast replaces, is measured for comparison.
func BenchmarkCheckout(b *testing.B) {
	srv := server(b)
	for _, bc := range backends {
		b.Run("check=checkout/driver="+bc.name, func(b *testing.B) {
			db := openBench(b, bc.name)
			hcSocketOf(b, db, func(nc net.Conn) {
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := netx.Checkout(ctx, nc); err != nil {
						b.Fatalf("checkout on a live connection: %v", err)
					}
				}
				b.StopTimer()
			})
		})
	}
	b.Run("check=ping/driver=pgx", func(b *testing.B) {
		db, err := sql.Open("pgx", srv.DSN(pgtest.TrustUser))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		err = conn.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := pc.Ping(ctx); err != nil {
					return err
				}
			}
			b.StopTimer()
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	})
}

// TestCheckoutLiveness drives the checkout check with a peer under the
// test's control: idle → usable; unsolicited non-error bytes → usable (the
// check must not consume them); an ErrorResponse ('E'), a close or a reset →
// driver.ErrBadConn.
func TestCheckoutLiveness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func(t *testing.T) (client, server net.Conn) {
		t.Helper()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				accepted <- nil
				return
			}
			accepted <- c
		}()
		client, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		server = <-accepted
		if server == nil {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { client.Close(); server.Close() })
		return client, server
	}
	settle := func() { time.Sleep(20 * time.Millisecond) } // let loopback deliver
	ctx := context.Background()

	t.Run("idle", func(t *testing.T) {
		c, _ := pair(t)
		if err := netx.Checkout(ctx, c); err != nil {
			t.Fatalf("checkout of an idle live socket: %v", err)
		}
	})
	t.Run("pending notice is not consumed", func(t *testing.T) {
		c, s := pair(t)
		if _, err := s.Write([]byte("N")); err != nil {
			t.Fatal(err)
		}
		settle()
		if err := netx.Checkout(ctx, c); err != nil {
			t.Fatalf("checkout with a NoticeResponse pending: %v", err)
		}
		buf := make([]byte, 1)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(buf); n != 1 || buf[0] != 'N' {
			t.Fatalf("the pending byte was consumed: read %d %q %v", n, buf[:n], err)
		}
	})
	t.Run("server terminating", func(t *testing.T) {
		c, s := pair(t)
		if _, err := s.Write([]byte("E")); err != nil {
			t.Fatal(err)
		}
		settle()
		if err := netx.Checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout with an ErrorResponse pending: %v, want driver.ErrBadConn", err)
		}
	})
	t.Run("closed by server", func(t *testing.T) {
		c, s := pair(t)
		s.Close()
		settle()
		if err := netx.Checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout after the server closed: %v, want driver.ErrBadConn", err)
		}
	})
	t.Run("reset by server", func(t *testing.T) {
		c, s := pair(t)
		_ = s.(*net.TCPConn).SetLinger(0) // close with RST
		s.Close()
		settle()
		if err := netx.Checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout after a reset: %v, want driver.ErrBadConn", err)
		}
	})
	t.Run("closed by us", func(t *testing.T) {
		c, _ := pair(t)
		c.Close()
		if err := netx.Checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout of a closed socket: %v, want driver.ErrBadConn", err)
		}
	})
}

// TestHealthTerminatedBackendDoesNotEvictOthers: pg_terminate_backend of one
// pooled connection closes that one socket (an ErrorResponse, then EOF). The
// dead connection must be dropped silently at checkout while its idle
// siblings, still fine, stay in the pool: no eviction, no state change, one
// new dial, no error reaching the application.
func TestHealthTerminatedBackendDoesNotEvictOthers(t *testing.T) {
	srv := server(t)
	const pool = 4
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db := openT(t, b, srv.DSN(pgtest.TrustUser))
		db.SetMaxIdleConns(pool)
		readyT(t, db, 10*time.Second)
		c := ConnectorOf(db)

		pids := hcHoldPIDs(t, db, pool)
		victim, survivors := pids[0], pids[1:]
		before := c.Stats()
		if err := srv.Exec(fmt.Sprintf("SELECT pg_terminate_backend(%d, 5000);", victim)); err != nil {
			t.Fatalf("pg_terminate_backend: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the FATAL message and FIN reach our socket

		for i := range 2 * pool {
			var pid int
			if err := db.QueryRow("SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatalf("query %d after terminating one backend: %v", i, err)
			}
			if pid == victim {
				t.Fatalf("query %d ran on the terminated backend %d", i, victim)
			}
		}
		again := hcHoldPIDs(t, db, pool)
		for _, pid := range survivors {
			if !slices.Contains(again, pid) {
				t.Errorf("surviving backend %d was not reused (pool now %v, before %v): its connection was dropped", pid, again, pids)
			}
		}
		after := c.Stats()
		if after.Evictions != before.Evictions {
			t.Errorf("Evictions %d → %d: one terminated backend evicted the address", before.Evictions, after.Evictions)
		}
		if after.StateChanges != before.StateChanges || after.State != StateReady {
			t.Errorf("state changed: %v (%d changes before, %d after)", after.State, before.StateChanges, after.StateChanges)
		}
		if d := after.Dials - before.Dials; d != 1 {
			t.Errorf("%d dials after one backend was terminated, want 1 (its replacement)", d)
		}
		if a, ok := hcAddr(c, srv.Host(), srv.Port()); !ok || a.OpenConns != pool {
			t.Errorf("address book: %+v, want %d open connections", a, pool)
		}
		t.Logf("pids before %v, after %v; dials +%d, evictions %d", pids, again, after.Dials-before.Dials, after.Evictions)
	})
}

// hcHoldPIDs takes n connections from db at once, returns their backend PIDs
// and puts them back in the pool.
func hcHoldPIDs(t *testing.T, db *sql.DB, n int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pids []int
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("taking a connection: %v", err)
		}
		conns = append(conns, conn)
		var pid int
		if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatalf("pg_backend_pid: %v", err)
		}
		pids = append(pids, pid)
	}
	return pids
}

func hcAddr(c *Connector, ip string, port int) (AddrStats, bool) {
	want := net.JoinHostPort(ip, strconv.Itoa(port))
	for _, a := range c.Stats().Addrs {
		if a.Addr == want {
			return a, true
		}
	}
	return AddrStats{}, false
}

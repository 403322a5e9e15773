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
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"

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
					if err := checkout(ctx, nc); err != nil {
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
		if err := checkout(ctx, c); err != nil {
			t.Fatalf("checkout of an idle live socket: %v", err)
		}
	})
	t.Run("pending notice is not consumed", func(t *testing.T) {
		c, s := pair(t)
		if _, err := s.Write([]byte("N")); err != nil {
			t.Fatal(err)
		}
		settle()
		if err := checkout(ctx, c); err != nil {
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
		if err := checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout with an ErrorResponse pending: %v, want driver.ErrBadConn", err)
		}
	})
	t.Run("closed by server", func(t *testing.T) {
		c, s := pair(t)
		s.Close()
		settle()
		if err := checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout after the server closed: %v, want driver.ErrBadConn", err)
		}
	})
	t.Run("reset by server", func(t *testing.T) {
		c, s := pair(t)
		_ = s.(*net.TCPConn).SetLinger(0) // close with RST
		s.Close()
		settle()
		if err := checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout after a reset: %v, want driver.ErrBadConn", err)
		}
	})
	t.Run("closed by us", func(t *testing.T) {
		c, _ := pair(t)
		c.Close()
		if err := checkout(ctx, c); !errors.Is(err, driver.ErrBadConn) {
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

// TestRoleViolation is the judgement of a server's reported parameters
// against target_session_attrs. "" stands for a parameter the server does not
// report (PostgreSQL before 14): such a server is not judged on it.
func TestRoleViolation(t *testing.T) {
	type params struct{ standby, readOnly string }
	var (
		primaryRW = params{"off", "off"}
		primaryRO = params{"off", "on"} // default_transaction_read_only=on: a demoted primary
		hot       = params{"on", "on"}  // a hot standby reports both
		hotOdd    = params{"on", "off"}
		old       = params{"", ""}
		oldRO     = params{"", "on"}
	)
	cases := []struct {
		tsa       string
		p         params
		violation bool
	}{
		{"any", primaryRW, false}, {"any", primaryRO, false}, {"any", hot, false}, {"any", old, false},
		{"prefer-standby", primaryRW, false}, {"prefer-standby", hot, false},

		{"read-write", primaryRW, false},
		{"read-write", primaryRO, true},
		{"read-write", hot, true},
		{"read-write", hotOdd, true},
		{"read-write", old, false},
		{"read-write", oldRO, true},

		{"primary", primaryRW, false},
		{"primary", primaryRO, false}, // read-only but not in recovery: still the primary
		{"primary", hot, true},
		{"primary", old, false},

		{"standby", hot, false},
		{"standby", hotOdd, false},
		{"standby", primaryRW, true},
		{"standby", primaryRO, true},
		{"standby", old, false},

		{"read-only", hot, false},
		{"read-only", primaryRO, false},
		{"read-only", hotOdd, false},
		{"read-only", primaryRW, true},
		{"read-only", old, false},
	}
	for _, tc := range cases {
		param := func(name string) string {
			switch name {
			case "in_hot_standby":
				return tc.p.standby
			case "default_transaction_read_only":
				return tc.p.readOnly
			}
			return ""
		}
		why, _ := roleViolation(tc.tsa, paramFunc(param))
		if (why != "") != tc.violation {
			t.Errorf("roleViolation(%s, in_hot_standby=%q default_transaction_read_only=%q) = %q, want violation %v",
				tc.tsa, tc.p.standby, tc.p.readOnly, why, tc.violation)
		}
	}
}

// TestHostOrderFailedHostTriedLast: once a host of a multi-host DSN failed, new
// connections try it last (so no connection pays for it first) until it is
// seen alive again. Proven on the address book: the failed address's entry
// is not touched again while the other host keeps answering.
func TestHostOrderFailedHostTriedLast(t *testing.T) {
	srv := server(t)
	live := srv.Port()
	dead := freeLoopbackPort(t)
	cases := []struct {
		name     string
		dsnHosts string
		deadAddr netip.AddrPort
	}{
		// Two hosts: nothing listens on 127.0.0.2 (loopback), so it is refused.
		{"distinct hosts", fmt.Sprintf("host=127.0.0.2,%s port=%d", srv.Host(), live),
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(live))},
		// One host, two ports: the dead port comes first.
		{"same host other port", fmt.Sprintf("host=%[1]s,%[1]s port=%d,%d", srv.Host(), dead, live),
			netip.AddrPortFrom(netip.MustParseAddr(srv.Host()), uint16(dead))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b backendCase) {
				dsn := fmt.Sprintf("%s user=%s dbname=%s sslmode=disable", tc.dsnHosts, pgtest.TrustUser, pgtest.Database)
				c, err := NewConnector(dsn, WithBackend(b.backend))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.Ready(ctx); err != nil {
					t.Fatalf("Ready: %v", err)
				}
				first, ok := hcAddr(c, tc.deadAddr.Addr().String(), int(tc.deadAddr.Port()))
				if !ok || first.Status != "failed" {
					t.Fatalf("the first connection did not try %s first and fail: %+v (all %+v)", tc.deadAddr, first, c.Stats().Addrs)
				}
				for i := range 5 {
					dc, err := c.Connect(ctx)
					if err != nil {
						t.Fatalf("connection %d: %v", i, err)
					}
					dc.Close()
				}
				now, _ := hcAddr(c, tc.deadAddr.Addr().String(), int(tc.deadAddr.Port()))
				if !now.Since.Equal(first.Since) || now.Status != "failed" {
					t.Errorf("the failed address %s was tried again while the other host answered: status %s since %v, was %s since %v",
						tc.deadAddr, now.Status, now.Since.Format(time.StampMicro), first.Status, first.Since.Format(time.StampMicro))
				}
			})
		})
	}
}

// TestHostOrderBookUntilSeenAlive drives the address book as the dialer does:
// a host that failed goes last; once it connects again it is back in its
// place. Hosts are told apart by port as well as by name.
func TestHostOrderBookUntilSeenAlive(t *testing.T) {
	refused := errors.New("connection refused")
	cases := []struct {
		name  string
		hosts []HostPort
	}{
		{"distinct hosts", []HostPort{{Host: "127.0.0.2", Port: 5432}, {Host: "127.0.0.1", Port: 5432}}},
		{"same host other port", []HostPort{{Host: "127.0.0.1", Port: 5433}, {Host: "127.0.0.1", Port: 5432}}},
		{"same name other port", []HostPort{{Host: "db.test", Port: 5433}, {Host: "db.test", Port: 5432}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newAddrBook()
			target := func(h HostPort) netip.AddrPort {
				ip, err := netip.ParseAddr(h.Host)
				if err != nil {
					ip = netip.MustParseAddr("127.0.0.1") // what db.test resolves to
				}
				return netip.AddrPortFrom(ip, h.Port)
			}
			dial := func(h HostPort, err error) {
				a := target(h)
				b.resolved(hostKey(h), strconv.Itoa(int(h.Port)), []netip.AddrPort{a})
				b.attemptStarted(a)
				var nc net.Conn
				if err == nil {
					client, server := net.Pipe()
					server.Close()
					nc = client
				}
				if tc := b.attemptDone(a, nc, err); tc != nil {
					tc.Close()
				}
			}
			if got := b.orderHosts(tc.hosts, false); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("fresh book: order %v, want [0 1]", got)
			}
			dial(tc.hosts[0], refused)
			dial(tc.hosts[1], nil)
			if got := b.orderHosts(tc.hosts, false); !slices.Equal(got, []int{1, 0}) {
				t.Errorf("after %s failed: order %v, want [1 0] (the failed host last)", tc.hosts[0], got)
			}
			dial(tc.hosts[1], nil) // the other host keeps answering
			if got := b.orderHosts(tc.hosts, false); !slices.Equal(got, []int{1, 0}) {
				t.Errorf("after %s answered again: order %v, want [1 0]", tc.hosts[1], got)
			}
			dial(tc.hosts[0], nil) // seen alive again
			if got := b.orderHosts(tc.hosts, false); !slices.Equal(got, []int{0, 1}) {
				t.Errorf("after %s was seen alive again: order %v, want [0 1]", tc.hosts[0], got)
			}
		})
	}
}

// paramFunc serves ParameterStatus from a function.
type paramFunc func(string) string

func (f paramFunc) ParameterStatus(key string) string { return f(key) }

// TestAddrBookForgetsAddressesDNSNoLongerLists: a name that moves from
// address to address must not grow the book without bound. An address that
// left the answer is forgotten once no socket of any generation and no
// attempt refers to it; until then it stays, so its sockets' generation
// checks still hold.
func TestAddrBookForgetsAddressesDNSNoLongerLists(t *testing.T) {
	b := newAddrBook()
	a1 := netip.MustParseAddrPort("127.0.0.2:5432")
	a2 := netip.MustParseAddrPort("127.0.0.3:5432")
	a3 := netip.MustParseAddrPort("127.0.0.4:5432")
	other := netip.MustParseAddrPort("127.0.0.2:5433") // same name, other port
	connect := func(a netip.AddrPort) net.Conn {
		b.attemptStarted(a)
		client, server := net.Pipe()
		t.Cleanup(func() { server.Close() })
		return b.attemptDone(a, client, nil)
	}
	known := func() []netip.AddrPort {
		b.mu.Lock()
		defer b.mu.Unlock()
		out := slices.Collect(maps.Keys(b.addrs))
		slices.SortFunc(out, netip.AddrPort.Compare)
		return out
	}

	b.resolved("db.test", "5433", []netip.AddrPort{other})
	b.attemptStarted(other)
	b.attemptDone(other, nil, errors.New("connection refused"))

	b.resolved("db.test", "5432", []netip.AddrPort{a1})
	tc1 := connect(a1)
	b.evict(a1, 0, errors.New("gone"), evictMoved) // its socket is now of an old generation
	b.resolved("db.test", "5432", []netip.AddrPort{a2})
	b.attemptStarted(a2)
	b.attemptDone(a2, nil, errors.New("connection refused"))
	if got, want := known(), []netip.AddrPort{a1, other, a2}; !slices.Equal(got, want) {
		t.Fatalf("with a socket still open to %s: book %v, want %v", a1, got, want)
	}

	tc1.Close()
	tc1.Close() // drivers may close twice; it counts once
	b.resolved("db.test", "5432", []netip.AddrPort{a3})
	if got, want := known(), []netip.AddrPort{other, a3}; !slices.Equal(got, want) {
		t.Fatalf("after the socket closed and the name moved on: book %v, want %v", got, want)
	}

	b.attemptStarted(a3) // an attempt in flight keeps it
	b.prune("db.test", 5432, func(netip.AddrPort) bool { return false })
	if got := known(); !slices.Contains(got, a3) {
		t.Fatalf("an address with an attempt in flight was forgotten: book %v", got)
	}
	b.attemptDone(a3, nil, context.Canceled)
	b.prune("db.test", 5432, func(netip.AddrPort) bool { return false })
	if got, want := known(), []netip.AddrPort{other}; !slices.Equal(got, want) {
		t.Fatalf("after the recheck listed none of port 5432: book %v, want %v (the other port untouched)", got, want)
	}
}

// TestHealthReadOnlyByChoiceDoesNotEvict: on a read-write pool, a 25006 that
// the application brought on itself (a write in a transaction it opened READ
// ONLY, or in a session it made read-only) says nothing about the server's
// role. It must not evict the address: the other connections, including one
// running a query at that moment, keep working and the connector stays
// Ready.
func TestHealthReadOnlyByChoiceDoesNotEvict(t *testing.T) {
	srv := server(t)
	cases := []struct {
		name    string
		readErr func(ctx context.Context, db *sql.DB) error // makes one connection see 25006
	}{
		{"read-only transaction", func(ctx context.Context, db *sql.DB) error {
			tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer tx.Rollback()
			_, err = tx.ExecContext(ctx, "CREATE TABLE hc_read_only_probe (i int)")
			return err
		}},
		{"read-only session", func(ctx context.Context, db *sql.DB) error {
			conn, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "SET default_transaction_read_only = on"); err != nil {
				return err
			}
			_, err = conn.ExecContext(ctx, "CREATE TABLE hc_read_only_probe (i int)")
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b backendCase) {
				db := openT(t, b, withKV(srv.DSN(pgtest.TrustUser), "target_session_attrs=read-write"))
				db.SetMaxIdleConns(4)
				readyT(t, db, 10*time.Second)
				c := ConnectorOf(db)
				hcHoldPIDs(t, db, 3)
				before := c.Stats()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()

				// A query in flight on another connection meanwhile.
				sleeper := make(chan error, 1)
				sleeping, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer sleeping.Close()
				go func() {
					_, err := sleeping.ExecContext(ctx, "SELECT pg_sleep(0.3)")
					sleeper <- err
				}()
				time.Sleep(50 * time.Millisecond)

				err = tc.readErr(ctx, db)
				var coded interface{ SQLState() string }
				if !errors.As(err, &coded) || coded.SQLState() != "25006" {
					t.Fatalf("the write in read-only mode: %v, want SQLSTATE 25006", err)
				}
				if err := <-sleeper; err != nil {
					t.Errorf("a query running on another connection failed: %v", err)
				}
				for i := range 5 {
					if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil {
						t.Errorf("query %d after the application's own 25006: %v", i, err)
					}
				}
				after := c.Stats()
				if after.Evictions != before.Evictions || after.StateChanges != before.StateChanges {
					t.Errorf("the application's own 25006 evicted the server: evictions %d → %d, state changes %d → %d, state %v, last error %v",
						before.Evictions, after.Evictions, before.StateChanges, after.StateChanges, after.State, after.LastError)
				}
			})
		})
	}
}

// TestHealthWrongRoleErrorReachesCaller: the connection that receives a 25006
// on a read-write pool must return the server's error, with the backend's own
// type (*pgconn.PgError, *pq.Error), whatever pgfast concludes from it about
// the server. Fresh connectors, so that every round is a first 25006.
func TestHealthWrongRoleErrorReachesCaller(t *testing.T) {
	srv := server(t)
	const rounds = 30 // the loss is a race: seen in 20–40% of rounds with -race
	forEachBackend(t, func(t *testing.T, b backendCase) {
		wrong := 0
		for i := range rounds {
			c, err := NewConnector(withKV(srv.DSN(pgtest.TrustUser), "target_session_attrs=read-write"), WithBackend(b.backend))
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(c)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = func() error {
				defer cancel()
				defer db.Close()
				if err := c.Ready(ctx); err != nil {
					t.Fatalf("Ready: %v", err)
				}
				tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					t.Fatalf("BeginTx: %v", err)
				}
				defer tx.Rollback()
				_, err = tx.ExecContext(ctx, "CREATE TABLE hc_read_only_probe (i int)")
				return err
			}()
			if !hcIsBackendError(b, err, "25006") {
				if wrong++; wrong <= 3 {
					t.Errorf("round %d: the write in a read-only transaction returned %v (%T), want the backend's error with SQLSTATE 25006", i, err, err)
				}
			}
		}
		if wrong > 0 {
			t.Errorf("%d of %d rounds lost the server's 25006 error", wrong, rounds)
		}
	})
}

// hcIsBackendError reports whether err is the backend's own error type with
// SQLSTATE code.
func hcIsBackendError(b backendCase, err error, code string) bool {
	switch b.backend {
	case PGX:
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == code
	case LibPQ:
		var pqErr *pq.Error
		return errors.As(err, &pqErr) && string(pqErr.Code) == code
	}
	return false
}

// TestEvictionNeverRunsAStatementTwice: shutting down the socket under a
// statement in flight must give the caller an error; pgx would otherwise
// take the closed socket for a statement never sent, and database/sql would
// run it again on a fresh connection.
func TestEvictionNeverRunsAStatementTwice(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		db := openT(t, b, srv.DSN(pgtest.TrustUser))
		readyT(t, db, 10*time.Second)
		db.SetMaxOpenConns(1)
		table := "evict_once_" + strings.ReplaceAll(b.name, "-", "_")
		mustExec(t, db, "DROP TABLE IF EXISTS "+table)
		mustExec(t, db, "CREATE TABLE "+table+" (x int)")

		ctx := context.Background()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var tc *trackedConn
		if err := conn.Raw(func(dc any) error {
			tc = trackedOf(socketOf(dc.(driver.Conn)))
			return nil
		}); err != nil || tc == nil {
			t.Fatalf("no tracked socket: %v", err)
		}
		conn.Close() // back to the pool: the next statement runs on it

		time.AfterFunc(300*time.Millisecond, tc.shutdown)
		start := time.Now()
		_, err = db.ExecContext(ctx, "INSERT INTO "+table+" SELECT 1 FROM pg_sleep(1)")
		if err == nil {
			t.Fatalf("the statement whose socket was shut down succeeded after %v: it ran again", time.Since(start))
		}
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("the caller waited %v after the shutdown", d)
		}
		time.Sleep(1200 * time.Millisecond) // let a cancelled or orphaned run finish
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil || n > 1 {
			t.Fatalf("rows = %d (%v), want at most 1", n, err)
		}
	})
}

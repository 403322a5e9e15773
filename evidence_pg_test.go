package pgfast

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// gateListener is a loopback TCP proxy to a server that can be made to stop
// answering new connections like a blackhole: its listening socket stays
// open with a backlog of 0 and nothing accepts any more, so once the queue
// is full the kernel drops new SYNs. Proxied connections keep working.
type gateListener struct {
	file *os.File     // the listening socket itself
	ln   net.Listener // a duplicate the proxy accepts on; closed by shut
	port int
	mu   sync.Mutex
	open []net.Conn
	wg   sync.WaitGroup
}

func newGateListener(t *testing.T, target string) *gateListener {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		err = unix.Listen(fd, 0)
	}
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	g := &gateListener{file: os.NewFile(uintptr(fd), "gate"), port: sa.(*unix.SockaddrInet4).Port}
	if g.ln, err = net.FileListener(g.file); err != nil {
		g.file.Close()
		t.Fatal(err)
	}
	g.wg.Go(func() {
		for {
			c, err := g.ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.open = append(g.open, c, s)
			g.mu.Unlock()
			g.wg.Go(func() { io.Copy(s, c); s.Close() })
			g.wg.Go(func() { io.Copy(c, s); c.Close() })
		}
	})
	t.Cleanup(g.close)
	return g
}

// shut stops accepting and fills the accept queue, so that new connection
// attempts get no answer at all.
func (g *gateListener) shut() {
	g.ln.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port))
	for range 3 {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			g.mu.Lock()
			g.open = append(g.open, c)
			g.mu.Unlock()
		}
	}
}

func (g *gateListener) close() {
	g.ln.Close()
	g.file.Close()
	g.mu.Lock()
	for _, c := range g.open {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// TestCallerDeadlineDuringDialKeepsReady is item 4 of issue 10: a caller
// whose context ends while pgfast dials a server that does not answer SYNs
// (its own deadline, shorter than connect_timeout) gets its deadline error,
// and nothing else changes: the address is not marked failed in Stats or
// NotReadyError, it keeps its place, and the connector stays Ready.
func TestCallerDeadlineDuringDialKeepsReady(t *testing.T) {
	srv := server(t)
	forEachBackend(t, func(t *testing.T, b backendCase) {
		gate := newGateListener(t, net.JoinHostPort(srv.Host(), strconv.Itoa(srv.Port())))
		dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=30",
			gate.port, pgtest.TrustUser, pgtest.Database)
		db := openT(t, b, dsn)
		readyT(t, db, 10*time.Second)
		db.SetMaxIdleConns(0) // every query dials
		var one int
		if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		c := ConnectorOf(db)
		before := settledStats(t, c)

		gate.shut()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		cancel()
		took := time.Since(start)
		if err == nil {
			t.Fatal("a query through a gate that answers no SYN succeeded")
		}
		if took > 3*time.Second {
			t.Errorf("the caller's 300ms deadline returned after %v", took)
		}
		time.Sleep(50 * time.Millisecond) // anything asynchronous settles
		after := c.Stats()
		if after.State != StateReady || after.StateChanges != before.StateChanges {
			t.Errorf("state %v after the caller's own deadline (changes %d → %d): %v", after.State, before.StateChanges, after.StateChanges, after.LastError)
		}
		for _, a := range after.Addrs {
			if a.Status == "failed" || a.Status == "evicted" || a.LastError != nil {
				t.Errorf("address after the caller's own deadline: %+v, want not failed", a)
			}
		}
		if after.Evictions != before.Evictions {
			t.Errorf("Evictions %d → %d", before.Evictions, after.Evictions)
		}
		if c.book.isBad(netipAddrPort(t, "127.0.0.1", gate.port)) {
			t.Error("the address is marked bad (tried last) for the caller's own deadline")
		}
		t.Logf("query failed after %v: %v", took.Round(time.Millisecond), err)
	})
}

func netipAddrPort(t *testing.T, ip string, port int) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}

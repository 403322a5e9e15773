//go:build linux

package pgfast

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgfast/pgfast/internal/pgtest"
)

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
	err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if err == nil {
		err = unix.Listen(fd, 0) // backlog 0: one queued connection, then SYNs are dropped
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
		// Use up the warm connections, so that the query below must dial
		// through the shut gate. A query that dials wakes the connector,
		// which may then dial a replacement; a query served from a warm
		// connection wakes nothing. Stop when no replacement comes.
		for tries := 0; ; tries++ {
			for deadline := time.Now().Add(2 * time.Second); c.Stats().WarmIdle == 0 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if c.Stats().WarmIdle == 0 {
				break
			}
			if tries == 5 {
				t.Fatalf("%d warm connections still replaced after %d queries", c.Stats().WarmIdle, tries+1)
			}
			if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
				t.Fatal(err)
			}
		}
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
			if a.Status == "failed" || a.Status == "evicted" || a.Err != nil {
				t.Errorf("address after the caller's own deadline: %+v, want not failed", a)
			}
		}
		if after.Evictions != before.Evictions {
			t.Errorf("Evictions %d → %d", before.Evictions, after.Evictions)
		}
		if c.book.IsBad(netipAddrPort(t, "127.0.0.1", gate.port)) {
			t.Error("the address is marked bad (tried last) for the caller's own deadline")
		}
		t.Logf("query failed after %v: %v", took.Round(time.Millisecond), err)
	})
}

package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/testkit"
)

// TestDialUnixSocketIsTracked: the dialer's unix socket carries the same
// write count as its TCP sockets (what noRetry reads to know that a
// statement left), has the checkout's liveness check, and its I/O errors,
// with no address in the book, judge nothing and panic nowhere (the I/O
// path, the checkout, a role eviction).
func TestDialUnixSocketIsTracked(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".s.PGSQL.5432")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", path, err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()

	d := netx.NewDialer(netx.Settings{Keepalives: true, KeepalivesIdle: 10 * time.Second, TCPUserTimeout: time.Second, ConnectTimeout: time.Second}, nil)
	nc, err := d.DialContext(context.Background(), "unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var peer net.Conn
	select {
	case peer = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no accept")
	}
	if peer == nil {
		t.Fatal("accept failed")
	}

	if !netx.Tracked(nc) {
		t.Fatalf("the unix socket is not tracked: %T", nc)
	}
	if _, inBook := netx.GenOf(nc); inBook {
		t.Errorf("a unix socket has an address book entry")
	}
	if n := netx.Writes(nc); n != 0 {
		t.Errorf("writes before any Write: %d", n)
	}
	if _, err := nc.Write([]byte("Q")); err != nil {
		t.Fatal(err)
	}
	if n := netx.Writes(nc); n != 1 {
		t.Errorf("writes after one Write: %d, want 1", n)
	}
	if ok, why := netx.SocketState(nc); !ok {
		t.Errorf("liveness check on an open unix socket: dead (%v)", why)
	}

	// The server goes away; the MSG_PEEK check (internal/netx/sys_linux.go) sees it.
	peer.Close()
	if runtime.GOOS == "linux" {
		if !testkit.WaitFor(5*time.Second, func() bool { ok, _ := netx.SocketState(nc); return !ok }) {
			t.Error("liveness check still says alive after the peer closed")
		}
		if err := netx.Checkout(context.Background(), nc); !errors.Is(err, driver.ErrBadConn) {
			t.Errorf("checkout after the peer closed: %v, want driver.ErrBadConn", err)
		}
	}
	// EPIPE or a reset on the I/O path: classified, evicts nothing.
	buf := make([]byte, 1)
	_, _ = nc.Read(buf)
	_, _ = nc.Write([]byte("Q"))
	(&Connector{}).evictSocket(nc, errors.New("role"))
	if err := nc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := nc.Close(); err == nil {
		t.Error("second Close succeeded")
	}
}

// TestPQNoRetryWithoutWriteCount: a statement on a socket pgfast cannot count
// the writes of is never handed back to database/sql for a retry: nobody can
// tell that nothing of it left.
func TestPQNoRetryWithoutWriteCount(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for name, sock := range map[string]net.Conn{"nil": nil, "untracked": a} {
		pc := &PQConn{sock: sock}
		if got := pc.noRetry(netx.Writes(sock), driver.ErrBadConn); got != ErrConnLost {
			t.Errorf("%s socket: %v, want ErrConnLost", name, got)
		}
		other := errors.New("other")
		if got := pc.noRetry(netx.Writes(sock), other); got != other {
			t.Errorf("%s socket: other error changed: %v", name, got)
		}
	}
}

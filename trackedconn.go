package pgfast

import (
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

// trackedConn is a socket pgfast's dialer made, registered in its address's
// generation. It sees every one of the socket's I/O errors and has each
// classified (classify.go): connection-level evidence drops the connection
// and checks its siblings, host-level evidence evicts the address. While a
// Read or Write is in progress the dead-peer watcher (deadpeer.go) looks at
// it.
type trackedConn struct {
	net.Conn
	book    *addrBook
	addr    netip.AddrPort
	gen     uint64
	swept   atomic.Bool // the siblings were checked after this socket's first connection-level error
	doomed  atomic.Bool // evicted softly: dropped at its next checkout
	evicted atomic.Bool // shut down by an eviction
	closed  atomic.Bool // Close ran
	peek    *peeker     // the liveness check, nil when the socket has no fd
	// inIO counts the Read and Write calls in progress: the watcher looks
	// only at sockets waiting for the peer.
	inIO atomic.Int32
	// window is the dead-peer detection window (set before the socket is
	// registered with the watcher).
	window time.Duration
	// silence is the watcher's state for this socket (its goroutine only).
	silence silence
	// writes counts Write calls that sent at least one byte: an adapter
	// compares it before and after a call to know whether any byte of a
	// statement left (then the statement must never be run again).
	writes atomic.Uint64
	// recent lets a checkout skip its system call right after a reply
	// (recentread.go).
	recent readRecency
}

// trackUnix wraps a unix socket pgfast's dialer made. It has no TCP address,
// so it has no entry in the address book (book is nil): its I/O errors evict
// nothing and check no siblings (a local socket has no path that can fail
// apart from the server; the next dial decides), and the dead-peer watcher,
// which reads TCP_INFO, never looks at it. What it shares with a TCP socket is
// the write count (a statement whose bytes left is never run again) and the
// liveness check at checkout.
func trackUnix(nc net.Conn) *trackedConn {
	tc := &trackedConn{Conn: nc}
	if rc, ok := rawConnOf(nc); ok {
		tc.peek = newPeeker(rc)
	}
	return tc
}

// NetConn returns the underlying socket.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

func (c *trackedConn) Read(p []byte) (int, error) {
	c.inIO.Add(1)
	n, err := c.Conn.Read(p)
	c.inIO.Add(-1)
	if err != nil {
		return n, c.ioError(err)
	}
	if n > 0 {
		c.recent.reads.Add(1)
	}
	return n, nil
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.inIO.Add(1)
	n, err := c.Conn.Write(p)
	c.inIO.Add(-1)
	if n > 0 {
		c.writes.Add(1)
	}
	if err != nil {
		err = c.ioError(err)
	}
	return n, err
}

// ioError reports err to the book, and turns any error of a socket pgfast shut
// down into errConnEvicted.
func (c *trackedConn) ioError(err error) error {
	if c.evicted.Load() {
		return errConnEvicted
	}
	c.failed(err)
	return err
}

// Close closes the socket and takes it out of the book (once, however often
// the driver calls it).
func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.book != nil {
			c.book.untrack(c)
		}
		deadPeers.remove(c)
	}
	return c.Conn.Close()
}

// shutdown closes the socket under whoever uses it: blocked reads and writes
// return at once, with errConnEvicted. That error is a timeout, which the
// drivers report to the caller: pgx takes "use of closed network connection"
// for a connection that never sent the statement and database/sql would run
// it again on another connection, a duplicate write.
func (c *trackedConn) shutdown() {
	c.evicted.Store(true)
	_ = c.Conn.SetDeadline(time.Unix(1, 0))
	_ = c.Conn.Close()
}

// errConnEvicted is the I/O error of a socket pgfast shut down.
var errConnEvicted error = evictedConnError{}

type evictedConnError struct{}

func (evictedConnError) Error() string   { return "pgfast: connection shut down: its server was evicted" }
func (evictedConnError) Timeout() bool   { return true }
func (evictedConnError) Temporary() bool { return false }

// Is makes it match os.ErrDeadlineExceeded, as the deadline it stands for.
func (evictedConnError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// failed acts on every I/O error of the socket (not only the first): the
// verdict depends on the error and the socket's TCP state alone.
func (c *trackedConn) failed(err error) {
	if c.book == nil {
		return // a unix socket: no address to judge (trackUnix)
	}
	switch classify(err, c.tcpInfo, c.window) {
	case hostLevel:
		c.book.evict(c.addr, c.gen, err, evictDead)
	case connLevel:
		// The server closed or reset this connection (restart, terminated
		// backend, idle timeout): close its siblings that are dead too,
		// keep the rest. Once per socket: the check is the same each time.
		if c.swept.CompareAndSwap(false, true) {
			c.book.sweep(c.addr, c)
		}
	}
}

// tcpInfo reads the socket's TCP_INFO for the classifier.
func (c *trackedConn) tcpInfo() (tcpSample, bool) { return tcpInfoOf(c) }

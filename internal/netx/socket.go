package netx

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// trackedConn is a socket pgfast's dialer made, registered in its address's
// generation. Each I/O error is classified: connection-level drops it and
// sweeps siblings, host-level evicts the address. The dead-peer watcher looks
// at it while a Read or Write is in progress.
type trackedConn struct {
	net.Conn
	book    *Book
	addr    netip.AddrPort
	gen     uint64
	swept   atomic.Bool // the siblings were checked after this socket's first connection-level error
	doomed  atomic.Bool // evicted softly: dropped at its next checkout
	evicted atomic.Bool // shut down by an eviction
	closed  atomic.Bool // Close ran
	// retired: a drain is replacing it (Retire): not alive, so it is
	// dropped at its release or at a checkout that may refuse it.
	retired atomic.Bool
	// unixBook lists a unix socket (no address entry) until it closes.
	unixBook *Book
	peek     *peeker // the liveness check, nil when the socket has no fd
	// inIO counts Read and Write calls in progress (for the watcher);
	// writing counts the Writes among them.
	inIO, writing atomic.Int32
	// window is the dead-peer window, keepIdle the keep-alive idle time
	// (zero: no keep-alive probes, or the OS's), both set before watcher
	// registration.
	window, keepIdle time.Duration
	// lookIO and lookWrites are inIO and writes at the watcher's last
	// look (its goroutine only): a doze begins only if neither moved.
	lookIO     int32
	lookWrites uint64
	// replied: data was read since the last Write began (cleared before
	// it writes); with the kernel's clocks (answered) it says the peer
	// answered, and a Read waiting then waits for nothing asked for.
	replied atomic.Bool
	// watcher is the dead-peer watcher the socket is registered with (set
	// at registration, before the socket is used; nil: none).
	watcher *peerWatcher
	// silence is the watcher's state for this socket (its goroutine only).
	silence silence
	// suspicion is the corroboration of its current silence, if any.
	suspicion atomic.Pointer[corroboration]
	// shutCause, when set, is what I/O on a shut-down socket returns
	// instead of errConnEvicted.
	shutCause atomic.Pointer[error]
	// writes counts Writes that sent a byte: once a statement's bytes left
	// it must never be run again.
	writes atomic.Uint64
	// recent lets a checkout skip its system call right after a reply.
	recent readRecency
	// attempt is the admission slot whose deadline the socket carries
	// until its login ends (admission.go); nil after.
	attempt atomic.Pointer[slot]
	// heard is its address's process-wide clock (evidence.go), nil without
	// an address; heardMark is its handshake's mark there.
	heard     *heardCell
	heardMark uint64
}

// trackUnix wraps a unix socket. With no TCP address it has no book entry
// (its errors evict nothing; a local socket has no path that fails apart from
// the server) and no watcher; it keeps the write count and the checkout check.
func trackUnix(nc net.Conn) *trackedConn {
	tc := &trackedConn{Conn: nc}
	if rc, ok := rawConnOf(nc); ok {
		tc.peek = newPeeker(rc)
	}
	return tc
}

func (c *trackedConn) NetConn() net.Conn { return c.Conn }

func (c *trackedConn) Read(p []byte) (int, error) {
	c.inIO.Add(1)
	if w := c.watcher; w != nil && w.parked.Load() {
		w.wake()
	}
	n, err := c.Conn.Read(p)
	c.inIO.Add(-1)
	if err != nil {
		return n, c.ioError(err)
	}
	if n > 0 {
		if !c.replied.Load() {
			c.replied.Store(true)
		}
		c.recent.reads.Add(1)
		if c.heard != nil {
			c.heard.read()
		}
	}
	return n, nil
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.inIO.Add(1)
	c.writing.Add(1)
	if w := c.watcher; w != nil && w.parked.Load() {
		w.wake()
	}
	if len(p) > 0 && c.replied.Load() {
		// Before the write, not after it returns: on a fast path the reply
		// can reach a Read waiting beside it (pgx's background reader)
		// before this Write returns, and clearing replied then marked an
		// answered request as unanswered for good (1,000 idle tenants kept
		// the watcher ticking: 0.4 % of a core).
		c.replied.Store(false)
	}
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.writes.Add(1)
	}
	c.writing.Add(-1)
	c.inIO.Add(-1)
	if err != nil {
		err = c.ioError(err)
	}
	return n, err
}

// ioError reports err to the book; any error of a socket pgfast shut down
// becomes errConnEvicted.
func (c *trackedConn) ioError(err error) error {
	if c.evicted.Load() {
		if p := c.shutCause.Load(); p != nil {
			return *p
		}
		return errConnEvicted
	}
	err = c.attemptExpired(err)
	c.failed(err)
	return err
}

// Close closes the socket and untracks it (once).
func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		if c.book != nil {
			var heard time.Time // when the server was last heard, for the path's witnesses
			if !c.evicted.Load() {
				if s, ok := tcpInfoOf(c); ok {
					heard = time.Now().Add(-s.heard())
				}
			}
			c.book.untrack(c, heard)
		}
		if c.unixBook != nil {
			c.unixBook.untrackUnix(c)
		}
		if c.watcher != nil {
			c.watcher.remove(c)
		}
		if s := c.attempt.Swap(nil); s != nil {
			s.unref()
		}
	}
	return c.Conn.Close()
}

// shutdown closes the socket under its user: blocked I/O returns errConnEvicted,
// a timeout. pgx takes "use of closed network connection" for a statement
// never sent, and database/sql would run it again elsewhere: a duplicate write.
func (c *trackedConn) shutdown() {
	c.evicted.Store(true)
	_ = c.Conn.SetDeadline(time.Unix(1, 0))
	_ = c.Conn.Close()
}

// shutdownWith shuts the socket down as shutdown does, its user's I/O
// failing with cause (which must match errConnEvicted) rather than the
// eviction's.
func (c *trackedConn) shutdownWith(cause error) {
	c.shutCause.Store(&cause)
	c.shutdown()
}

var errConnEvicted error = evictedConnError{}

type evictedConnError struct{}

func (evictedConnError) Error() string   { return "pgfast: connection shut down: its server was evicted" }
func (evictedConnError) Timeout() bool   { return true }
func (evictedConnError) Temporary() bool { return false }

// Is matches os.ErrDeadlineExceeded, the deadline it stands for.
func (evictedConnError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// failed acts on every I/O error, not only the first: the verdict depends on
// the error and TCP state alone.
func (c *trackedConn) failed(err error) { c.judge(err) }

// judge acts on one piece of evidence from I/O: host-level is corroborated
// (verdict.go) and, confirmed, evicts the generation (the connector goes
// Down); connection-level (restart, terminated backend, idle timeout) closes
// the siblings that are dead too, once per socket.
func (c *trackedConn) judge(err error) {
	if c.book == nil {
		return // a unix socket: no address to judge (trackUnix)
	}
	switch classify(err, c.tcpInfo, c.window) {
	case hostLevel:
		verdicts.judgeNow(c, err, true, func() {
			c.book.evict(c.addr, c.gen, err, evictDead)
		})
	case connLevel:
		c.sweepOnce()
	}
}

// sweepOnce closes the siblings the liveness check finds dead, after this
// socket's first connection-level error.
func (c *trackedConn) sweepOnce() {
	if c.swept.CompareAndSwap(false, true) {
		c.book.sweep(c.addr, c)
	}
}

func (c *trackedConn) tcpInfo() (tcpSample, bool) { return tcpInfoOf(c) }

// Finding pgfast's socket or fd under a driver's net.Conn (TLS and NetConn
// layers unwrapped).

// rawConnOf returns the syscall.RawConn under a connection pgfast's dialer made.
func rawConnOf(nc net.Conn) (syscall.RawConn, bool) {
	for i := 0; i < 8; i++ {
		switch c := nc.(type) {
		case *tls.Conn:
			nc = c.NetConn()
			continue
		case *trackedConn:
			nc = c.Conn
			continue
		case syscall.Conn:
			rc, err := c.SyscallConn()
			return rc, err == nil
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
			continue
		}
		return nil, false
	}
	return nil, false
}

// trackedOf finds pgfast's wrapper under nc (TLS unwrapped).
func trackedOf(nc net.Conn) *trackedConn {
	for i := 0; i < 8 && nc != nil; i++ {
		switch c := nc.(type) {
		case *trackedConn:
			return c
		case *tls.Conn:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// Writes returns how many Write calls on nc (pgfast's socket, possibly under
// TLS) sent bytes, or 0 for another socket.
func Writes(nc net.Conn) uint64 {
	if tc := trackedOf(nc); tc != nil {
		return tc.writes.Load()
	}
	return 0
}

func socketConnOf(c net.Conn) (syscall.RawConn, error) {
	const maxDepth = 8 // guards against a NetConn that returns itself
	for range maxDepth {
		if sc, ok := c.(syscall.Conn); ok {
			return sc.SyscallConn()
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok || w.NetConn() == nil {
			break
		}
		c = w.NetConn()
	}
	return nil, fmt.Errorf("pgfast: reading socket options: %T does not expose a socket", c)
}

// Tracked reports whether nc is (or wraps, under TLS) a socket pgfast's
// dialer made.
func Tracked(nc net.Conn) bool { return trackedOf(nc) != nil }

// Doom marks nc, pgfast's socket, to be dropped at its next checkout.
func Doom(nc net.Conn) {
	if tc := trackedOf(nc); tc != nil {
		tc.doomed.Store(true)
	}
}

// Retire marks nc, pgfast's socket, as being replaced by a drain: Alive and
// ReadSinceCheck report false from then on (the checkout itself leaves the
// decision to the connector: see Retired).
func Retire(nc net.Conn) {
	if tc := trackedOf(nc); tc != nil {
		tc.retired.Store(true)
	}
}

// Retired reports whether nc is pgfast's socket and was retired.
func Retired(nc net.Conn) bool {
	tc := trackedOf(nc)
	return tc != nil && tc.retired.Load()
}

// Gone reports whether nc, pgfast's socket, no longer holds a server
// session: closed by its user, or shut down by an eviction.
func Gone(nc net.Conn) bool {
	tc := trackedOf(nc)
	return tc == nil || tc.closed.Load() || tc.evicted.Load()
}

// Gen names the generation of a socket's address: what an eviction or role
// verification is about.
type Gen struct {
	Addr netip.AddrPort
	gen  uint64
	book *Book
}

// GenOf returns the generation of nc's address; false when nc is not a
// socket pgfast's dialer made with a book.
func GenOf(nc net.Conn) (Gen, bool) {
	tc := trackedOf(nc)
	if tc == nil || tc.book == nil {
		return Gen{}, false
	}
	return Gen{Addr: tc.addr, gen: tc.gen, book: tc.book}, true
}

// EvictRole evicts g because its server no longer has the role asked for.
// It reports whether it evicted: false once g is not current.
func (g Gen) EvictRole(cause error) bool { return g.book.evict(g.Addr, g.gen, cause, evictRole) }

// SocketOptions are the TCP options read back from a socket with getsockopt.
type SocketOptions struct {
	Keepalive          bool          // SO_KEEPALIVE
	KeepalivesIdle     time.Duration // TCP_KEEPIDLE
	KeepalivesInterval time.Duration // TCP_KEEPINTVL
	KeepalivesCount    int           // TCP_KEEPCNT
	TCPUserTimeout     time.Duration // TCP_USER_TIMEOUT; 0 means not set
}

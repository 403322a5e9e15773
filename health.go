package pgfast

import (
	"context"
	"crypto/tls"
	"database/sql/driver"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// addrBook is a connector's view of the server addresses it has dialled: each
// address's latest outcome, its generation, and the sockets of the current
// generation. Evicting an address bumps its generation and shuts down every
// socket of the old one at once, so that in-flight queries fail immediately
// instead of each waiting out its own timer, and marks the address to be
// tried last until it is seen alive again.
type addrBook struct {
	mu    sync.Mutex
	addrs map[netip.AddrPort]*addrEntry
	hosts map[string][]netip.AddrPort // "host:port" → its latest resolution

	evictions atomic.Int64
	// onEvict is told about every eviction (once per generation), outside
	// the lock.
	onEvict func(addr netip.AddrPort, cause error, how eviction)
}

// eviction says how an address's old generation goes.
type eviction struct {
	// down: the address is believed unusable now, so the connector goes
	// Down (callers fail fast) and probes.
	down bool
	// soft: the old sockets are doomed rather than shut down: each is
	// dropped at its next checkout, so queries in flight on a server that is
	// still healthy (a DNS change) finish.
	soft bool
}

var (
	evictDead  = eviction{down: true} // current evidence the host is unreachable
	evictStale = eviction{}           // a socket found dead at checkout: old evidence
	evictMoved = eviction{soft: true} // DNS no longer lists the address
	// evictRole: the server answers but no longer has the role asked for;
	// fresh dials validate target_session_attrs and find another server.
	evictRole = eviction{}
)

// addrEntry is one address's state.
type addrEntry struct {
	host    string
	gen     uint64
	pending int                       // attempts in flight
	since   time.Time                 // when the oldest pending attempt started, or the last outcome
	err     error                     // latest failure; nil after a success
	bad     bool                      // evicted or failing: tried last until seen alive
	verify  bool                      // a role verification is running
	conns   map[*trackedConn]struct{} // open sockets of the current generation
	sockets int                       // open sockets of any generation
}

func newAddrBook() *addrBook {
	return &addrBook{addrs: make(map[netip.AddrPort]*addrEntry), hosts: make(map[string][]netip.AddrPort)}
}

// entry returns addr's entry, creating it. The caller holds b.mu.
func (b *addrBook) entry(addr netip.AddrPort) *addrEntry {
	e := b.addrs[addr]
	if e == nil {
		e = &addrEntry{conns: make(map[*trackedConn]struct{})}
		b.addrs[addr] = e
	}
	return e
}

// resolved records host's latest answer (the targets carry the port).
func (b *addrBook) resolved(host, port string, targets []netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hosts[net.JoinHostPort(host, port)] = slices.Clone(targets)
	for _, t := range targets {
		b.entry(t).host = host
	}
	if len(targets) > 0 {
		b.pruneLocked(host, targets[0].Port(), func(a netip.AddrPort) bool { return slices.Contains(targets, a) })
	}
}

// prune forgets the addresses of host:port that its latest resolution no
// longer lists (listed reports which it does) once nothing refers to them:
// no attempt in flight, no open socket of any generation, no verification.
// A process whose DNS name moves from address to address for months keeps
// only the addresses it can still use or still has sockets to. A forgotten
// address that comes back starts afresh, as one never seen.
func (b *addrBook) prune(host string, port uint16, listed func(netip.AddrPort) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked(host, port, listed)
}

func (b *addrBook) pruneLocked(host string, port uint16, listed func(netip.AddrPort) bool) {
	for addr, e := range b.addrs {
		if e.host == host && addr.Port() == port && !listed(addr) &&
			e.pending == 0 && e.sockets == 0 && !e.verify {
			delete(b.addrs, addr)
		}
	}
}

// preferHealthy reorders targets so that addresses known to be bad come
// last, keeping the order otherwise (a stable partition).
func (b *addrBook) preferHealthy(targets []netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	slices.SortStableFunc(targets, func(x, y netip.AddrPort) int {
		return boolRank(b.isBad(x)) - boolRank(b.isBad(y))
	})
}

func (b *addrBook) isBad(addr netip.AddrPort) bool {
	e := b.addrs[addr]
	return e != nil && e.bad
}

func boolRank(v bool) int {
	if v {
		return 1
	}
	return 0
}

// attemptStarted records a connection attempt to addr.
func (b *addrBook) attemptStarted(addr netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(addr)
	if e.pending == 0 {
		e.since = time.Now()
	}
	e.pending++
}

// attemptDone records an attempt's outcome; a success is tracked and
// returned wrapped so the book sees the socket's I/O errors.
func (b *addrBook) attemptDone(addr netip.AddrPort, nc net.Conn, err error) net.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(addr)
	e.pending--
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			e.err, e.bad, e.since = err, true, time.Now()
		}
		return nil
	}
	e.err, e.bad, e.since = nil, false, time.Now()
	e.sockets++
	tc := &trackedConn{Conn: nc, book: b, addr: addr, gen: e.gen}
	if rc, ok := rawConnOf(nc); ok {
		tc.peek = newPeeker(rc)
	}
	e.conns[tc] = struct{}{}
	return tc
}

// attemptAbandoned records an attempt the caller gave up on (its context
// was cancelled or reached its deadline before the attempt's own
// connect_timeout): it says nothing about the server, so the address keeps
// its status.
func (b *addrBook) attemptAbandoned(addr netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.entry(addr).pending--
}

// evict bumps addr's generation if it is still gen, and shuts down (or, soft,
// dooms) every socket of the old generation. It reports whether it evicted.
func (b *addrBook) evict(addr netip.AddrPort, gen uint64, cause error, how eviction) bool {
	b.mu.Lock()
	e := b.addrs[addr]
	if e == nil || e.gen != gen {
		b.mu.Unlock()
		return false
	}
	e.gen++
	e.bad, e.err, e.since = true, cause, time.Now()
	old := e.conns
	e.conns = make(map[*trackedConn]struct{})
	b.mu.Unlock()

	b.evictions.Add(1)
	for tc := range old {
		if how.soft {
			tc.doomed.Store(true)
		} else {
			tc.shutdown()
		}
	}
	if b.onEvict != nil {
		b.onEvict(addr, cause, how)
	}
	return true
}

// evictWhere evicts every address with open sockets that match.
func (b *addrBook) evictWhere(cause error, how eviction, match func(netip.AddrPort, *addrEntry) bool) {
	type victim struct {
		addr netip.AddrPort
		gen  uint64
	}
	var victims []victim
	b.mu.Lock()
	for addr, e := range b.addrs {
		if len(e.conns) > 0 && match(addr, e) {
			victims = append(victims, victim{addr, e.gen})
		}
	}
	b.mu.Unlock()
	for _, v := range victims {
		b.evict(v.addr, v.gen, cause, how)
	}
}

// sweep closes the sockets of addr that the liveness check finds dead (after
// one connection saw the server close it: a restart closes them all, a
// terminated backend only its own). The socket that saw it (seen) is left to
// its user, who gets its own error rather than a shutdown.
func (b *addrBook) sweep(addr netip.AddrPort, seen *trackedConn) {
	b.mu.Lock()
	var conns []*trackedConn
	if e := b.addrs[addr]; e != nil {
		for tc := range e.conns {
			if tc != seen {
				conns = append(conns, tc)
			}
		}
	}
	b.mu.Unlock()
	for _, tc := range conns {
		if ok, _ := socketState(tc); !ok {
			tc.shutdown()
		}
	}
}

// startVerify claims addr's role verification for generation gen.
func (b *addrBook) startVerify(addr netip.AddrPort, gen uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.addrs[addr]
	if e == nil || e.gen != gen || e.verify {
		return false
	}
	e.verify = true
	return true
}

func (b *addrBook) endVerify(addr netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.addrs[addr]; e != nil {
		e.verify = false
	}
}

// untrack forgets a socket that is closing; it runs once per socket.
func (b *addrBook) untrack(tc *trackedConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.addrs[tc.addr]; e != nil {
		delete(e.conns, tc)
		e.sockets--
	}
}

// hostBad reports whether every known address of h is bad (a host never
// dialled is not).
func (b *addrBook) hostBad(h HostPort) bool {
	name := hostKey(h)
	b.mu.Lock()
	defer b.mu.Unlock()
	addrs := b.hosts[joinHostPort(name, h.Port)]
	if len(addrs) == 0 {
		if ip, err := netip.ParseAddr(name); err == nil {
			addrs = []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), h.Port)}
			if _, known := b.addrs[addrs[0]]; !known {
				return false
			}
		}
	}
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !b.isBad(a) {
			return false
		}
	}
	return true
}

// AddrStats describes one server address a connector has dialled.
type AddrStats struct {
	Addr       string    // ip:port
	Host       string    // the host name it was resolved from, if any
	Generation uint64    // bumped by every eviction
	Status     string    // "up", "pending", "failed" or "evicted"
	OpenConns  int       // sockets of the current generation
	LastError  error     // the latest failure, nil after a success
	Since      time.Time // when the status began
}

// stats lists every address, in address order.
func (b *addrBook) stats() []AddrStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]AddrStats, 0, len(b.addrs))
	for addr, e := range b.addrs {
		st := "up"
		switch {
		case e.pending > 0 && len(e.conns) == 0 && e.err == nil:
			st = "pending"
		case e.bad && e.gen > 0 && len(e.conns) == 0:
			st = "evicted"
		case e.err != nil:
			st = "failed"
		}
		out = append(out, AddrStats{Addr: addr.String(), Host: e.host, Generation: e.gen, Status: st,
			OpenConns: len(e.conns), LastError: e.err, Since: e.since})
	}
	slices.SortFunc(out, func(x, y AddrStats) int { return compareStrings(x.Addr, y.Addr) })
	return out
}

// progress describes each address's latest outcome for an error message,
// including attempts still in flight.
func (b *addrBook) progress(now time.Time) []AddrStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []AddrStatus
	for addr, e := range b.addrs {
		switch {
		case e.pending > 0:
			out = append(out, AddrStatus{Addr: addr.String(), Err: &pendingError{since: now.Sub(e.since), last: e.err}})
		case e.err != nil:
			out = append(out, AddrStatus{Addr: addr.String(), Err: e.err})
		}
	}
	slices.SortFunc(out, func(x, y AddrStatus) int { return compareStrings(x.Addr, y.Addr) })
	return out
}

func compareStrings(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// pendingError stands for an attempt that has not answered yet.
type pendingError struct {
	since time.Duration
	last  error
}

func (e *pendingError) Error() string {
	s := "no answer yet after " + e.since.Round(time.Millisecond).String()
	if e.last != nil {
		s += " (before: " + e.last.Error() + ")"
	}
	return s
}

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
		c.book.untrack(c)
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

// errServerClosing is what the liveness check reports when an idle
// connection has an ErrorResponse waiting: the server is terminating it.
var errServerClosing = errors.New("server is closing the connection")

// rawConnOf returns the syscall.RawConn under a connection pgfast's dialer
// made, unwrapping TLS and pgfast's own wrapper.
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

// writesOf returns how many Write calls on nc (a socket pgfast's dialer
// made, possibly under TLS) sent bytes so far, or 0 for another socket.
func writesOf(nc net.Conn) uint64 {
	if tc := trackedOf(nc); tc != nil {
		return tc.writes.Load()
	}
	return 0
}

// errEvicted is the liveness check's answer for a socket evicted softly.
var errEvicted = errors.New("connection evicted")

// socketState is the liveness check on nc: alive, or dead and why.
func socketState(nc net.Conn) (bool, error) {
	if nc == nil {
		return true, nil
	}
	if tc := trackedOf(nc); tc != nil {
		if tc.doomed.Load() {
			return false, errEvicted
		}
		if tc.peek != nil {
			return tc.peek.state()
		}
	}
	rc, ok := rawConnOf(nc)
	if !ok {
		return true, nil
	}
	return peekState(rc)
}

// alive reports whether nc still looks usable, without any I/O on the wire
// (and without a system call while the connection is in steady use:
// recentread.go).
func alive(nc net.Conn) bool {
	if inUse(nc) {
		return true
	}
	ok, _ := socketState(nc)
	return ok
}

// checkout is run by database/sql (through the backend's ResetSession) before
// it reuses a connection: a dead socket is driver.ErrBadConn, so database/sql
// drops the connection and retries on another. A socket the kernel killed
// for a silent peer (keepalive, TCP_USER_TIMEOUT without recent ACKs) evicts
// its whole address: its siblings died the same way. A reset or EOF drops the
// connection and the siblings that are dead too. That is old evidence (the socket may have
// died while the pool sat idle through a blip that is over), so the connector
// stays Ready and the retry's fresh dial decides whether the server is down.
// A connection that read its server's reply within the last
// recentReadWindow skips the system call (recentread.go).
func checkout(_ context.Context, nc net.Conn) error {
	if inUse(nc) {
		return nil
	}
	ok, why := socketState(nc)
	if ok {
		return nil
	}
	if tc := trackedOf(nc); tc != nil && why != nil && why != errEvicted {
		switch classify(why, tc.tcpInfo, tc.window) {
		case hostLevel:
			tc.book.evict(tc.addr, tc.gen, why, evictStale)
		case connLevel:
			if tc.swept.CompareAndSwap(false, true) {
				tc.book.sweep(tc.addr, tc)
			}
		}
	}
	return driver.ErrBadConn
}

// orderHosts returns the order in which to try hosts, as indexes into hosts:
// shuffled for load_balance_hosts=random, then hosts whose every address is
// bad last, so that no connection pays a dead host's timeout first.
func (b *addrBook) orderHosts(hosts []HostPort, random bool) []int {
	order := make([]int, len(hosts))
	for i := range order {
		order[i] = i
	}
	if random {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return boolRank(b.hostBad(hosts[x])) - boolRank(b.hostBad(hosts[y]))
	})
	return order
}

// hostKey is the name the dialer sees for a host (its hostaddr when given).
func hostKey(h HostPort) string {
	if h.Addr != "" {
		return h.Addr
	}
	return h.Host
}

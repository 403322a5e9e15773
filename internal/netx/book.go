package netx

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Book is a connector's view of the addresses it has dialled: each one's
// latest outcome, generation and current sockets. Evicting an address bumps
// its generation and shuts down all its old sockets at once, so in-flight
// queries fail now rather than each waiting out its own timer.
type Book struct {
	mu    sync.Mutex
	addrs map[netip.AddrPort]*addrEntry
	hosts map[string][]netip.AddrPort // "host:port" → its latest resolution

	evictions atomic.Int64
	// onEvict is called outside the lock (NewBook's callback).
	onEvict func(addr netip.AddrPort, cause error, how eviction)
	// noPeek: see SetNoPeek.
	noPeek bool

	// view, when set, shares this book's host-level verdicts with the
	// other books of the view and tells it theirs (SetView).
	view *View
	// onAlive is told (outside every lock) when the view's pulse found a
	// dead address alive again (SetOnAlive).
	onAlive func(addr netip.AddrPort)
	// connectTimeout is the dialer's, for the view's pulse (SetBook).
	connectTimeout time.Duration
	// closed: Close ran; the book subscribes to nothing any more.
	closed bool
	// unix lists the open unix sockets, which have no address entry (for
	// Sockets).
	unix map[*trackedConn]struct{}
}

// eviction says how an address's old generation goes.
type eviction struct {
	// down: the connector goes Down (callers fail fast) and probes.
	down bool
	// soft: old sockets are dropped at their next checkout, so queries in
	// flight on a still-healthy server (a DNS change) finish.
	soft bool
}

var (
	evictDead  = eviction{down: true} // current evidence the host is unreachable
	evictStale = eviction{}           // old evidence, no Down (Evict in testhooks.go)
	evictMoved = eviction{soft: true} // DNS no longer lists the address
	// evictRole: the server answers but lost the role asked for.
	evictRole = eviction{}
)

type addrEntry struct {
	host    string
	gen     uint64
	pending int // attempts in flight
	// connecting: the attempts still in connect(), each with what aborts
	// it: a dead verdict fails them at once (abortConnectsLocked).
	connecting map[*connecting]struct{}
	since      time.Time // when the oldest pending attempt started, or the last outcome
	err        error     // latest failure; nil after a success
	bad        bool      // evicted or failing: tried last until seen alive
	// unreachableAt: when last evicted as unreachable (zero after a success).
	unreachableAt time.Time
	// slow: an attempt was given up after waiting longer than the attempt
	// delay; cleared by a success.
	slow    bool
	verify  bool                      // a role verification is running
	conns   map[*trackedConn]struct{} // open sockets of the current generation
	sockets int                       // open sockets of any generation
	// srv is the view's server for the address, once resolved (nil
	// without a view).
	srv *server
	// vetoed: when a handshake last completed while a socket on this path
	// was silent: the path drops packets (pathFacts.lossy). A sibling's veto does
	// not count: the host may have died just after it was heard.
	vetoed time.Time
	// closedHeard: the latest a socket of this path, since closed, was
	// heard (its TCP_INFO at Close). A corroboration asks the open sockets;
	// on a pool whose connections live a few seconds, the ones heard during
	// a silence may be gone by its verdict, and their word with them.
	closedHeard time.Time
}

// pathLossyFor is how long a veto makes the path count as lossy.
const pathLossyFor = 5 * time.Minute

// markVetoed records that a handshake proved addr's path during a socket's
// silence.
func (b *Book) markVetoed(addr netip.AddrPort, now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.addrs[addr]; e != nil {
		e.vetoed = now
	}
}

// pathFacts is what the book remembers of addr's path beyond its open
// sockets: when a handshake last vetoed a silence on it, and the latest a
// socket of it, closed since, was heard.
type pathFacts struct{ vetoed, closedHeard time.Time }

// lossy reports whether a handshake vetoed a silence on the path lately:
// the next corroboration gets the lossy budget though its own socket saw no
// loss yet (a new connection, or one that only reads: tcpi_total_retrans
// counts the socket's own retransmissions, not the server's).
func (f pathFacts) lossy(now time.Time) bool {
	return !f.vetoed.IsZero() && now.Sub(f.vetoed) < pathLossyFor
}

func (b *Book) pathFacts(addr netip.AddrPort) pathFacts {
	if b == nil {
		return pathFacts{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.addrs[addr]; e != nil {
		return pathFacts{vetoed: e.vetoed, closedHeard: e.closedHeard}
	}
	return pathFacts{}
}

// NewBook returns an empty book. onEvict, when not nil, is told about every
// eviction, outside the book's lock and possibly on a query's I/O path.
func NewBook(onEvict func(addr netip.AddrPort, cause error, down bool)) *Book {
	b := &Book{} // its maps are made on first use: an idle tenant may never dial
	if onEvict != nil {
		b.onEvict = func(addr netip.AddrPort, cause error, how eviction) { onEvict(addr, cause, how.down) }
	}
	return b
}

// SetNoPeek makes the checkout skip the peek at this book's sockets: on a
// system without the peek (Platform.Peek), the raw driver's ping stays.
func (b *Book) SetNoPeek(noPeek bool) { b.noPeek = noPeek }

// SetView makes b share host-level verdicts through v (nil: none). Call it
// before the first dial.
func (b *Book) SetView(v *View) { b.view = v }

// SetOnAlive sets the function told, outside every lock and never on a
// query's path, that the view's pulse found addr alive again: a connector
// waiting on it tries at once. Call it before the first dial.
func (b *Book) SetOnAlive(f func(addr netip.AddrPort)) { b.onAlive = f }

// Close unsubscribes b from every server of its view; a closed book
// subscribes to nothing more. Its sockets stay tracked until they close.
func (b *Book) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, e := range b.addrs {
		if e.srv != nil {
			b.view.unsubscribe(e.srv, b)
			e.srv = nil
		}
	}
}

// watcher is the dead-peer watcher of b's sockets: its view's.
func (b *Book) watcher() *peerWatcher {
	if b.view != nil {
		return b.view.watcher
	}
	return deadPeers
}

// Evictions returns how many address generations the book evicted.
func (b *Book) Evictions() int64 { return b.evictions.Load() }

// entry returns addr's entry, creating it. The caller holds b.mu.
func (b *Book) entry(addr netip.AddrPort) *addrEntry {
	e := b.addrs[addr]
	if e == nil {
		e = &addrEntry{conns: make(map[*trackedConn]struct{})}
		if b.addrs == nil {
			b.addrs = make(map[netip.AddrPort]*addrEntry)
		}
		b.addrs[addr] = e
	}
	return e
}

func (b *Book) resolved(host, port string, targets []netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hosts == nil {
		b.hosts = make(map[string][]netip.AddrPort)
	}
	b.hosts[net.JoinHostPort(host, port)] = slices.Clone(targets)
	for _, t := range targets {
		e := b.entry(t)
		e.host = host
		if e.srv == nil && b.view != nil && !b.closed {
			e.srv = b.view.subscribe(t, b) // View.mu is a leaf lock
		}
	}
	if len(targets) > 0 {
		b.pruneLocked(host, targets[0].Port(), func(a netip.AddrPort) bool { return slices.Contains(targets, a) })
	}
}

// prune forgets the addresses of host:port no longer listed once nothing
// refers to them (no attempt, socket or verification), so a name that moves
// from address to address for months keeps only what it can still use.
func (b *Book) prune(host string, port uint16, listed func(netip.AddrPort) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked(host, port, listed)
}

func (b *Book) pruneLocked(host string, port uint16, listed func(netip.AddrPort) bool) {
	for addr, e := range b.addrs {
		if e.host == host && addr.Port() == port && !listed(addr) &&
			e.pending == 0 && e.sockets == 0 && !e.verify {
			delete(b.addrs, addr)
			if e.srv != nil {
				b.view.unsubscribe(e.srv, b)
			}
		}
	}
}

// preferHealthy stably reorders targets: clean addresses first, then those
// whose latest attempt went unanswered longer than slow (likely a SYN into a
// blackhole), then known-bad ones. Every address is still raced; this only
// decides who gets the head start.
func (b *Book) preferHealthy(targets []netip.AddrPort, now time.Time, slow time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rank := func(a netip.AddrPort) int {
		e := b.addrs[a]
		switch {
		case e == nil:
			return 0
		case e.bad:
			return 2
		case e.sockets == 0 && (e.slow || e.pending > 0 && now.Sub(e.since) > slow):
			return 1
		}
		return 0
	}
	slices.SortStableFunc(targets, func(x, y netip.AddrPort) int { return rank(x) - rank(y) })
}

func (b *Book) isBad(addr netip.AddrPort) bool {
	e := b.addrs[addr]
	return e != nil && e.bad
}

func boolRank(v bool) int {
	if v {
		return 1
	}
	return 0
}

func (b *Book) attemptStarted(addr netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(addr)
	if e.pending == 0 {
		e.since = time.Now()
	}
	e.pending++
}

// connecting is one attempt in connect(); abort fails it with the view's
// verdict as its cause.
type connecting struct{ abort context.CancelCauseFunc }

// connectStarted records c, an attempt to addr entering connect(), or
// returns the dead verdict that came since the dial passed skipDead (while
// it waited for admission or its turn in the race): it fails as a dial
// begun after the verdict.
func (b *Book) connectStarted(addr netip.AddrPort, c *connecting) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(addr)
	if e.srv != nil {
		if st := e.srv.load(); st.verdict.Dead() {
			return &unreachableError{cause: st.cause, verdict: st.verdict, aborted: true}
		}
	}
	if e.connecting == nil {
		e.connecting = make(map[*connecting]struct{})
	}
	e.connecting[c] = struct{}{}
	return nil
}

// connected forgets c: its connect() returned.
func (b *Book) connected(addr netip.AddrPort, c *connecting) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.addrs[addr]; e != nil {
		delete(e.connecting, c)
	}
}

// abortConnectsLocked fails addr's attempts still in connect() with a dead
// verdict's cause: a connect to a blackholed address begun just before the
// verdict would otherwise wait out its connect_timeout (tcp_user_timeout)
// in SYN-SENT while every dial begun after it fails at once and moves on
// to the next host.
func (e *addrEntry) abortConnectsLocked(cause error) {
	for c := range e.connecting {
		c.abort(&unreachableError{cause: cause, verdict: verdictOf(cause), aborted: true})
		delete(e.connecting, c)
	}
}

// attemptDone records an attempt's outcome; a success is returned wrapped so
// the book sees the socket's I/O errors.
func (b *Book) attemptDone(addr netip.AddrPort, nc net.Conn, err error) net.Conn {
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
	e.unreachableAt, e.slow = time.Time{}, false
	e.sockets++
	tc := &trackedConn{Conn: nc, book: b, addr: addr, gen: e.gen}
	if rc, ok := rawConnOf(nc); ok && !b.noPeek {
		tc.peek = newPeeker(rc)
	}
	e.conns[tc] = struct{}{}
	return tc
}

// attemptAbandoned records an attempt the caller gave up on (another address
// won, or the caller's context ended first): no evidence the server is down,
// but one left unanswered past the attempt delay (slow) loses the head start
// next time.
func (b *Book) attemptAbandoned(addr netip.AddrPort, slow bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(addr)
	e.pending--
	if slow {
		e.slow = true
	}
}

// evict bumps addr's generation if it is still gen, and shuts down (or, soft,
// dooms) its old sockets. It reports whether it evicted.
func (b *Book) evict(addr netip.AddrPort, gen uint64, cause error, how eviction) bool {
	if b == nil {
		return false // a unix socket's (trackUnix): no address to evict
	}
	b.mu.Lock()
	e := b.addrs[addr]
	if e == nil || e.gen != gen {
		b.mu.Unlock()
		return false
	}
	e.gen++
	e.bad, e.err, e.since = true, cause, time.Now()
	if how.down {
		e.unreachableAt = e.since
		e.abortConnectsLocked(cause)
	}
	old := e.conns
	e.conns = make(map[*trackedConn]struct{})
	srv := e.srv
	b.mu.Unlock()

	b.evictions.Add(1)
	if how.down && srv != nil {
		// A host-level verdict: every other tenant of the view learns it,
		// before the sockets are shut down: a driver closing a shut-down
		// connection dials a CancelRequest to the same address (pgx's
		// asyncClose, holding its pgxpool slot), which must fail at once
		// as a dead address's dial does, not wait out connect_timeout
		// (failover-multihost-defaults over pgxpool: Ready 10 s late).
		b.view.dead(srv, cause, b)
	}
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

// sharedDead applies another book's dead verdict about s: the current
// sockets to it are shut down (queries in flight fail at once and are never
// run again) and the connector is told, as for its own eviction.
func (b *Book) sharedDead(s *server, cause error) {
	addr, gen, ok := b.keyOf(s)
	if ok {
		b.evict(addr, gen, &sharedCause{cause: cause}, evictDead)
	}
}

// sharedAlive tells the connector that the view's pulse found s alive.
func (b *Book) sharedAlive(s *server) {
	if addr, _, ok := b.keyOf(s); ok && b.onAlive != nil {
		b.onAlive(addr)
	}
}

// keyOf finds the address (as this book spells it) subscribed to s.
func (b *Book) keyOf(s *server) (netip.AddrPort, uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for addr, e := range b.addrs {
		if e.srv == s {
			return addr, e.gen, true
		}
	}
	return netip.AddrPort{}, 0, false
}

func (b *Book) evictWhere(cause error, how eviction, match func(netip.AddrPort, *addrEntry) bool) {
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

// sweep closes addr's sockets that the liveness check finds dead after one
// saw the server close it (a restart closes all, a terminated backend one).
// seen is left to its user, who gets its own error rather than a shutdown.
func (b *Book) sweep(addr netip.AddrPort, seen *trackedConn) {
	if b == nil {
		return // a unix socket's (trackUnix): no siblings known
	}
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

// StartVerify claims g's role verification (one at a time per address
// generation); false when one runs or g is no longer current.
func (b *Book) StartVerify(g Gen) bool { return b.startVerify(g.Addr, g.gen) }

// EndVerify ends the verification StartVerify claimed.
func (b *Book) EndVerify(g Gen) { b.endVerify(g.Addr) }

// ForgetMoved soft-evicts (with cause) the sockets of host:port's addresses
// that current (unmapped) no longer lists, and forgets those nothing refers to.
func (b *Book) ForgetMoved(host string, port uint16, current map[netip.Addr]bool, cause error) {
	b.evictWhere(cause, evictMoved, func(a netip.AddrPort, e *addrEntry) bool {
		return e.host == host && a.Port() == port && !current[a.Addr().Unmap()]
	})
	b.prune(host, port, func(a netip.AddrPort) bool { return current[a.Addr().Unmap()] })
}

func (b *Book) startVerify(addr netip.AddrPort, gen uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.addrs[addr]
	if e == nil || e.gen != gen || e.verify {
		return false
	}
	e.verify = true
	return true
}

func (b *Book) endVerify(addr netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.addrs[addr]; e != nil {
		e.verify = false
	}
}

func (b *Book) untrack(tc *trackedConn, heard time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.addrs[tc.addr]; e != nil {
		delete(e.conns, tc)
		e.sockets--
		if heard.After(e.closedHeard) {
			e.closedHeard = heard
		}
	}
}

func (b *Book) trackUnix(tc *trackedConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.unix == nil {
		b.unix = make(map[*trackedConn]struct{})
	}
	b.unix[tc] = struct{}{}
	tc.unixBook = b
}

func (b *Book) untrackUnix(tc *trackedConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.unix, tc)
}

// Sockets returns the book's open sockets: every address's current
// generation (older ones were shut down or doomed by their eviction) and
// the unix sockets.
func (b *Book) Sockets() []net.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []net.Conn
	for _, e := range b.addrs {
		for tc := range e.conns {
			out = append(out, tc)
		}
	}
	for tc := range b.unix {
		out = append(out, tc)
	}
	return out
}

// hostBad reports whether every known address of name:port is bad (a host
// never dialled is not).
func (b *Book) hostBad(name string, port uint16) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	addrs := b.hosts[net.JoinHostPort(name, strconv.Itoa(int(port)))]
	if len(addrs) == 0 {
		if ip, err := netip.ParseAddr(name); err == nil {
			addrs = []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), port)}
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

// OrderHosts returns the order in which to try n hosts, as indexes: shuffled
// when random, then hosts whose every address is bad last, so no connection
// pays a dead host's timeout first. host(i) is the name the dialer sees
// (hostaddr when given) and port.
func (b *Book) OrderHosts(n int, host func(i int) (name string, port uint16), random bool) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if random {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	bad := func(i int) int { return boolRank(b.hostBad(host(i))) }
	slices.SortStableFunc(order, func(x, y int) int { return bad(x) - bad(y) })
	return order
}

// Stats lists every address, in address order.
func (b *Book) Stats() []AddrStats {
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
			OpenConns: len(e.conns), Err: e.err, Since: e.since})
	}
	slices.SortFunc(out, func(x, y AddrStats) int { return compareStrings(x.Addr, y.Addr) })
	return out
}

// Progress describes each address's latest outcome, including attempts in
// flight, for an error message.
func (b *Book) Progress(now time.Time) []AddrStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []AddrStats
	for addr, e := range b.addrs {
		switch {
		case e.pending > 0:
			out = append(out, AddrStats{Addr: addr.String(), Status: "pending", Err: &PendingError{Since: now.Sub(e.since), Last: e.err}})
		case e.err != nil:
			out = append(out, AddrStats{Addr: addr.String(), Status: "failed", Err: e.err})
		}
	}
	slices.SortFunc(out, func(x, y AddrStats) int { return compareStrings(x.Addr, y.Addr) })
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

// PendingError stands for an attempt that has not answered yet.
type PendingError struct {
	Since time.Duration // since the attempt started
	Last  error         // what the address answered before, if anything
}

func (e *PendingError) Error() string {
	s := "no answer yet after " + e.Since.Round(time.Millisecond).String()
	if e.Last != nil {
		s += " (before: " + e.Last.Error() + ")"
	}
	return s
}

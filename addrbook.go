package pgfast

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
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
	// noPeek: the checkout does not peek at this book's sockets (a system
	// without the peek keeps the raw driver's ping instead: platform.go).
	noPeek bool
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
	pending int       // attempts in flight
	since   time.Time // when the oldest pending attempt started, or the last outcome
	err     error     // latest failure; nil after a success
	bad     bool      // evicted or failing: tried last until seen alive
	// unreachableAt: when the address was last evicted as unreachable
	// (zero once a connection to it succeeds; dial_skip.go).
	unreachableAt time.Time
	// slow: an attempt was given up (another address won the race, or the
	// caller ended) after waiting longer than the attempt delay for an
	// answer; cleared by a success.
	slow    bool
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

// preferHealthy reorders targets (a stable partition): first the addresses
// with nothing against them, then those without an open socket whose latest
// attempt was left unanswered for longer than slow, given up or still
// pending (a SYN into a blackhole, most likely), then those known to be
// bad. The race still tries every address; this only decides which one gets
// the head start.
func (b *addrBook) preferHealthy(targets []netip.AddrPort, now time.Time, slow time.Duration) {
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
	e.unreachableAt, e.slow = time.Time{}, false
	e.sockets++
	tc := &trackedConn{Conn: nc, book: b, addr: addr, gen: e.gen}
	if rc, ok := rawConnOf(nc); ok && !b.noPeek {
		tc.peek = newPeeker(rc)
	}
	e.conns[tc] = struct{}{}
	return tc
}

// attemptAbandoned records an attempt the caller gave up on (another
// address won the race, or the caller's context was cancelled or reached its
// deadline before the attempt's own connect_timeout): it says nothing about
// the server being down, so the address keeps its status; but an attempt
// left unanswered for longer than the attempt delay (slow) makes the address
// take second place in the next race (preferHealthy).
func (b *addrBook) attemptAbandoned(addr netip.AddrPort, slow bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(addr)
	e.pending--
	if slow {
		e.slow = true
	}
}

// evict bumps addr's generation if it is still gen, and shuts down (or, soft,
// dooms) every socket of the old generation. It reports whether it evicted.
func (b *addrBook) evict(addr netip.AddrPort, gen uint64, cause error, how eviction) bool {
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
	}
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

package netx

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// errServerClosing: an idle connection has an ErrorResponse waiting.
var errServerClosing = errors.New("server is closing the connection")

// errDoomed is the liveness check's answer for a doomed socket; a socket
// shut down gets errConnEvicted instead.
var errDoomed = errors.New("connection evicted")

// socketState is the liveness check on nc: alive, or dead and why.
func socketState(nc net.Conn) (bool, error) {
	if nc == nil {
		return true, nil
	}
	if tc := trackedOf(nc); tc != nil {
		if tc.doomed.Load() {
			return false, errDoomed
		}
		if tc.peek == nil {
			return true, nil // no peek here (no fd, or platform.go)
		}
		return tc.peek.state()
	}
	rc, ok := rawConnOf(nc)
	if !ok {
		return true, nil
	}
	return peekState(rc)
}

// Alive reports whether nc still looks usable, without any I/O on the wire.
func Alive(nc net.Conn) bool {
	if Retired(nc) {
		return false
	}
	if inUse(nc) {
		return true
	}
	ok, _ := socketState(nc)
	return ok
}

// Checkout is run by database/sql (via ResetSession) before it reuses a
// connection: a dead socket is driver.ErrBadConn, so it retries on another.
// A kernel-killed socket for a silent peer evicts its address (siblings died
// the same way) once corroborated (judgeIdle). A reset or EOF drops it and
// its dead siblings but is old evidence (a blip while idle may be over), so
// the connector stays Ready and the retry's fresh dial decides. See
// recentReadWindow for the skip.
func Checkout(_ context.Context, nc net.Conn) error {
	if inUse(nc) {
		return nil
	}
	ok, why := socketState(nc)
	if ok {
		return nil
	}
	if tc := trackedOf(nc); tc != nil && why != nil && why != errDoomed {
		tc.judgeIdle(why)
	}
	return driver.ErrBadConn
}

// judgeIdle acts on the liveness check's evidence about an idle socket. A
// kernel-killed socket (keep-alive unanswered) or no route is corroborated
// (without making the caller wait: its retry goes on meanwhile) before it is
// host-level: confirmed, the generation is evicted and the connector goes
// Down, so later callers fail fast instead of dialling into a dead host;
// vetoed (the path answers, a blackhole healed), nothing is evicted. Either
// way the socket goes, with the siblings the liveness check finds dead. A
// reset or EOF is connection-level: the same, the connector stays Ready and
// the retry's fresh dial decides.
func (c *trackedConn) judgeIdle(err error) {
	if c.book == nil {
		return
	}
	switch classify(err, c.tcpInfo, c.window) {
	case hostLevel:
		verdicts.judgeNow(c, err, false, func() {
			c.book.evict(c.addr, c.gen, err, evictDead)
		})
		c.sweepOnce() // siblings killed the same way go without a handshake each
	case connLevel:
		c.sweepOnce()
	}
}

// The checkout check without a system call for a connection in steady use.
//
// The MSG_PEEK is most of what pgfast adds to a cheap query's CPU (pgx
// checks once per query, lib/pq twice). A server that answered within
// recentReadWindow is very unlikely to have closed since, and if it did the
// next query fails as through the raw driver (pgx pings only after a second
// idle, lib/pq never). Shut down, doomed or closed sockets, and the sibling
// sweep, always peek.
//
// No clock is read on the I/O path: Read only counts reads that returned
// bytes; each check reads the clock once, and a moved count bounds the last
// read's age by the previous check.

// recentReadWindow is how recently a connection must have read from its
// server for its checkout to skip the system call.
const recentReadWindow = 250 * time.Microsecond

var monoEpoch = time.Now()

// monoNow is nanoseconds since monoEpoch (one monotonic clock read).
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// readRecency is a socket's record for the check above. reads is written by
// Read; the rest by its checks, which database/sql runs one at a time.
type readRecency struct {
	reads     atomic.Uint64 // Read calls that returned bytes
	seenReads atomic.Uint64 // reads at the previous check
	checkedAt atomic.Int64  // monoNow at the previous check
	readAfter atomic.Int64  // the last read came after this monoNow; 0: unknown
	// markFails and markReads: the connector's failure count and reads at
	// the first checkout that saw it (answeredSince).
	markFails atomic.Uint64
	markReads atomic.Uint64
}

// answeredSince reports, for a checkout while the connector is Down after
// fails failures, whether the connection read from its server since a
// checkout made after the latest failure. The first checkout after a failure
// only marks the read count: an earlier read may be the tail of a reply sent
// before the failure.
func (r *readRecency) answeredSince(fails uint64) bool {
	n := r.reads.Load()
	if r.markFails.Load() != fails {
		r.markFails.Store(fails)
		r.markReads.Store(n)
		return false
	}
	return n != r.markReads.Load()
}

// fresh records a check at now and reports whether the socket read within
// recentReadWindow.
func (r *readRecency) fresh(now int64) bool {
	if n := r.reads.Load(); n != r.seenReads.Load() {
		r.seenReads.Store(n)
		r.readAfter.Store(r.checkedAt.Load())
	}
	r.checkedAt.Store(now)
	after := r.readAfter.Load()
	return after > 0 && now-after < int64(recentReadWindow)
}

// inUse reports whether the checkout may skip its system call for nc.
func inUse(nc net.Conn) bool {
	tc := trackedOf(nc)
	if tc == nil || tc.doomed.Load() || tc.evicted.Load() || tc.closed.Load() {
		return false
	}
	return tc.recent.fresh(monoNow())
}

// ReadSinceCheck reports, without reading the clock, whether nc is pgfast's
// live socket and read from its server since its previous check. pgfast-pq's
// IsValid uses it: a reply since ResetSession's check shows the server was
// there, and the next checkout checks again before anything is sent. The
// record is left alone so the next checkout dates that read conservatively.
func ReadSinceCheck(nc net.Conn) bool {
	tc := trackedOf(nc)
	if tc == nil || tc.doomed.Load() || tc.evicted.Load() || tc.closed.Load() || tc.retired.Load() {
		return false
	}
	return tc.recent.reads.Load() != tc.recent.seenReads.Load()
}

// AnsweredSince reports whether nc, pgfast's socket, read from its server
// since a checkout after the connector's fails-th failure.
func AnsweredSince(nc net.Conn, fails uint64) bool {
	tc := trackedOf(nc)
	return tc != nil && tc.recent.answeredSince(fails)
}

package netx

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// errServerClosing is what the liveness check reports when an idle
// connection has an ErrorResponse waiting: the server is terminating it.
var errServerClosing = errors.New("server is closing the connection")

// errDoomed is the liveness check's answer for a doomed socket (Doom: evicted
// softly, dropped at its next checkout); the I/O of a socket that was shut
// down gets errConnEvicted instead.
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

// Alive reports whether nc still looks usable, without any I/O on the wire
// (and without a system call while the connection is in steady use:
// inUse).
func Alive(nc net.Conn) bool {
	if inUse(nc) {
		return true
	}
	ok, _ := socketState(nc)
	return ok
}

// Checkout is run by database/sql (through the backend's ResetSession) before
// it reuses a connection: a dead socket is driver.ErrBadConn, so database/sql
// drops the connection and retries on another. A socket the kernel killed
// for a silent peer (keepalive, TCP_USER_TIMEOUT without recent ACKs) evicts
// its whole address: its siblings died the same way. A reset or EOF drops the
// connection and the siblings that are dead too. That is old evidence (the socket may have
// died while the pool sat idle through a blip that is over), so the connector
// stays Ready and the retry's fresh dial decides whether the server is down.
// A connection that read its server's reply within the last
// recentReadWindow skips the system call (inUse).
func Checkout(_ context.Context, nc net.Conn) error {
	if inUse(nc) {
		return nil
	}
	ok, why := socketState(nc)
	if ok {
		return nil
	}
	if tc := trackedOf(nc); tc != nil && why != nil && why != errDoomed {
		tc.judge(why, evictStale)
	}
	return driver.ErrBadConn
}

// The checkout check without a system call for a connection in steady use.
//
// database/sql checks a connection out for every query; pgfast's liveness
// check is one MSG_PEEK system call (sys_linux.go), which is most of
// what pgfast adds to a cheap query's CPU (pgx checks once per query, lib/pq
// twice: ResetSession and IsValid). A connection that read a reply from its
// server within the last recentReadWindow skips it: a server that answered
// that recently is very unlikely to have closed the connection since, and if
// it did, the next query fails as it would through the raw driver (pgx pings
// only after a second of idleness, lib/pq never checks). A socket pgfast
// shut down, doomed or closed always gets the full check, and the sibling
// sweep after an error always peeks.
//
// No clock is read on the I/O path: Read only counts the reads that returned
// bytes. Each check reads the monotonic clock once; when the count moved
// since the previous check, the last read happened after that check, which
// bounds its age from above.

// recentReadWindow is how recently a connection must have read from its
// server for its checkout to skip the system call.
const recentReadWindow = 250 * time.Microsecond

// monoEpoch makes monoNow's readings small positive numbers.
var monoEpoch = time.Now()

// monoNow is the monotonic clock in nanoseconds since monoEpoch (one clock
// read: time.Since of a monotonic time does not read the wall clock).
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// readRecency is a socket's record for the check above. reads is written by
// the socket's Read; the rest by its checks, which database/sql runs one at a
// time for a connection.
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

// answeredSince reports, for a checkout made while the connector is Down
// after fails failures, whether the connection has read from its server
// since a checkout made after the latest of them: the server answered a
// request sent since that failure. The first checkout after a failure only
// marks the count of reads; a read before it may be the tail of a reply the
// server sent before the failure, and an idle socket reads nothing at all.
// database/sql checks a connection out to one user at a time, so the marks
// are written by one goroutine at a time.
func (r *readRecency) answeredSince(fails uint64) bool {
	n := r.reads.Load()
	if r.markFails.Load() != fails {
		r.markFails.Store(fails)
		r.markReads.Store(n)
		return false
	}
	return n != r.markReads.Load()
}

// fresh records a check made at now (monoNow) and reports whether the
// socket read from its peer within recentReadWindow.
func (r *readRecency) fresh(now int64) bool {
	if n := r.reads.Load(); n != r.seenReads.Load() {
		r.seenReads.Store(n)
		r.readAfter.Store(r.checkedAt.Load())
	}
	r.checkedAt.Store(now)
	after := r.readAfter.Load()
	return after > 0 && now-after < int64(recentReadWindow)
}

// inUse reports whether the checkout check may skip its system call for nc:
// pgfast's socket, not shut down, doomed or closed, that read from its server
// within recentReadWindow.
func inUse(nc net.Conn) bool {
	tc := trackedOf(nc)
	if tc == nil || tc.doomed.Load() || tc.evicted.Load() || tc.closed.Load() {
		return false
	}
	return tc.recent.fresh(monoNow())
}

// ReadSinceCheck reports, without reading the clock, whether nc is pgfast's
// socket, not shut down, doomed or closed, and read from its server since its
// previous check. pgfast-pq's IsValid uses it: database/sql calls IsValid
// when it takes the connection back, after the checkout check it made when it
// handed the connection out (ResetSession); a reply read since then shows the
// server was there after that check, and the next checkout checks the
// connection again (in full once it has sat idle for recentReadWindow) before
// anything is sent on it. The check's record is left as it is, so that the
// next checkout dates that read from the checkout before (an upper bound on
// its age, as always).
func ReadSinceCheck(nc net.Conn) bool {
	tc := trackedOf(nc)
	if tc == nil || tc.doomed.Load() || tc.evicted.Load() || tc.closed.Load() {
		return false
	}
	return tc.recent.reads.Load() != tc.recent.seenReads.Load()
}

// AnsweredSince reports whether nc, pgfast's socket, read from its server
// since a checkout made after the connector's fails-th failure
// (readRecency.answeredSince); false for another socket.
func AnsweredSince(nc net.Conn, fails uint64) bool {
	tc := trackedOf(nc)
	return tc != nil && tc.recent.answeredSince(fails)
}

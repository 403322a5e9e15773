package pgfast

import (
	"context"
	"database/sql/driver"
	"time"
)

// A call's context always unblocks it (pgfast-pq).
//
// lib/pq answers a context ending mid-call with a cancel request and keeps
// reading the old socket: on a silent network the call stays blocked until
// the kernel gives up. So pgfast watches every call's context itself: for
// queries, statements, Prepare and Ping see cancelWatch; a transaction's
// BeginTx context (watch/unwatch below) stays watched until Commit or
// Rollback, lib/pq sends its own cancel, and cancelGrace after the context
// ended pgfast interrupts the connection: a past deadline on the socket
// unblocks the I/O, and database/sql discards it.
//
// The watch is disarmed when the call returns (a query: when its rows
// close). A context without a Done channel arms nothing; one already ended
// fails the call before anything is sent, leaving the connection usable.

var pastDeadline = time.Unix(1, 0)

// watch arms ctx for one call: when ctx ends before stop is called, the
// connection is interrupted. It returns nil for a context that never ends,
// and ctx's error for one that already has. Every stop goes to unwatch.
func (c *PQConn) watch(ctx context.Context) (stop func() bool, err error) {
	if p := c.interrupted.Load(); p != nil {
		return nil, &interruptedError{cause: *p, err: driver.ErrBadConn}
	}
	done := ctx.Done()
	if done == nil {
		return nil, nil
	}
	select {
	case <-done:
		return nil, ctx.Err()
	default:
	}
	return context.AfterFunc(ctx, func() {
		time.AfterFunc(cancelGrace, func() { c.interrupt(ctx.Err()) })
	}), nil
}

// cancelGrace is how long a call whose context ended may still run before its
// socket's deadline is expired (unless the server handled the cancel, see
// answerGrace): long enough for the cancel to reach a healthy server so the
// caller gets its answer, short enough that on a dead network the call still
// returns right after its deadline.
const cancelGrace = 300 * time.Millisecond

// unwatch disarms a watch. When its context ended first, the connection is
// interrupted before unwatch returns, even if the AfterFunc still runs.
func (c *PQConn) unwatch(ctx context.Context, stop func() bool) {
	if stop != nil && !stop() {
		c.interrupt(ctx.Err())
	}
}

// interrupt ends any I/O blocked on the socket and makes the connection
// unusable; cause is the context's error.
func (c *PQConn) interrupt(cause error) {
	if cause == nil {
		cause = context.Canceled
	}
	c.interrupted.CompareAndSwap(nil, &cause)
	if c.sock != nil {
		_ = c.sock.SetDeadline(pastDeadline)
	}
}

// usable returns driver.ErrBadConn (wrapping the context error) once a
// context interrupted the connection, so no call touches its dead socket.
func (c *PQConn) usable() error {
	if p := c.interrupted.Load(); p != nil {
		return &interruptedError{cause: *p, err: driver.ErrBadConn}
	}
	return nil
}

// check is applied to every error a lib/pq call returns: once a context
// interrupted the connection, the error is wrapped so errors.Is finds the
// context's error; the result is told to the core.
func (c *PQConn) check(err error) error {
	if err == nil || err == driver.ErrSkip {
		return err
	}
	if p := c.interrupted.Load(); p != nil && !isSentinel(err) {
		if isPQError(err) {
			// The server answered (typically 57014): lib/pq's text, as raw.
			err = &canceledError{cause: *p, err: err}
		} else {
			err = &interruptedError{cause: *p, err: err}
		}
	}
	c.report(err)
	return err
}

// isSentinel reports errors raw lib/pq's callers compare with == (database/sql
// does): they are returned as they are.
func isSentinel(err error) bool {
	return err == driver.ErrBadConn || err == context.Canceled || err == context.DeadlineExceeded
}

// canceledError is the server's answer (typically 57014) for a call whose
// context ended: lib/pq's text, with the context's error for errors.Is.
type canceledError struct {
	cause error // context.Canceled or context.DeadlineExceeded
	err   error // what lib/pq returned
}

func (e *canceledError) Error() string   { return e.err.Error() }
func (e *canceledError) Unwrap() []error { return []error{e.err, e.cause} }

func (c *PQConn) report(err error) {
	if c.core != nil {
		c.core.onError(c.sock, err)
	}
}

// interruptedError is the error of a call a context interrupted: errors.Is and
// errors.As find both the context's and the backend's error.
type interruptedError struct {
	cause error // context.Canceled or context.DeadlineExceeded
	err   error // what lib/pq returned
}

func (e *interruptedError) Error() string {
	return "pgfast: interrupted by context (" + e.cause.Error() + "): " + e.err.Error()
}

func (e *interruptedError) Unwrap() []error { return []error{e.cause, e.err} }

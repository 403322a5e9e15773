package pgfast

import (
	"context"
	"database/sql/driver"
	"time"
)

// A call's context always unblocks it (pgfast-pq).
//
// lib/pq answers a context that ends during a call by sending a cancel
// request on a new connection and then keeps reading the old socket: on a
// network that has gone silent the call stays blocked until the kernel gives
// up on the socket. So pgfast watches every call's context itself.
//
// Queries, statements, Prepare and Ping (pq_cancel.go): lib/pq gets a
// context that never ends; when the caller's context ends during the call,
// pgfast sends the cancel request and waits for the server's answer (lib/pq's
// 57014 error, the connection stays usable) at most cancelGrace, or
// cancelGrace plus answerGrace once the server handled the cancel request.
// Then it puts a past deadline on the socket pgfast's dialer made, which
// makes the blocked read or write return at once, and marks the connection
// interrupted (ResetSession: driver.ErrBadConn, IsValid: false), so
// database/sql discards it.
//
// Transactions (watch/unwatch below): BeginTx's context stays watched until
// Commit or Rollback. lib/pq also gets it, and sends its own cancel request
// (through pgfast's dialer, bounded by connect_timeout) from its own
// goroutine when it ends; cancelGrace after the context ended, pgfast
// interrupts the connection as above.
//
// The watch is disarmed when the call returns, or for a query when its rows
// are closed; a context that ends after that changes nothing. A context
// without a Done channel (context.Background) arms nothing, and a context
// that has already ended fails the call with its error before anything is
// sent, leaving the connection usable.

// pastDeadline is a deadline that has always passed.
var pastDeadline = time.Unix(1, 0)

// watch arms ctx for one call: when ctx ends before the returned stop is
// called, the connection is interrupted. It returns nil for a context that
// never ends, and ctx's error (arming nothing) for one that already has. Every
// stop it returns must be passed to unwatch.
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
// socket's deadline is expired, unless the server handled the cancel request
// by then (see answerGrace): long enough for the cancel request to reach a
// healthy server, so the statement is cancelled server-side and the caller
// gets the server's answer; short enough that on a dead network the call
// still returns right after its deadline.
const cancelGrace = 300 * time.Millisecond

// unwatch disarms a watch. When its context ended first, the connection is
// interrupted before unwatch returns, even if the AfterFunc is still running.
func (c *PQConn) unwatch(ctx context.Context, stop func() bool) {
	if stop != nil && !stop() {
		c.interrupt(ctx.Err())
	}
}

// interrupt ends whatever I/O is blocked on the connection's socket and makes
// the connection unusable. cause is the context's error.
func (c *PQConn) interrupt(cause error) {
	if cause == nil {
		cause = context.Canceled
	}
	c.interrupted.CompareAndSwap(nil, &cause)
	if c.sock != nil {
		_ = c.sock.SetDeadline(pastDeadline)
	}
}

// usable returns driver.ErrBadConn (wrapped with the context error) when a
// context has interrupted the connection, so that a call never touches a
// socket whose deadline has passed.
func (c *PQConn) usable() error {
	if p := c.interrupted.Load(); p != nil {
		return &interruptedError{cause: *p, err: driver.ErrBadConn}
	}
	return nil
}

// check is applied to every error a lib/pq call returns: once a context has
// interrupted the connection, the error (typically an i/o timeout, or the
// server's answer to lib/pq's cancel request) is wrapped so that
// errors.Is(err, context.Canceled or context.DeadlineExceeded) holds; the
// result is told to the core and returned.
func (c *PQConn) check(err error) error {
	if err == nil || err == driver.ErrSkip {
		return err
	}
	if p := c.interrupted.Load(); p != nil && !isSentinel(err) {
		if isPQError(err) {
			// The server answered (typically 57014 to the cancel
			// request): lib/pq's text, as raw lib/pq returns it.
			err = &canceledError{cause: *p, err: err}
		} else {
			err = &interruptedError{cause: *p, err: err}
		}
	}
	c.report(err)
	return err
}

// isSentinel reports errors that raw lib/pq's callers compare with ==
// (database/sql, and lib/pq's own tests, do): they are returned as they are.
func isSentinel(err error) bool {
	return err == driver.ErrBadConn || err == context.Canceled || err == context.DeadlineExceeded
}

// canceledError is the server's error (lib/pq's 57014 *pq.Error, typically)
// for a call whose context ended while it ran: its text is lib/pq's, as raw
// lib/pq returns it, and errors.Is finds the context's error too.
type canceledError struct {
	cause error // context.Canceled or context.DeadlineExceeded
	err   error // what lib/pq returned
}

func (e *canceledError) Error() string   { return e.err.Error() }
func (e *canceledError) Unwrap() []error { return []error{e.err, e.cause} }

// report tells pgfast's core about an error a lib/pq call returned.
func (c *PQConn) report(err error) {
	if c.core != nil {
		c.core.onError(c.sock, err)
	}
}

// interruptedError is the error of a call a context interrupted: both the
// context's error and the backend's error are in its chain (errors.Is and
// errors.As find either, e.g. context.DeadlineExceeded and *pq.Error).
type interruptedError struct {
	cause error // context.Canceled or context.DeadlineExceeded
	err   error // what lib/pq returned
}

func (e *interruptedError) Error() string {
	return "pgfast: interrupted by context (" + e.cause.Error() + "): " + e.err.Error()
}

func (e *interruptedError) Unwrap() []error { return []error{e.cause, e.err} }

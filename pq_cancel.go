package pgfast

import (
	"context"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"sync"
	"time"
)

// Cancel requests (pgfast-pq).
//
// lib/pq's statement calls wait for their own cancel request to finish
// before returning, so on a dead network a cancelled statement would block
// until connect_timeout; its connection calls do not wait, but then discard
// the connection. pgfast therefore calls lib/pq (queries, statements,
// Prepare, Ping) with a context that never ends and sends the cancel request
// itself, from its own goroutine: when the caller's context ends, pgfast
// dials the address the connection's socket is connected to (through
// pgfast's dialer, bounded by connect_timeout), sends the CancelRequest with
// the backend's PID and secret key, and reads until the server closes. The
// call waits for the server's answer (lib/pq's 57014 error, wrapped so that
// errors.Is finds the context's error too; the connection stays usable) for
// cancelGrace after the context ended, and answerGrace more once the server
// handled the cancel request; then the socket's deadline is expired, the call
// returns and the connection is discarded, while the cancel request still
// goes on in the background (bounded by connect_timeout), so a statement
// never keeps running on a reachable server after its caller gave up. A call
// that returns after its context ended waits for its cancel request to
// finish, so that it cannot hit the connection's next statement.
//
// lib/pq learns the PID and secret key from the server's BackendKeyData
// message and keeps them in unexported fields of its connection; pgfast reads
// them once, right after the connection is made (pqCancelKey). Like pgx's
// CancelRequest (and libpq before PostgreSQL 17), the request is sent without
// TLS: the server reads cancel requests before any authentication or
// pg_hba.conf check.

// pqCancelKey reads the backend PID and secret key lib/pq's connection dc
// received at startup. ok is false when dc is not lib/pq's connection (or a
// future lib/pq keeps them elsewhere): statements then get no cancel request.
func pqCancelKey(dc driver.Conn) (pid uint32, key []byte, ok bool) {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return 0, nil, false
	}
	v = v.Elem()
	p, k := v.FieldByName("pid"), v.FieldByName("secretKey")
	if !p.IsValid() || !k.IsValid() || p.Kind() != reflect.Int ||
		k.Kind() != reflect.Slice || k.Type().Elem().Kind() != reflect.Uint8 {
		return 0, nil, false
	}
	key = append([]byte(nil), k.Bytes()...)
	if len(key) == 0 {
		return 0, nil, false
	}
	return uint32(p.Int()), key, true
}

// cancelRequestCode is the protocol's CancelRequest code (1234 << 16 | 5678).
const cancelRequestCode = 80877102

// errNoCancelKey is sendCancel's error for a connection whose key is unknown.
var errNoCancelKey = errors.New("pgfast: no cancel key for this connection")

// sendCancel asks the server to cancel whatever the connection's backend is
// running: one connection through pgfast's dialer to the address the
// connection's socket is connected to, bounded by connect_timeout.
func (c *PQConn) sendCancel() error {
	if c.cancelKey == nil || c.sock == nil || c.core == nil {
		return errNoCancelKey
	}
	timeout := DefaultConnectTimeout
	if t := c.core.config().ConnectTimeout; t > 0 {
		timeout = t
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addr := c.sock.RemoteAddr()
	nc, err := c.core.dial(ctx, addr.Network(), addr.String())
	if err != nil {
		return err
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	msg := make([]byte, 12, 12+len(c.cancelKey))
	binary.BigEndian.PutUint32(msg[4:], cancelRequestCode)
	binary.BigEndian.PutUint32(msg[8:], c.cancelPID)
	msg = append(msg, c.cancelKey...)
	binary.BigEndian.PutUint32(msg[0:], uint32(len(msg)))
	if _, err := nc.Write(msg); err != nil {
		return err
	}
	// The server closes the connection once it has handled the request.
	_, err = io.Copy(io.Discard, nc)
	return err
}

// cancelWatch watches one statement call's context (for a query, until its
// rows are closed) and sends the cancel request when it ends.
type cancelWatch struct {
	c    *PQConn
	ctx  context.Context
	stop func() bool

	fired     chan struct{} // closed once the AfterFunc has set things up
	settled   chan struct{} // closed when the cancel finished or the socket was interrupted
	settleOne sync.Once

	mu        sync.Mutex
	state     int // watchArmed, watchCancelling, watchInterrupted, watchDone
	timer     *time.Timer
	delivered bool // the server handled the cancel request (closed its connection)
	extended  bool // the timer was extended by answerGrace
}

const (
	watchArmed = iota
	watchCancelling
	watchInterrupted
	watchDone
)

// watchCall arms ctx for one statement call. It returns nil for a
// context that never ends, and ctx's error (arming nothing) for one that
// already has. Every watch it returns must be ended with end.
func (c *PQConn) watchCall(ctx context.Context) (*cancelWatch, error) {
	if err := c.usable(); err != nil {
		return nil, err
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
	w := &cancelWatch{c: c, ctx: ctx, fired: make(chan struct{}), settled: make(chan struct{})}
	w.stop = context.AfterFunc(ctx, w.fire)
	return w, nil
}

// fire runs when the context ends during the call: it starts the cancel
// request and the timer that gives up on the server's answer.
func (w *cancelWatch) fire() {
	defer close(w.fired)
	w.mu.Lock()
	if w.state != watchArmed {
		w.mu.Unlock()
		return
	}
	w.state = watchCancelling
	w.timer = time.AfterFunc(cancelGrace, w.graceOver)
	w.mu.Unlock()
	go func() {
		err := w.c.sendCancel()
		if err != nil {
			// No cancel reached the server: waiting for its answer is pointless.
			w.interrupt()
			return
		}
		w.mu.Lock()
		w.delivered = true
		w.mu.Unlock()
		w.settleOne.Do(func() { close(w.settled) })
	}()
}

// graceOver runs cancelGrace after the context ended. A cancel request the
// server has not handled by then means a network gone silent (or a server
// too slow to matter): the call is interrupted. One the server handled gets
// answerGrace more for the statement's answer.
func (w *cancelWatch) graceOver() {
	w.mu.Lock()
	if w.delivered && !w.extended && w.state == watchCancelling {
		w.extended = true
		w.timer = time.AfterFunc(answerGrace, w.graceOver)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.interrupt()
}

// answerGrace is how long, beyond cancelGrace, a call waits for the
// statement's answer once the server handled its cancel request (a busy
// backend may take a while to reach a point where it can be interrupted);
// raw lib/pq waits for that answer without a bound.
const answerGrace = time.Second

// interrupt gives up on the server's answer: the blocked call returns and the
// connection is discarded.
func (w *cancelWatch) interrupt() {
	w.mu.Lock()
	if w.state == watchCancelling {
		w.state = watchInterrupted
		w.c.interrupt(w.ctx.Err())
	}
	w.mu.Unlock()
	w.settleOne.Do(func() { close(w.settled) })
}

// end disarms the watch once the call (or its rows) finished. When the
// context ended during the call, it waits until the cancel request finished
// (so it cannot hit a later statement) or the socket was interrupted, at most
// cancelGrace after the context ended. It reports whether the context ended
// during the call.
func (w *cancelWatch) end() bool {
	if w == nil {
		return false
	}
	if w.stop() {
		w.mu.Lock()
		w.state = watchDone
		w.mu.Unlock()
		return false
	}
	<-w.fired
	<-w.settled
	w.mu.Lock()
	if w.state == watchCancelling {
		w.state = watchDone
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	return true
}

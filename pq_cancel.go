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
// lib/pq's statement calls wait for their own cancel request before
// returning, so on a dead network a cancelled statement blocks until
// connect_timeout. pgfast calls lib/pq with a context that never ends and
// sends the cancel itself from its own goroutine, through its dialer to the
// connection's address. The call waits for the server's answer (57014, the
// connection stays usable) for cancelGrace, plus answerGrace once the server
// handled the cancel; then the socket's deadline is expired and the
// connection discarded, while the cancel goes on in the background, so a
// statement never keeps running after its caller gave up. A call returning
// after its context ended waits for its cancel, so it cannot hit the next
// statement.
//
// The PID and secret key are read once from lib/pq's unexported fields
// (pqCancelKey). As pgx's (and libpq's before PostgreSQL 17), the request is
// sent without TLS: the server reads it before any authentication.

// pqCancelKey reads the backend PID and secret key lib/pq's dc received at
// startup. ok is false when dc is not lib/pq's (or a future lib/pq keeps them
// elsewhere): statements then get no cancel request.
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

var errNoCancelKey = errors.New("pgfast: no cancel key for this connection")

// sendCancel asks the server to cancel what the connection's backend runs,
// through pgfast's dialer, bounded by connect_timeout.
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

// cancelWatch watches one statement call's context (a query's until its rows
// close) and sends the cancel request when it ends.
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

// watchCall arms ctx for one statement call: nil for a context that never
// ends, ctx's error for one already ended. Every watch must be ended with end.
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

// fire starts the cancel request and the timer giving up on the answer.
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

// graceOver runs cancelGrace after the context ended. A cancel the server
// has not handled by then means a silent network: interrupt. One it handled
// gets answerGrace more.
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

// answerGrace is how long beyond cancelGrace a call waits for the answer once
// the server handled its cancel (a busy backend may take a while to reach an
// interruptible point); raw lib/pq waits without a bound.
const answerGrace = time.Second

// interrupt gives up on the server's answer: the call returns and the
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

// end disarms the watch once the call (or its rows) finished. If the context
// ended during the call, it waits until the cancel finished (so it cannot hit
// a later statement) or the socket was interrupted, and reports true.
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

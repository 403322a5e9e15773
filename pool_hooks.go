package pgfast

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/netx"
)

// equipPool wires c's core into pc: the driver's connection settings, then
// pgfast's pool hooks before the application's.
func equipPool(pc *pgxpool.Config, a *pgxAdapter, c *Connector, probe *poolProbe) {
	co := c.core
	a.wire(pc.ConnConfig, co)

	// The application's BeforeConnect (a.before) runs after pgfast's gate
	// and host order.
	groups, hosts := a.groups, hostPortsOf(a.groups)
	bound := c.cfg.ConnectTimeout
	pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		err := c.poolGate(ctx)
		if err == nil {
			if len(groups) > 1 {
				setPgxHosts(&cc.Config, pgxFallbacks(groups, co.orderHosts(hosts)))
			}
			err = a.runBefore(ctx, cc, bound)
		}
		if err != nil {
			endEager(ctx, err) // no connect follows: TraceConnectEnd will not tell
		}
		return err
	}

	// pgxpool ignores BeforeAcquire once PrepareConn is set: pgfast's
	// PrepareConn calls it as pgxpool would have.
	userPrepare := pc.PrepareConn
	//lint:ignore SA1019 an application's deprecated BeforeAcquire keeps working, as on raw pgxpool
	if before := pc.BeforeAcquire; userPrepare == nil && before != nil {
		userPrepare = func(ctx context.Context, conn *pgx.Conn) (bool, error) { return before(ctx, conn), nil }
	}
	pc.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		nc := conn.PgConn().Conn()
		if co.checkRole(nc, conn.PgConn()) != nil {
			return false, nil // destroyed; pgxpool tries another connection
		}
		if co.checkout(ctx, nc) != nil {
			return false, nil
		}
		if userPrepare != nil && !isLoopAttempt(ctx) {
			return userPrepare(ctx, conn)
		}
		return true, nil
	}

	if user := pc.AfterRelease; user != nil {
		probe.marked = true
		pc.AfterRelease = func(conn *pgx.Conn) bool {
			if probe.conn.CompareAndSwap(conn, nil) {
				return true // pgfast's attempt: not the application's release
			}
			return user(conn)
		}
	}

	if pc.ShouldPing == nil && c.plat.Peek {
		// The peek in PrepareConn replaces pgxpool's ping after a second
		// idle, as in pgxAdapter.connector.
		pc.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	}

	pc.ConnConfig.Tracer = composeTracer(&connectTracer{c: c}, pc.ConnConfig.Tracer, probe)
}

// poolProbe keeps the connector's attempt (poolLogin: Acquire, Ping,
// Release) out of the application's acquire and release hooks and tracers:
// they see the pool's connections as on a raw pool, not pgfast's check of
// one (pgxpool's own tests count those calls). The attempt's connect is
// the pool's, and its BeforeConnect, AfterConnect and connect tracer run.
type poolProbe struct {
	// marked: an application hook sees releases, so the attempt marks the
	// connection it releases (set before the pool exists, then read-only).
	marked bool
	// conn is the connection the attempt released, until the application's
	// release hook (or release tracer, when it has no AfterRelease) saw it.
	conn atomic.Pointer[pgx.Conn]
}

// releasing marks conn as the attempt's, before it is released.
func (p *poolProbe) releasing(conn *pgx.Conn) {
	if p.marked {
		p.conn.Store(conn)
	}
}

// hideProbeAcquire is the application's acquire tracer without the
// connector's attempts.
type hideProbeAcquire struct{ pgxpool.AcquireTracer }

func (h hideProbeAcquire) TraceAcquireStart(ctx context.Context, p *pgxpool.Pool, d pgxpool.TraceAcquireStartData) context.Context {
	if isLoopAttempt(ctx) {
		return ctx
	}
	return h.AcquireTracer.TraceAcquireStart(ctx, p, d)
}

func (h hideProbeAcquire) TraceAcquireEnd(ctx context.Context, p *pgxpool.Pool, d pgxpool.TraceAcquireEndData) {
	if !isLoopAttempt(ctx) {
		h.AcquireTracer.TraceAcquireEnd(ctx, p, d)
	}
}

// hideProbeRelease is the application's release tracer without the
// connector's attempts.
type hideProbeRelease struct {
	pgxpool.ReleaseTracer
	probe        *poolProbe
	afterRelease bool // the AfterRelease wrapper forgets the mark
}

func (h hideProbeRelease) TraceRelease(p *pgxpool.Pool, d pgxpool.TraceReleaseData) {
	if h.probe.conn.Load() == d.Conn && d.Conn != nil {
		if !h.afterRelease {
			h.probe.conn.CompareAndSwap(d.Conn, nil)
		}
		return
	}
	h.ReleaseTracer.TraceRelease(p, d)
}

// poolGate is the pool's BeforeConnect, Connect without the dial: Ready
// connects; Down fails fast (asking for an attempt) unless WaitReady; a
// permanent error returns at once. The connector's own attempt (the pool's
// first connection) always passes. While StateConnecting the pool does not
// dial beside that attempt (cause A8: a second login, and its timeout on a
// busy server made the pool Down): it waits for the attempt, and fails with
// the attempt's error when a slow or refusing server failed it (unless
// WaitReady). An Acquire waits for the attempt before it gets here
// (TraceAcquireStart), bounded by its own context, so this wait is mostly
// pgxpool's background connects'; pgxpool's constructor context outlives
// the Acquire that asked, so the wait is bounded by the connect timeout too.
func (c *Connector) poolGate(ctx context.Context) error {
	if c.ready.current() == StateReady && c.ctx.Err() == nil {
		return nil
	}
	if isLoopAttempt(ctx) || (isEager(ctx) && c.ready.current() == StateConnecting) {
		// The attempt, or pgxpool's eager connects the first attempt waits
		// for (pool_eager.go).
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return nil
	}
	start := time.Now()
	refusals := c.ready.refusals.Load()
	if r, ok := ctx.Value(acquireWaitKey{}).(uint64); ok {
		refusals = r // the Acquire waited for the attempt: its outcome counts
	}
	var bound <-chan time.Time
	if c.cfg.ConnectTimeout > 0 {
		t := time.NewTimer(c.cfg.ConnectTimeout)
		defer t.Stop()
		bound = t.C
	}
	asked := false
	for {
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		st, changed, _ := c.ready.load()
		switch st {
		case StateClosed:
			return ErrClosed
		case StateReady:
			return nil
		}
		if perm, _ := c.ready.failedPermanently(); perm {
			return c.notReady(time.Since(start), nil)
		}
		if !asked && st == StateDown {
			c.post(event{kind: evAttemptNow})
			asked = true
		}
		if st == StateDown && !c.cfg.WaitReady {
			return c.notReady(0, nil)
		}
		if st == StateConnecting && !c.cfg.WaitReady && c.ready.refusals.Load() != refusals {
			return c.notReady(time.Since(start), nil)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return c.notReady(time.Since(start), ctx.Err())
		case <-bound:
			return c.notReady(time.Since(start), context.DeadlineExceeded)
		}
	}
}

// awaitFirstAttempt holds an Acquire while the connector is Connecting,
// bounded by the Acquire's context: the attempt's connection is the pool's
// first, and the Acquire takes it instead of dialling a second login
// beside it (cause A8). It returns once the state moved, the attempt failed
// on a slow or refusing server (or in the application's hook), or ctx ended
// (pgxpool then returns ctx's error); the context it returns tells poolGate
// which attempt outcome the Acquire waited for. Ready costs one atomic load.
func (c *Connector) awaitFirstAttempt(ctx context.Context) context.Context {
	if c.ready.current() != StateConnecting || isLoopAttempt(ctx) {
		return ctx
	}
	refusals := c.ready.refusals.Load()
	for {
		st, changed, _ := c.ready.load()
		if st != StateConnecting || c.ready.refusals.Load() != refusals || c.ctx.Err() != nil {
			return context.WithValue(ctx, acquireWaitKey{}, refusals)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx
		case <-c.ctx.Done():
			return ctx
		}
	}
}

// acquireWaitKey holds, in an Acquire's context, the connector's refusal
// count when it began waiting for the attempt (awaitFirstAttempt).
type acquireWaitKey struct{}

// connectTracer tells the connector's goroutine how each pool connection
// attempt ended, as dialNow does for the driver (the loop's own attempt
// reports itself), and holds Acquires while the connector's first attempt
// is in flight; it traces nothing else.
type connectTracer struct{ c *Connector }

var (
	_ pgx.QueryTracer       = (*connectTracer)(nil)
	_ pgx.ConnectTracer     = (*connectTracer)(nil)
	_ pgxpool.AcquireTracer = (*connectTracer)(nil)
)

func (t *connectTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t *connectTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (t *connectTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return t.c.awaitFirstAttempt(ctx)
}

func (t *connectTracer) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {
}

func (t *connectTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	ctx, _ = netx.WithLogin(ctx) // admission, the loop's attempts too; TraceConnectEnd ends it
	if a := attemptContext(ctx); a != nil {
		ctx = followAttempt(ctx, a)
	}
	if isLoopAttempt(ctx) {
		return ctx // counted and judged by the loop (Connector.login)
	}
	t.c.stats.dials.Add(1)
	ctx, _ = withLoginRecord(ctx)
	return context.WithValue(ctx, attemptBeganKey{}, t.c.ready.mark())
}

// followAttempt ties a pool connect made for one of the loop's attempts to
// that attempt's cancellation. pgxpool connects with a context of its own
// (it keeps the Acquire's values only), so cancelling the attempt (another
// one succeeded: loop.cancelFlying; Close) stopped only its Acquire, and its
// login went on: a second session for the tenant (TestScaleCounts' NewPool
// row, 1.3-1.5 logins per tenant, where raw pgxpool has 1.00). The connect
// now ends with the attempt, as a driver attempt's dial does. TraceConnectEnd
// calls the stop func it stores (followKey).
func followAttempt(ctx, attempt context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(attempt, func() { cancel(context.Cause(attempt)) })
	return context.WithValue(ctx, followKey{}, func() {
		stop()
		cancel(nil)
	})
}

// followKey holds, in a followed connect's context, what ends the following.
type followKey struct{}

// attemptBeganKey holds a pool attempt's mark in its context.
type attemptBeganKey struct{}

func (t *connectTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	c := t.c
	netx.LoginOf(ctx).End(data.Err)
	defer endEager(ctx, data.Err) // after its report: the attempt's result follows it
	if stop, ok := ctx.Value(followKey{}).(func()); ok {
		stop()
	}
	if isLoopAttempt(ctx) {
		return
	}
	switch {
	case data.Err != nil:
		c.stats.failures.Add(1)
		err := data.Err
		c.lastErr.Store(&err)
		if ctx.Err() == nil && c.ctx.Err() == nil && !c.lossOnly(err) {
			began, _ := ctx.Value(attemptBeganKey{}).(attemptMark)
			c.post(event{kind: evDialFailed, err: err, began: began, ev: loginRecordOf(ctx).evidence(err)})
		}
	default:
		c.post(event{kind: evVerified, fresh: true})
	}
}

// composeTracer returns ours alone, or a multitracer calling ours first and
// then every tracer interface the application's implements.
func composeTracer(ours *connectTracer, user pgx.QueryTracer, probe *poolProbe) pgx.QueryTracer {
	if user == nil {
		return ours
	}
	t := &multitracer.Tracer{
		QueryTracers:       []pgx.QueryTracer{user},
		ConnectTracers:     []pgx.ConnectTracer{ours},
		PoolAcquireTracers: []pgxpool.AcquireTracer{ours},
	}
	if x, ok := user.(pgx.BatchTracer); ok {
		t.BatchTracers = append(t.BatchTracers, x)
	}
	if x, ok := user.(pgx.CopyFromTracer); ok {
		t.CopyFromTracers = append(t.CopyFromTracers, x)
	}
	if x, ok := user.(pgx.PrepareTracer); ok {
		t.PrepareTracers = append(t.PrepareTracers, x)
	}
	if x, ok := user.(pgx.ConnectTracer); ok {
		t.ConnectTracers = append(t.ConnectTracers, x)
	}
	if x, ok := user.(pgxpool.AcquireTracer); ok {
		t.PoolAcquireTracers = append(t.PoolAcquireTracers, hideProbeAcquire{x})
	}
	if x, ok := user.(pgxpool.ReleaseTracer); ok {
		afterRelease := probe.marked
		probe.marked = true
		t.PoolReleaseTracers = append(t.PoolReleaseTracers, hideProbeRelease{x, probe, afterRelease})
	}
	return t
}

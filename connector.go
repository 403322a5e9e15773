package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// Connector is pgfast's driver.Connector. Making one starts connecting in
// the background and returns at once; Ready waits for a verified connection.
// Use it with sql.OpenDB, or find a *sql.DB's with ConnectorOf.
type Connector struct {
	backendKind Backend
	cfg         *Config
	log         *slog.Logger
	stateHook   func(State, error)
	backend     driver.Connector
	core        *connectorCore
	book        *netx.Book
	// plat is what this system applies (thisPlatform; tests force others).
	plat     platform
	resolver Resolver
	drv      *connectorDriver
	ready    *readiness

	mu         sync.Mutex
	warm       []driver.Conn
	warmClosed bool // Close took the warm connections: keep no more

	started time.Time
	lastErr atomic.Pointer[error] // the latest failed attempt's error

	stats counters

	adapter adapter
	// poolLogin, set for a NewPool pool, makes the loop's attempt the
	// pool's own connection (acquire, ping, release) instead of a dial.
	poolLogin    atomic.Pointer[func(context.Context) error]
	in           inbox                      // events for the connector's loop (loop.go)
	lp           *loop                      // the loop's state, the running drain's
	inHook       atomic.Bool                // the state hook is running
	dnsWatch     []*netx.NameWatch          // host names rechecked (dnsrecheck.go)
	pool         atomic.Pointer[poolLink]   // NewPool's pool (poolreg.go)
	noBackground bool                       // no background work (Driver.Open)
	queued       func() int                 // the dialer's dials waiting for admission
	retiring     atomic.Pointer[drainMarks] // the latest Drain's (drain.go); nil before any

	// resMu guards resClosed: once the loop shut down, a late attempt
	// closes its own connection.
	resMu     sync.Mutex
	resClosed bool
	// abandoned: Close gave up on attempts in flight; their later dials
	// pause before failing (closedPause).
	abandoned atomic.Bool

	ctx    context.Context // ends at Close: the background work's owner
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop has shut down (its last drain)
	bg     workers       // short-lived background work (role verifications)
	close  sync.Once
}

var (
	_ driver.Connector = (*Connector)(nil)
	_ io.Closer        = (*Connector)(nil)
)

// NewConnector parses dsn (URL or key=value, as the backend reads it, libpq
// environment variables included), starts connecting in the background and
// returns at once. A bad DSN is a *ConfigError.
func NewConnector(dsn string, opts ...Option) (*Connector, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return newConnector(dsn, o)
}

func newConnector(dsn string, o options) (*Connector, error) {
	a, cfg, err := parseDSN(o.backend, dsn)
	if err != nil {
		return nil, err
	}
	return newConnectorWith(a, cfg, o)
}

func newConnectorWith(a adapter, cfg *Config, o options) (*Connector, error) {
	if err := o.equip(a); err != nil { // the application's hooks (openhooks.go)
		return nil, err
	}
	c, err := buildConnector(a, cfg, o)
	if err != nil {
		return nil, err
	}
	c.start()
	return c, nil
}

// buildConnector makes the connector without starting its background work
// (start), so that NewPool can first give it the pool.
func buildConnector(a adapter, cfg *Config, o options) (*Connector, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.minConns != 0 {
		cfg.MinConns = o.minConns
	}
	if o.waitReady != nil {
		cfg.WaitReady = *o.waitReady
	}
	c := &Connector{
		backendKind:  o.backend,
		cfg:          cfg,
		log:          o.logger,
		stateHook:    o.stateHook,
		ready:        newReadiness(),
		adapter:      a,
		noBackground: o.noBackground,
		in:           inbox{draining: true, stopped: o.noBackground}, // start begins the first drain
		done:         make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.drv = &connectorDriver{c: c}
	c.resolver = o.resolver
	if r, ok := a.(interface{ resolver() Resolver }); ok && c.resolver == nil {
		c.resolver = r.resolver() // the backend configuration's own (pgx's LookupFunc)
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	c.plat = thisPlatform
	if o.testPlatform != nil {
		c.plat = *o.testPlatform
	}
	c.book = netx.NewBook(c.onEvict)
	c.book.SetNoPeek(!c.plat.Peek)
	c.book.SetView(viewFor(cfg))
	c.book.SetOnAlive(c.onAlive)
	d := netx.NewDialer(cfg.dialSettings(), c.resolver)
	d.SetBook(c.book)
	c.core = c.newCore(d)
	c.queued = d.Queued
	if o.testDial != nil {
		c.core.dialFn = o.testDial(c.core.dialFn)
	}
	c.backend = a.connector(c.core)
	if o.testBackend != nil {
		c.backend = o.testBackend(c.core)
	}
	c.started = time.Now()
	return c, nil
}

// start begins the background work (Driver.Open's connector has none): the
// first drain, which also applies what was posted before.
func (c *Connector) start() {
	if c.noBackground {
		close(c.done)
		return
	}
	c.watchDNS()
	c.lp = c.newLoop()
	go c.drain()
}

// Config returns the connector's effective settings (defaults applied).
func (c *Connector) Config() Config { return *c.cfg }

// Backend returns the driver this connector wraps.
func (c *Connector) Backend() Backend { return c.backendKind }

// Driver returns a driver value that belongs to this connector, so that
// ConnectorOf can find it.
func (c *Connector) Driver() driver.Driver { return c.drv }

// State returns the connector's current state.
func (c *Connector) State() State {
	if c.ctx.Err() != nil {
		return StateClosed
	}
	return c.ready.current()
}

// Ready returns nil as soon as a verified connection exists. When ctx ends
// first it returns a *NotReadyError (errors.Is ErrNotReady) saying what each
// address answered; an error waiting cannot fix (authentication, a missing
// database, TLS refused, a bad certificate) on every host returns at once,
// wrapped the same way. After Close: ErrClosed. While not Ready, it asks for
// an attempt at once rather than at the background's pace.
func (c *Connector) Ready(ctx context.Context) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	start := time.Now()
	if c.ready.current() == StateDown {
		c.post(event{kind: evAttemptNow})
	}
	st, err := c.ready.wait(ctx)
	switch {
	case st == StateReady:
		return nil
	case st == StateClosed || c.ctx.Err() != nil:
		return ErrClosed
	}
	return c.notReady(time.Since(start), err)
}

func (c *Connector) notReady(waited time.Duration, ctxErr error) error {
	st, _, cause := c.ready.load()
	if cause == nil {
		cause = c.lastError()
	}
	addrs := describeProgress(c.book.Progress(time.Now()))
	if len(addrs) == 0 {
		addrs = addrStatusesOf(cause)
	}
	return &NotReadyError{State: st, Waited: waited, Cause: cause, Err: ctxErr, Addrs: addrs,
		attempts: c.stats.dials.Load(), failed: c.stats.failures.Load(), age: time.Since(c.started)}
}

// Connect hands out a warm connection when there is one, else dials with ctx,
// waiting for the first attempt in flight rather than starting another. While
// the database is down it fails fast with ErrNotReady wrapping the last cause
// (asking for an attempt at once, so service resumes as soon as the server
// does), unless WaitReady is set, then it waits within ctx. An error waiting
// cannot fix is returned at once either way. After Close: ErrClosed.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	start := time.Now()
	refusals := c.ready.refusals.Load()
	asked := false
	for {
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		st, changed, _ := c.ready.load()
		switch st {
		case StateClosed:
			return nil, ErrClosed
		case StateReady:
			if dc := c.takeWarm(); dc != nil {
				return dc, nil
			}
			return c.dialNow(ctx)
		}
		if perm, _ := c.ready.failedPermanently(); perm {
			return nil, c.notReady(time.Since(start), nil)
		}
		if !asked && st == StateDown {
			c.post(event{kind: evAttemptNow})
			asked = true
		}
		if st == StateDown && !c.cfg.WaitReady {
			return nil, c.notReady(0, nil)
		}
		if st == StateConnecting && !c.cfg.WaitReady && c.ready.refusals.Load() != refusals {
			// The attempt it waited for failed on a slow or refusing
			// server: its error, as the raw driver's dial would return.
			return nil, c.notReady(time.Since(start), nil)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, c.notReady(time.Since(start), ctx.Err())
		}
	}
}

// dialNow makes a connection for a caller while Ready and tells the
// goroutine the outcome: a network or permanent failure means Down unless a
// connection was verified after this dial began or the server answered
// (attemptFailed); a success is a verification.
func (c *Connector) dialNow(ctx context.Context) (driver.Conn, error) {
	began := c.ready.mark()
	rctx, rec := withLoginRecord(ctx)
	dc, err := c.dial(rctx)
	switch {
	case err != nil && ctx.Err() == nil && !c.lossOnly(err):
		c.post(event{kind: evDialFailed, err: err, began: began, ev: rec.evidence(err)})
	case err == nil:
		c.post(event{kind: evVerified, fresh: true})
	}
	return dc, err
}

// lossOnly reports a failed dial whose SYNs all went unanswered while other
// sockets to the address were heard during it: packet loss, not the server's
// state, so the connector's state does not change (netx.Book.PathHeard).
func (c *Connector) lossOnly(err error) bool {
	return c.book.PathHeard(err, time.Now().Add(-c.cfg.ConnectTimeout))
}

func (c *Connector) dial(ctx context.Context) (driver.Conn, error) {
	if c.closeIfPoolClosed() {
		return nil, ErrClosed // its pool was closed (poolreg.go)
	}
	c.stats.dials.Add(1)
	dc, err := c.backend.Connect(ctx)
	if err != nil {
		c.countFailure(ctx, err)
		return nil, err
	}
	return dc, nil
}

// countFailure counts a failed dial, except a loop attempt the loop itself
// cut short (another attempt succeeded, or Close): that is not a failure
// (TestQueueTimeNotConnectTimeout counted one when, under load, a second
// attempt queued beside the first and was cancelled by its success).
func (c *Connector) countFailure(ctx context.Context, err error) {
	if isLoopAttempt(ctx) && errors.Is(ctx.Err(), context.Canceled) {
		return // a deadline that passed is a failure; a cancel is the loop's
	}
	c.stats.failures.Add(1)
	c.lastErr.Store(&err)
}

func (c *Connector) lastError() error {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// takeWarm pops a warm connection that still looks alive.
func (c *Connector) takeWarm() driver.Conn {
	for {
		c.mu.Lock()
		n := len(c.warm)
		if n == 0 {
			c.mu.Unlock()
			return nil
		}
		dc := c.warm[n-1]
		c.warm = c.warm[:n-1]
		c.mu.Unlock()
		if nc := c.adapter.socket(dc); nc != nil && !c.core.alive(nc) {
			_ = dc.Close()
			continue
		}
		c.stats.handedOut.Add(1)
		return dc
	}
}

// addWarm keeps dc for the next caller unless enough are kept or the
// connector is closed; it reports whether it kept it.
func (c *Connector) addWarm(dc driver.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.warmClosed || len(c.warm) >= c.cfg.MinConns {
		return false
	}
	c.warm = append(c.warm, dc)
	return true
}

// Close stops the background work, waits a bounded time for it, and closes
// unclaimed warm connections (handed-out ones are database/sql's).
// Close always returns: an attempt ignoring its context is abandoned after a
// few seconds and its connection closed on arrival. Called from the state
// hook, it does not wait for the loop. Close is idempotent; Connect and
// Ready after Close return ErrClosed.
func (c *Connector) Close() error {
	c.close.Do(func() {
		c.cancel()
		c.book.Close() // the view forgets this tenant
		c.unwatchDNS()
		c.forgetPool()
		if c.noBackground {
			// No goroutine: Close is the only writer left.
			c.setState(StateClosed, ErrClosed)
		}
		c.post(event{kind: evWake}) // a drain sees the context ended and shuts down
		c.mu.Lock()
		warm := c.warm
		c.warm, c.warmClosed = nil, true
		c.mu.Unlock()
		for _, dc := range warm {
			_ = dc.Close()
		}
		if c.inHook.Load() {
			return
		}
		t := time.NewTimer(2*closeWait + time.Second)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
		}
	})
	return nil
}

func (c *Connector) warmCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.warm)
}

// isNetworkFailure reports whether err says the server could not be reached
// or the connection broke (not the server answering with an error).
func isNetworkFailure(err error) bool {
	var de *DialError
	var ne net.Error
	return errors.As(err, &de) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

type counters struct {
	dials, failures, handedOut atomic.Int64
}

// Stats is a snapshot of a connector's activity.
type Stats struct {
	State         State
	Dials         int64     // connection attempts through the backend
	DialFailures  int64     // of which failed
	WarmHandedOut int64     // warm connections given to callers
	WarmIdle      int       // warm connections waiting for a caller
	StateChanges  int64     // transitions between states
	Evictions     int64     // address generations evicted
	LastError     error     // the latest cause recorded with the state
	StateSince    time.Time // when the current state began
	// Addrs lists every address dialled, except those DNS no longer lists
	// once no socket to them is left.
	Addrs []AddrStats
}

// Stats returns a snapshot of the connector's activity.
func (c *Connector) Stats() Stats {
	// The state and its count in one read: a Ready waiter woken by the
	// change sees it counted.
	c.ready.mu.Lock()
	st, cause, since, changes := c.ready.state, c.ready.cause, c.ready.since, c.ready.changes
	c.ready.mu.Unlock()
	return Stats{
		State:         st,
		Dials:         c.stats.dials.Load(),
		DialFailures:  c.stats.failures.Load(),
		WarmHandedOut: c.stats.handedOut.Load(),
		WarmIdle:      c.warmCount(),
		StateChanges:  int64(changes),
		Evictions:     c.book.Evictions(),
		LastError:     cause,
		StateSince:    since,
		Addrs:         c.book.Stats(),
	}
}

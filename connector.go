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
)

// Connector is pgfast's driver.Connector. Opening one starts connecting in the
// background and returns at once; Ready waits for a verified connection. Use it
// with sql.OpenDB (db.Close closes it) or get it from a *sql.DB made by
// sql.Open with ConnectorOf.
type Connector struct {
	backendKind Backend
	cfg         *Config
	log         *slog.Logger
	stateHook   func(State, error)
	backend     driver.Connector
	seam        *seam
	book        *addrBook
	resolver    hostResolver
	drv         *connectorDriver
	ready       *readiness

	mu   sync.Mutex
	warm []driver.Conn

	stats counters

	ctx    context.Context // ends at Close: the background work's owner
	cancel context.CancelFunc
	kick   chan struct{}
	done   chan struct{} // closed when the background goroutine has stopped
	bg     group         // short-lived background work (role verifications)
	close  sync.Once
}

var (
	_ driver.Connector = (*Connector)(nil)
	_ io.Closer        = (*Connector)(nil)
)

// NewConnector parses dsn (URL or key=value, as the backend's own parser reads
// it, libpq environment variables included), starts connecting in the
// background and returns at once. A bad DSN is a *ConfigError.
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
	if o.minConns != 0 {
		if o.minConns < 1 || o.minConns > 1000 {
			return nil, &ConfigError{Key: "WithMinConns", Reason: "must be between 1 and 1000"}
		}
		cfg.MinConns = o.minConns
	}
	if o.waitReady != nil {
		cfg.WaitReady = *o.waitReady
	}
	c := &Connector{
		backendKind: o.backend,
		cfg:         cfg,
		log:         o.logger,
		stateHook:   o.stateHook,
		ready:       newReadiness(),
		kick:        make(chan struct{}, 1),
		done:        make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.drv = &connectorDriver{c: c}
	c.resolver = o.resolver
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	c.book = newAddrBook()
	c.book.onEvict = c.onEvict
	d := newDialer(cfg.dialSettings(), c.resolver)
	d.book = c.book
	c.seam = c.newSeam(d)
	c.backend = a.connector(c.seam)
	if o.noProbe {
		close(c.done)
	} else {
		go c.run()
	}
	return c, nil
}

// Config returns the connector's effective settings (defaults applied).
func (c *Connector) Config() Config { return *c.cfg }

// Backend returns the driver this connector wraps.
func (c *Connector) Backend() Backend { return c.backendKind }

// Driver returns a driver value that belongs to this connector, so that
// ConnectorOf can find the connector of a *sql.DB.
func (c *Connector) Driver() driver.Driver { return c.drv }

// State returns the connector's current state.
func (c *Connector) State() State {
	st, _, _ := c.ready.load()
	return st
}

// Ready returns nil as soon as a verified connection exists. When ctx ends
// first it returns a *NotReadyError (errors.Is ErrNotReady) saying what each
// address answered; after Close it returns ErrClosed.
func (c *Connector) Ready(ctx context.Context) error {
	start := time.Now()
	st, err := c.ready.wait(ctx)
	switch st {
	case StateReady:
		return nil
	case StateClosed:
		return ErrClosed
	}
	return c.notReady(time.Since(start), err)
}

// notReady describes why no connection can be had now.
func (c *Connector) notReady(waited time.Duration, ctxErr error) error {
	st, cause, _ := c.ready.load()
	addrs := c.book.progress(time.Now())
	if len(addrs) == 0 {
		addrs = addrStatusesOf(cause)
	}
	return &NotReadyError{State: st, Waited: waited, Cause: cause, Err: ctxErr, Addrs: addrs}
}

// Connect hands out a warm connection when there is one, else dials with ctx.
// While the first attempt is in flight it waits for it (bounded by ctx)
// instead of starting another. While the database is down it fails fast with
// ErrNotReady wrapping the last cause, unless WaitReady is set, in which case
// it waits for readiness within ctx. After Close it returns ErrClosed.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	start := time.Now()
	for {
		st, _, changed := c.ready.load()
		switch st {
		case StateClosed:
			return nil, ErrClosed
		case StateReady:
			if dc := c.takeWarm(); dc != nil {
				return dc, nil
			}
			return c.dialNow(ctx)
		case StateDown:
			if !c.cfg.WaitReady {
				return nil, c.notReady(0, nil)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, c.notReady(time.Since(start), ctx.Err())
		}
	}
}

// dialNow makes a connection for a caller while StateReady. A network failure
// means the database went away: the connector goes StateDown and probes.
func (c *Connector) dialNow(ctx context.Context) (driver.Conn, error) {
	dc, err := c.dial(ctx)
	if err != nil && ctx.Err() == nil && isNetworkFailure(err) {
		c.setState(StateDown, err)
	}
	return dc, err
}

// dial makes one connection through the backend and counts it.
func (c *Connector) dial(ctx context.Context) (driver.Conn, error) {
	c.stats.dials.Add(1)
	dc, err := c.backend.Connect(ctx)
	if err != nil {
		c.stats.failures.Add(1)
		return nil, err
	}
	return dc, nil
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
		if c.seam.alive != nil {
			if nc := socketOf(dc); nc != nil && !c.seam.alive(nc) {
				_ = dc.Close()
				continue
			}
		}
		c.stats.handedOut.Add(1)
		return dc
	}
}

// addWarm keeps dc for the next caller unless enough are kept already or the
// connector is closed; it reports whether it kept it.
func (c *Connector) addWarm(dc driver.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State() == StateClosed || len(c.warm) >= c.cfg.MinConns {
		return false
	}
	c.warm = append(c.warm, dc)
	return true
}

// setState moves to st with cause err, logs and reports the change once, and
// wakes the background goroutine.
func (c *Connector) setState(st State, err error) {
	if !c.ready.set(st, err) {
		return
	}
	c.stats.stateChanges.Add(1)
	if c.log != nil {
		if err != nil && st != StateClosed {
			c.log.Warn("pgfast: state changed", "state", st.String(), "cause", err)
		} else {
			c.log.Info("pgfast: state changed", "state", st.String())
		}
	}
	if c.stateHook != nil {
		c.stateHook(st, err)
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Close stops the background goroutine, waits for it, and closes the warm
// connections nobody took. Connections handed out stay open (database/sql
// closes them). Close is idempotent; Connect after Close returns ErrClosed.
func (c *Connector) Close() error {
	c.close.Do(func() {
		c.setState(StateClosed, ErrClosed)
		c.cancel()
		<-c.done
		c.bg.closeAndWait()
		c.mu.Lock()
		warm := c.warm
		c.warm = nil
		c.mu.Unlock()
		for _, dc := range warm {
			_ = dc.Close()
		}
	})
	return nil
}

// run is the connector's background goroutine: it connects until StateReady, keeps
// MinConns warm at the start, and probes again whenever the connector goes
// StateDown, with capped, jittered backoff, until Close.
func (c *Connector) run() {
	defer close(c.done)
	results := make(chan probeResult, 8) // probeLimit's cap: sends never block
	var probes sync.WaitGroup
	defer func() {
		c.cancel()
		probes.Wait()
		close(results)
		for r := range results {
			if r.conn != nil {
				_ = r.conn.Close()
			}
		}
	}()

	var bo backoff
	limit := probeLimit(c.cfg.ConnectTimeout)
	inflight, warmDials := 0, 0
	next := time.Now()      // when the next probe may start (backoff)
	var lastProbe time.Time // when the newest probe started
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var dnsTick <-chan time.Time
	if c.cfg.DNSRecheck > 0 {
		t := time.NewTicker(c.cfg.DNSRecheck)
		defer t.Stop()
		dnsTick = t.C
	}
	for {
		st, _, _ := c.ready.load()
		if st == StateClosed {
			return
		}
		now := time.Now()
		// A probe starts when the backoff allows it and, while others are
		// in flight, once the newest has been pending for probeOverlap:
		// attempts overlap only when one is stuck (a blackholed address).
		startAt := next
		if inflight > 0 {
			startAt = later(next, lastProbe.Add(probeOverlap))
		}
		probing := st != StateReady && inflight < limit && !now.Before(startAt)
		warming := st == StateReady && inflight == 0 && warmDials < c.cfg.MinConns && c.warmCount() < c.cfg.MinConns
		if probing {
			next, lastProbe = now.Add(bo.next()), now
			startAt = later(next, lastProbe.Add(probeOverlap))
		}
		if warming {
			warmDials++
		}
		if probing || warming {
			inflight++
			probes.Add(1)
			go func(warming bool) {
				defer probes.Done()
				dc, err := c.dial(c.ctx)
				results <- probeResult{conn: dc, err: err, warming: warming}
			}(warming)
		}
		var wait <-chan time.Time
		if st != StateReady && inflight < limit {
			resetTimer(timer, time.Until(startAt))
			wait = timer.C
		}
		select {
		case <-c.ctx.Done():
			return
		case r := <-results:
			inflight--
			c.settle(r, &bo, &warmDials)
		case <-wait:
		case <-c.kick:
		case <-dnsTick:
			if st == StateReady {
				c.recheckDNS(c.ctx)
			}
		}
	}
}

// probeOverlap is how long the newest background attempt must have been
// pending before another may start beside it.
const probeOverlap = time.Second

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// probeLimit is how many background attempts may be in flight at once: enough
// that, with attempts started at most maxBackoff apart, an address that
// blackholes for a whole connect_timeout never stops a fresh attempt from
// starting within maxBackoff.
func probeLimit(connectTimeout time.Duration) int {
	return min(int(connectTimeout/maxBackoff)+2, 8)
}

// probeResult is the outcome of one background connection attempt.
type probeResult struct {
	conn    driver.Conn
	err     error
	warming bool
}

// settle applies a background attempt's outcome.
func (c *Connector) settle(r probeResult, bo *backoff, warmDials *int) {
	if r.err != nil {
		if c.ctx.Err() != nil {
			return
		}
		if r.warming {
			*warmDials = c.cfg.MinConns // the database answered before: stop warming
			return
		}
		c.setState(StateDown, r.err)
		return
	}
	if !c.addWarm(r.conn) {
		_ = r.conn.Close()
	}
	bo.reset()
	c.setState(StateReady, nil)
}

func (c *Connector) warmCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.warm)
}

// socketOf returns the socket pgfast's dialer made for a backend connection.
func socketOf(dc driver.Conn) net.Conn {
	if pc, ok := dc.(*PQConn); ok {
		return pc.sock
	}
	if nc, ok := pgxSocket(dc); ok {
		return nc
	}
	return nil
}

// isNetworkFailure reports whether err says the server could not be reached
// or the connection broke (as opposed to the server answering with an error).
func isNetworkFailure(err error) bool {
	var de *DialError
	var ne net.Error
	return errors.As(err, &de) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// resetTimer makes t fire after d.
func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}

// counters are the connector's statistics, updated without locks.
type counters struct {
	dials, failures, handedOut, stateChanges atomic.Int64
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
	// Addrs lists the server addresses the connector knows: every address
	// dialled, except those that DNS no longer lists for their host once no
	// socket to them is left (they are forgotten then).
	Addrs []AddrStats
}

// Stats returns a snapshot of the connector's activity.
func (c *Connector) Stats() Stats {
	c.ready.mu.Lock()
	st, cause, since := c.ready.state, c.ready.cause, c.ready.since
	c.ready.mu.Unlock()
	return Stats{
		State:         st,
		Dials:         c.stats.dials.Load(),
		DialFailures:  c.stats.failures.Load(),
		WarmHandedOut: c.stats.handedOut.Load(),
		WarmIdle:      c.warmCount(),
		StateChanges:  c.stats.stateChanges.Load(),
		Evictions:     c.book.evictions.Load(),
		LastError:     cause,
		StateSince:    since,
		Addrs:         c.book.stats(),
	}
}

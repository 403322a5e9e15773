package pgfast

import (
	"database/sql/driver"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// The connector's goroutine (run) is the only writer of its state and the
// only caller of the state hook, so hook calls arrive one at a time, in the
// order the changes happen. Everything else that learns something about the
// database (an eviction on a query's read path, a caller's dial, a checkout,
// Close) posts an event: a mutex-guarded queue and a non-blocking kick, so
// the poster never waits for the loop nor runs user code.

// eventKind is what an event reports.
type eventKind uint8

const (
	// evEvicted: an address was evicted (down: as unreachable).
	evEvicted eventKind = iota
	// evDialFailed: a caller's dial failed with err (the loop decides
	// whether it means Down).
	evDialFailed
	// evVerified: a connection works: a caller's fresh dial (fresh) or a
	// connection in use that passed its checkout checks.
	evVerified
	// evProbe: a caller wants a connection while the connector is not
	// Ready: probe now rather than at the backoff's pace.
	evProbe
)

type event struct {
	kind  eventKind
	err   error
	addr  netip.AddrPort // evEvicted
	down  bool           // evEvicted
	fresh bool           // evVerified
}

// maxEvents bounds the queue while the loop is busy (a slow state hook):
// the oldest events go first; the newest say the latest truth.
const maxEvents = 256

// inbox is the loop's event queue.
type inbox struct {
	mu   sync.Mutex
	q    []event
	kick chan struct{} // capacity 1
}

// post queues e and wakes the loop. It never blocks.
func (c *Connector) post(e event) {
	c.in.mu.Lock()
	if n := len(c.in.q); n > 0 && c.in.q[n-1].kind == e.kind && (e.kind == evVerified || e.kind == evProbe) {
		c.in.q[n-1] = e // the same news again: keep the latest cause
	} else {
		if n >= maxEvents {
			c.in.q = c.in.q[1:]
		}
		c.in.q = append(c.in.q, e)
	}
	c.in.mu.Unlock()
	c.wake()
}

// wake makes the loop look at its inputs again.
func (c *Connector) wake() {
	select {
	case c.in.kick <- struct{}{}:
	default:
	}
}

// takeEvents empties the queue.
func (c *Connector) takeEvents() []event {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	q := c.in.q
	c.in.q = nil
	return q
}

// demandInterval is the least time between two probes started for callers
// while the connector is not Ready.
const demandInterval = 250 * time.Millisecond

// loop is the state the connector's goroutine keeps between iterations.
type loop struct {
	bo         backoff
	inflight   int
	warmDials  int
	next       time.Time // when the next background probe may start
	lastProbe  time.Time // when the newest background probe started
	demand     bool      // a probe started for a caller is in flight
	lastDemand time.Time
	permRetry  int // retries since the first permanent error
	results    chan probeResult
	probes     sync.WaitGroup
}

// run is the connector's background goroutine: it connects until StateReady,
// keeps MinConns warm at the start, probes again whenever the connector goes
// StateDown (with capped, jittered backoff, or at a caller's request), and
// applies the events others post, until Close.
func (c *Connector) run() {
	l := &loop{results: make(chan probeResult, maxProbes+2), next: time.Now()}
	defer c.shutdown(l)
	limit := probeLimit(c.cfg.ConnectTimeout)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var dnsTick <-chan time.Time
	if c.cfg.DNSRecheck > 0 {
		t := time.NewTicker(c.cfg.DNSRecheck)
		defer t.Stop()
		dnsTick = t.C
	}
	for {
		for _, e := range c.takeEvents() {
			c.apply(l, e)
		}
		if c.ctx.Err() != nil {
			return
		}
		st := c.ready.current()
		now := time.Now()
		// A probe starts when the backoff allows it and, while others are
		// in flight, once the newest has been pending for probeOverlap:
		// attempts overlap only when one is stuck (a blackholed address).
		startAt := l.next
		if l.inflight > 0 {
			startAt = later(l.next, l.lastProbe.Add(probeOverlap))
		}
		if st != StateReady && l.inflight < limit && !now.Before(startAt) {
			l.next, l.lastProbe = now.Add(l.bo.next()), now
			startAt = later(l.next, l.lastProbe.Add(probeOverlap))
			c.startProbe(l, probeBackground)
		}
		if st == StateReady && l.inflight == 0 && l.warmDials < c.cfg.MinConns && c.warmCount() < c.cfg.MinConns {
			l.warmDials++
			c.startProbe(l, probeWarming)
		}
		var wait <-chan time.Time
		if st != StateReady && l.inflight < limit {
			resetTimer(timer, time.Until(startAt))
			wait = timer.C
		}
		select {
		case <-c.ctx.Done():
			return
		case r := <-l.results:
			l.inflight--
			c.settle(l, r)
		case <-wait:
		case <-c.in.kick:
		case <-dnsTick:
			// Off the loop: a slow resolver must not delay the events.
			if st == StateReady && c.dnsBusy.CompareAndSwap(false, true) {
				if !c.bg.goIfOpen(func() {
					defer c.dnsBusy.Store(false)
					c.recheckDNS(c.ctx)
				}) {
					c.dnsBusy.Store(false)
				}
			}
		}
	}
}

// apply handles one posted event.
func (c *Connector) apply(l *loop, e event) {
	st := c.ready.current()
	switch e.kind {
	case evEvicted:
		if c.log != nil {
			c.log.Warn("pgfast: evicted connections to an address", "addr", e.addr.String(), "cause", e.err)
		}
		if e.down {
			c.setState(StateDown, fmt.Errorf("%s: %w", e.addr, e.err))
		}
	case evDialFailed:
		if hookFailed(e.err) {
			return // the application's hook failed: nothing about the server
		}
		if pe := c.permanent(e.err); pe != nil {
			c.failPermanently(l, pe)
		} else if isNetworkFailure(e.err) {
			c.setState(StateDown, e.err)
		}
	case evVerified:
		if perm, _ := c.ready.failedPermanently(); perm && !e.fresh {
			// Sessions opened before the password or role changed keep
			// working; only a fresh login proves new ones would.
			return
		}
		c.succeeded(l)
	case evProbe:
		now := time.Now()
		if perm, _ := c.ready.failedPermanently(); st != StateDown || perm || l.demand ||
			now.Sub(l.lastDemand) < demandInterval {
			return
		}
		l.demand, l.lastDemand = true, now
		c.startProbe(l, probeDemand)
	}
}

// probeKind says why a probe was started.
type probeKind uint8

const (
	probeBackground probeKind = iota // the backoff's pace while not Ready
	probeWarming                     // a warm connection while Ready
	probeDemand                      // a caller asked while not Ready
)

// probeResult is the outcome of one background connection attempt.
type probeResult struct {
	conn driver.Conn
	err  error
	kind probeKind
}

// startProbe dials in a goroutine of its own. Its result reaches the loop,
// or, once the loop has stopped, is closed by the goroutine itself.
func (c *Connector) startProbe(l *loop, kind probeKind) {
	l.inflight++
	l.probes.Add(1)
	go func() {
		defer l.probes.Done()
		dc, err := c.dial(probeContext(c.ctx)) // never skipped (dial_skip.go)
		c.resMu.Lock()
		defer c.resMu.Unlock()
		if c.resClosed {
			if dc != nil {
				_ = dc.Close()
			}
			return
		}
		l.results <- probeResult{conn: dc, err: err, kind: kind} // buffered: never blocks
	}()
}

// maxProbes bounds probes in flight: probeLimit's cap, one for a caller
// and one warming.
const maxProbes = 8 + 2

// settle applies a probe's outcome.
func (c *Connector) settle(l *loop, r probeResult) {
	if r.kind == probeDemand {
		l.demand = false
	}
	if r.err != nil {
		if c.ctx.Err() != nil || hookFailed(r.err) {
			return // a hook's failure says nothing about the server
		}
		if r.kind == probeWarming {
			l.warmDials = c.cfg.MinConns // the database answered before: stop warming
			return
		}
		if pe := c.permanent(r.err); pe != nil {
			c.failPermanently(l, pe)
			return
		}
		c.setState(StateDown, r.err)
		return
	}
	if !c.addWarm(r.conn) {
		_ = r.conn.Close()
	}
	c.succeeded(l)
}

// succeeded records a verified connection: Ready, and the backoffs start over.
func (c *Connector) succeeded(l *loop) {
	l.bo.reset()
	l.permRetry = 0
	c.setState(StateReady, nil)
}

// failPermanently records an error waiting cannot fix: Down at once (Ready
// and Connect return it), and the next background attempt only after
// permanentRetry.
func (c *Connector) failPermanently(l *loop, pe *permanentError) {
	l.permRetry++
	if c.retryFreshCredential(l, pe, l.permRetry) {
		return
	}
	l.next = later(l.next, time.Now().Add(permanentRetry(l.permRetry, jitter)))
	c.setStateOf(StateDown, pe, true)
}

func jitter(max time.Duration) time.Duration { return rand.N(max + 1) }

// permanent classifies err with the backend's help.
func (c *Connector) permanent(err error) *permanentError {
	return permanent(err, c.adapter.refusedTLS)
}

// setState moves to st with cause err (a transient one).
func (c *Connector) setState(st State, err error) { c.setStateOf(st, err, false) }

// setStateOf moves to st with cause err, and logs and reports the change
// once. Only the connector's goroutine calls it (and Close, for a connector
// without one), so the hook sees changes one at a time, in order.
func (c *Connector) setStateOf(st State, err error, permanent bool) {
	if !c.ready.set(st, err, permanent) {
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
		c.inHook.Store(true)
		defer c.inHook.Store(false)
		c.stateHook(st, err)
	}
}

// closeWait bounds how long Close waits for the connector's goroutine and for
// the probes and verifications it started: a backend stuck in a loop that
// ignores its context (lib/pq's prefer-standby with every host down) is
// abandoned; what it returns, if it ever does, is closed on arrival.
const closeWait = 2 * time.Second

// shutdown ends the connector's goroutine: StateClosed (reported to the
// hook), then a bounded wait for the probes in flight, whose connections are
// closed.
func (c *Connector) shutdown(l *loop) {
	c.cancel()
	c.setState(StateClosed, ErrClosed)
	if !waitBounded(&l.probes, closeWait) {
		c.abandoned.Store(true)
	}
	c.resMu.Lock()
	c.resClosed = true
	c.resMu.Unlock()
	for len(l.results) > 0 {
		if r := <-l.results; r.conn != nil {
			_ = r.conn.Close()
		}
	}
	c.bg.closeAndWait(closeWait)
	close(c.done)
}

// waitBounded waits for wg, at most d.
func waitBounded(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
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

// resetTimer makes t fire after d.
func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}

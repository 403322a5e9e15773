package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// The connector's loop is a serial executor, not a resident goroutine:
// post appends an event to a mutex-guarded queue and, when no drain runs,
// starts one (go drain). The drain applies the events, starts attempts
// (goroutines that post their results), arms one timer (time.AfterFunc,
// posting a wake) when it must act later, and exits once the queue is
// empty. Only one drain runs at a time, so it is the only writer of the
// state and the only caller of the state hook: hook calls arrive one at a
// time, in order, never under a lock. The poster never waits for the loop
// nor runs user code. A Ready, idle connector holds no goroutine and no
// armed timer.

type eventKind uint8

const (
	// evEvicted: an address was evicted (down: as unreachable).
	evEvicted eventKind = iota
	// evDialFailed: a caller's dial (begun at mark began) failed with err.
	evDialFailed
	// evVerified: a connection works: a fresh login, or one in use that
	// read its server's answer since the last failure.
	evVerified
	// evAttemptNow: a caller wants a connection while not Ready.
	evAttemptNow
	// evAttemptDone: one of the loop's own attempts ended (res); through
	// the same queue so all reports apply in the order they happened.
	evAttemptDone
	// evWake: the loop's timer fired, or Close or start asks for a drain.
	evWake
	// evRewarm: Drain (drain.go) closed warm connections: make
	// pgfast_min_conns new ones.
	evRewarm
)

type event struct {
	kind  eventKind
	err   error
	addr  netip.AddrPort // evEvicted
	down  bool           // evEvicted
	fresh bool           // evVerified
	began attemptMark    // evDialFailed: when the dial began (0: unknown, taken as current)
	ev    loginEvidence  // evDialFailed: what the dial's sockets saw
	res   attemptResult  // evAttemptDone
}

// maxEvents bounds the queue while the loop is busy (a slow state hook): the
// oldest go first, but an attempt's result (it holds a connection) never.
const maxEvents = 256

type inbox struct {
	mu sync.Mutex
	q  []event
	// draining: a drain runs, or is about to (also set from the start until
	// start, so early posts only queue); stopped: the loop shut down, posts
	// are dropped (a Connector without background work starts so).
	draining, stopped bool
}

// post queues e and starts a drain if none runs. It never blocks.
func (c *Connector) post(e event) {
	c.in.mu.Lock()
	if c.in.stopped {
		c.in.mu.Unlock()
		return
	}
	if n := len(c.in.q); n > 0 && c.in.q[n-1].kind == e.kind && (e.kind == evVerified || e.kind == evAttemptNow || e.kind == evWake) {
		// Merged: fresh when either was (a fresh login ends a Down that
		// answered I/O cannot).
		e.fresh = e.fresh || c.in.q[n-1].fresh
		c.in.q[n-1] = e
	} else {
		if len(c.in.q) >= maxEvents {
			c.in.q = dropOldest(c.in.q)
		}
		c.in.q = append(c.in.q, e)
	}
	start := !c.in.draining
	c.in.draining = true
	c.in.mu.Unlock()
	if start {
		go c.drain()
	}
}

func dropOldest(q []event) []event {
	for i, e := range q {
		if e.kind != evAttemptDone {
			return append(q[:i], q[i+1:]...)
		}
	}
	return q
}

func (c *Connector) takeEvents() []event {
	c.in.mu.Lock()
	defer c.in.mu.Unlock()
	q := c.in.q
	c.in.q = nil
	return q
}

// demandInterval is the least time between two attempts started for callers
// while the connector is not Ready.
const demandInterval = 250 * time.Millisecond

type loop struct {
	bo       backoff
	inflight int
	// flying lists the attempts in flight, to tell whether they are all
	// still before their TCP handshake and to cancel them on a success.
	flying      []*attempt
	warmDials   int
	next        time.Time // when the next background attempt may start
	lastAttempt time.Time // when the newest background attempt started
	demand      bool      // an attempt started for a caller is in flight
	lastDemand  time.Time
	asked       bool // a caller asked for an attempt (evAttemptNow)
	permRetry   int  // retries since the first permanent error
	// freshRetry is the fresh-credential retry in flight (beforeconnect.go).
	freshRetry *attempt
	// needFresh: an error waiting cannot fix was recorded and no fresh
	// login succeeded since, so answered I/O on older sessions does not
	// end Down.
	needFresh bool
	jitter    func(max time.Duration) time.Duration
	running   sync.WaitGroup
	limit     int         // attempts in flight at most (attemptLimit)
	timer     *time.Timer // posts evWake (time.AfterFunc); nil until first needed
	// queued counts the connector's dials waiting for admission (nil: none).
	queued func() int
}

// jitterSource lets a test backend make the loop's random delays
// reproducible from its seed.
type jitterSource interface {
	jitter(max time.Duration) time.Duration
}

// newLoop makes the loop's state, which outlives each drain.
func (c *Connector) newLoop() *loop {
	l := &loop{next: time.Now(), jitter: jitter, limit: attemptLimit(c.cfg.ConnectTimeout), queued: c.queued}
	if s, ok := c.backend.(jitterSource); ok {
		l.jitter = s.jitter
	}
	l.bo.rand = l.jitter
	return l
}

// drain is one activation of the loop: it applies every queued report,
// then acts on the state (connect until Ready, keep MinConns warm at the
// start and after a recovery, attempt again when Down at the backoff's pace
// or on demand), and exits when nothing is queued; at Close it shuts down.
func (c *Connector) drain() {
	l := c.lp
	for {
		// Apply every report first, so an attempt begins after all earlier news.
		for evs := c.takeEvents(); len(evs) > 0; evs = c.takeEvents() {
			for _, e := range evs {
				c.apply(l, e)
			}
		}
		if c.ctx.Err() != nil {
			c.shutdown(l)
			return
		}
		c.step(l)
		// Exit only with nothing queued, deciding under the lock post
		// takes: a report posted after this sees draining false and
		// starts the next drain.
		c.in.mu.Lock()
		if len(c.in.q) == 0 {
			c.in.draining = false
			c.in.mu.Unlock()
			return
		}
		c.in.mu.Unlock()
	}
}

// step starts what the state calls for and arms the timer for the next
// thing due, or stops it.
func (c *Connector) step(l *loop) {
	st := c.ready.current()
	now := time.Now()
	// One attempt at a time: another starts beside those in flight only
	// while none has completed its TCP handshake (a SYN lost in a
	// blackhole), never beside a slow startup.
	// An attempt waiting for admission sent nothing: no SYN to lose, and
	// one more beside it would only lengthen the queue (the timer below
	// still looks again once it is admitted).
	stuck := l.allBeforeHandshake() && (l.queued == nil || l.queued() == 0)
	if l.asked {
		l.asked = false
		if perm, _ := c.ready.failedPermanently(); st == StateDown && !perm && !l.demand && stuck &&
			now.Sub(l.lastDemand) >= demandInterval {
			l.demand, l.lastDemand = true, now
			c.startAttempt(l, attemptDemand)
		}
	}
	// While others are in flight, a new attempt starts only once the newest
	// has been pending for attemptOverlap before its handshake.
	startAt := l.next
	if l.inflight > 0 {
		startAt = later(l.next, l.lastAttempt.Add(attemptOverlap))
	}
	if st != StateReady && l.inflight < l.limit && stuck && !now.Before(startAt) {
		l.next, l.lastAttempt = now.Add(l.bo.next()), now
		startAt = later(l.next, l.lastAttempt.Add(attemptOverlap))
		c.startAttempt(l, attemptBackground)
	}
	if st == StateReady && l.inflight == 0 && l.warmDials < c.cfg.MinConns && c.warmCount() < c.cfg.MinConns {
		l.warmDials++
		c.startAttempt(l, attemptWarming)
	}
	if st != StateReady && l.inflight < l.limit && l.allBeforeHandshake() {
		// (A handshake completing meanwhile only makes the wake find
		// nothing to start.) While an attempt waits for admission
		// startAt may be past: look again in attemptOverlap, not at once,
		// or the loop would spin until it is admitted.
		d := time.Until(startAt)
		if !stuck {
			d = max(d, attemptOverlap)
		}
		c.wakeAfter(l, d)
	} else if l.timer != nil {
		l.timer.Stop()
	}
}

// wakeAfter arms the loop's one timer: a drain in d.
func (c *Connector) wakeAfter(l *loop, d time.Duration) {
	if l.timer == nil {
		l.timer = time.AfterFunc(d, func() { c.post(event{kind: evWake}) })
		return
	}
	l.timer.Reset(d)
}

func (c *Connector) apply(l *loop, e event) {
	switch e.kind {
	case evEvicted:
		if c.log != nil {
			c.log.Warn("pgfast: evicted connections to an address", "addr", e.addr.String(), "cause", e.err)
		}
		if e.down {
			c.setState(StateDown, fmt.Errorf("%s: %w", e.addr, e.err))
		}
	case evDialFailed:
		c.attemptFailed(l, e.err, e.began, false, e.ev)
	case evVerified:
		if l.needFresh && !e.fresh {
			// Sessions opened before the password or role changed keep
			// working; only a fresh login proves new ones would.
			return
		}
		if c.ready.current() != StateReady {
			// A recovery by a caller's dial or by sessions in use: that
			// connection is the tenant's first, as a warm one would be.
			l.warmDials = 1
		}
		c.succeeded(l, e.fresh)
	case evAttemptNow:
		l.asked = true // started once every report is applied (run)
	case evAttemptDone:
		l.inflight--
		c.settle(l, e.res)
	case evWake:
	case evRewarm:
		l.warmDials = 0
	}
}

type attemptKind uint8

const (
	attemptBackground attemptKind = iota // the backoff's pace while not Ready
	attemptWarming                       // a warm connection while Ready
	attemptDemand                        // a caller asked while not Ready
	attemptFresh                         // a fresh-credential retry (beforeconnect.go): a fresh login, a pool's too
)

type attemptResult struct {
	conn  driver.Conn
	err   error
	kind  attemptKind
	began attemptMark   // when the attempt began
	ev    loginEvidence // what its sockets saw, when it failed
	a     *attempt
}

// attempt is one of the loop's attempts in flight.
type attempt struct {
	kind   attemptKind
	rec    *loginRecord
	cancel context.CancelFunc
}

// allBeforeHandshake reports whether no attempt in flight has completed a
// TCP handshake (true with none in flight).
func (l *loop) allBeforeHandshake() bool {
	for _, a := range l.flying {
		if a.rec.handshaken() {
			return false
		}
	}
	return true
}

func (l *loop) landed(a *attempt) {
	for i, x := range l.flying {
		if x == a {
			l.flying = append(l.flying[:i], l.flying[i+1:]...)
			return
		}
	}
}

// cancelFlying cancels the attempts in flight other than warm dials: a
// verified connection makes them useless (cause A6: their logins were
// closed on arrival).
func (l *loop) cancelFlying() {
	for _, a := range l.flying {
		if a.kind != attemptWarming {
			a.cancel()
		}
	}
}

// attemptKey marks the context of the loop's own attempts: a pool's gate
// lets them through, and its tracer leaves their outcome to the loop. Its
// value is the attempt's own context (attemptContext).
type attemptKey struct{}

func isLoopAttempt(ctx context.Context) bool { return ctx.Value(attemptKey{}) != nil }

// attemptContext returns the loop attempt's own context when ctx carries
// one's values: pgxpool connects with a context that keeps the Acquire's
// values but not its cancellation (pool_hooks.go follows it).
func attemptContext(ctx context.Context) context.Context {
	a, _ := ctx.Value(attemptKey{}).(context.Context)
	return a
}

// startAttempt dials in a goroutine of its own. Its result reaches the loop,
// or, once the loop has stopped, is closed by the goroutine itself.
func (c *Connector) startAttempt(l *loop, kind attemptKind) {
	l.inflight++
	l.running.Add(1)
	began := c.ready.mark()
	ctx, cancel := context.WithCancel(netx.NoSkip(c.ctx)) // the connector's own (netx.NoSkip); a dead verdict fails it at once too: the view's pulse finds the server again
	ctx = context.WithValue(ctx, attemptKey{}, ctx)
	if kind == attemptFresh {
		ctx = context.WithValue(ctx, freshLoginKey{}, true)
	}
	ctx, rec := withLoginRecord(ctx)
	a := &attempt{kind: kind, rec: rec, cancel: cancel}
	l.flying = append(l.flying, a)
	go func() {
		defer l.running.Done()
		dc, err := c.login(ctx)
		var ev loginEvidence
		if err != nil {
			ev = rec.evidence(err)
		}
		cancel()
		c.resMu.Lock()
		defer c.resMu.Unlock()
		if c.resClosed {
			if dc != nil {
				_ = dc.Close()
			}
			return
		}
		c.post(event{kind: evAttemptDone, res: attemptResult{conn: dc, err: err, kind: kind, began: began, ev: ev, a: a}})
	}()
}

// login is one attempt's login: through the backend, or for a pool through
// the pool itself, so that its connection is the pool's first (nil conn).
func (c *Connector) login(ctx context.Context) (driver.Conn, error) {
	if f := c.poolLogin.Load(); f != nil && ctx.Value(freshLoginKey{}) == nil {
		// No watcher goroutine waits for the pool's Close (poolreg.go): a
		// Down pool connector's attempts are where it notices.
		if c.closeIfPoolClosed() {
			return nil, ErrClosed
		}
		err := (*f)(ctx)
		if eagerOutcome(err) {
			// pgxpool's eager connect was the attempt (pool_eager.go); its
			// end reported that dial, counted it and moved the state.
			return nil, &noEvidenceError{err: err}
		}
		c.stats.dials.Add(1)
		if err != nil {
			c.countFailure(ctx, err)
			return nil, err
		}
		return nil, nil
	}
	return c.dial(ctx)
}

func (c *Connector) settle(l *loop, r attemptResult) {
	l.landed(r.a)
	if r.kind == attemptDemand {
		l.demand = false
	}
	if r.err != nil {
		if c.ctx.Err() != nil {
			return
		}
		if hookFailed(r.err) {
			// A hook's failure says nothing about the server; whoever
			// waits for this attempt gets it.
			c.ready.refused(r.err)
			return
		}
		var ne *noEvidenceError
		if errors.As(r.err, &ne) {
			return
		}
		if r.kind == attemptWarming {
			// A warm dial fails like a caller's (the database answered
			// before); warming stops either way.
			l.warmDials = c.cfg.MinConns
			c.attemptFailed(l, r.err, r.began, false, r.ev)
			return
		}
		c.attemptFailed(l, r.err, r.began, true, r.ev)
		return
	}
	if c.ready.current() != StateReady {
		// Made at the start and again after a recovery: pgfast_min_conns
		// counts from here.
		l.warmDials = 0
	}
	if r.conn != nil {
		if !c.addWarm(r.conn) {
			_ = r.conn.Close()
		} else if r.kind != attemptWarming {
			// This connection counts as warm: dialling it again once a query
			// takes it would be a second backend for an idle tenant.
			l.warmDials++
		}
	}
	if r.conn == nil && l.needFresh && (r.a == nil || !r.a.rec.handshaken()) {
		// A pool's attempt that pinged a connection the pool already held
		// is answered I/O on an old session, not a fresh login: after a
		// password change it must not end Down (needFresh).
		c.apply(l, event{kind: evVerified})
		return
	}
	c.succeeded(l, true)
}

// noEvidenceError is an attempt's failure that says nothing about the
// server (a pool attempt that only waited for a slot).
type noEvidenceError struct{ err error }

func (e *noEvidenceError) Error() string { return e.err.Error() }
func (e *noEvidenceError) Unwrap() error { return e.err }

// attemptFailed applies the failure of an attempt begun at mark began.
// Evidence is ordered by when the attempt began: a connection verified since
// is newer news (an old attempt stuck on a blackholed address times out
// after a newer one succeeded), and the failure changes nothing. Otherwise an
// error waiting cannot fix is Down for good; a login the server answered,
// or whose address was heard meanwhile (ev, login_evidence.go), is a slow or
// refusing server: the attempt fails to its caller only; a network failure
// is Down, and any other error is Down only for a background attempt
// (anyError), not a fresh dial.
func (c *Connector) attemptFailed(l *loop, err error, began attemptMark, anyError bool, ev loginEvidence) {
	if hookFailed(err) || c.ready.outdated(began) {
		return // the application's hook failed, or newer evidence already spoke
	}
	if pe := c.permanent(err); pe != nil {
		c.failPermanently(l, pe)
	} else if ev == loginAnswered {
		c.ready.refused(err)
	} else if anyError || isNetworkFailure(err) {
		c.setState(StateDown, err)
	}
}

// succeeded records a verified connection: Ready, backoffs start over,
// attempts in flight are cancelled.
func (c *Connector) succeeded(l *loop, fresh bool) {
	l.cancelFlying()
	l.bo.reset()
	l.permRetry = 0
	if fresh {
		l.needFresh = false
	}
	c.ready.verified()
	c.setState(StateReady, nil)
}

// failPermanently records an error waiting cannot fix: Down at once, the next
// background attempt only after permanentRetry.
func (c *Connector) failPermanently(l *loop, pe *permanentError) {
	if c.staleCredential(l, pe) {
		return
	}
	l.permRetry++
	l.needFresh = true
	if c.retryFreshCredential(l, pe, l.permRetry) {
		return
	}
	l.next = later(l.next, time.Now().Add(permanentRetry(l.permRetry, l.jitter)))
	c.setStateOf(StateDown, pe, true)
}

func jitter(max time.Duration) time.Duration { return rand.N(max + 1) }

func (c *Connector) permanent(err error) *permanentError {
	return permanent(err, c.adapter.refusedTLS)
}

func (c *Connector) setState(st State, err error) { c.setStateOf(st, err, false) }

// setStateOf moves to st with cause err, logging and reporting the change
// once. Only the loop's drain calls it (and Close, for a connector
// without one).
func (c *Connector) setStateOf(st State, err error, permanent bool) {
	if !c.ready.set(st, err, permanent) {
		return
	}
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

// closeWait bounds Close's wait for the loop and its attempts: a backend
// ignoring its context (lib/pq's prefer-standby with every host down) is
// abandoned, and what it returns later is closed on arrival.
const closeWait = 2 * time.Second

// shutdown ends the loop, on its last drain: StateClosed, then a bounded
// wait for the attempts in flight, whose connections are closed; posts are
// dropped from then on, and nothing is left running or armed.
func (c *Connector) shutdown(l *loop) {
	c.cancel()
	if l.timer != nil {
		l.timer.Stop()
	}
	c.setState(StateClosed, ErrClosed)
	if !waitBounded(&l.running, closeWait) {
		c.abandoned.Store(true)
	}
	c.resMu.Lock()
	c.resClosed = true
	c.resMu.Unlock()
	for _, e := range c.takeEvents() {
		if e.kind == evAttemptDone && e.res.conn != nil {
			_ = e.res.conn.Close()
		}
	}
	c.bg.closeAndWait(closeWait)
	c.in.mu.Lock()
	c.in.stopped, c.in.draining, c.in.q = true, false, nil
	c.in.mu.Unlock()
	close(c.done)
}

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

// attemptOverlap is how long the newest background attempt must be pending
// before another may start beside it.
const attemptOverlap = time.Second

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// attemptLimit is how many background attempts may be in flight: enough that
// an address blackholing for a whole connect_timeout never stops a fresh
// attempt from starting within maxBackoff.
func attemptLimit(connectTimeout time.Duration) int {
	return min(int(connectTimeout/maxBackoff)+2, 8)
}

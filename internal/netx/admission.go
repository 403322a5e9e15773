package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Admission control: a bounded number of startups in flight per resolved
// address, process-wide, first come first served (issue 19 item 3). A
// thousand tenants starting at once otherwise fork a thousand backends
// together, and the server, busy forking, answers none of them within
// connect_timeout. Queued, they are served at the pace the server can take,
// and the time queued is not connect_timeout's: the attempt's deadline is
// armed at admission.
//
// A startup holds a slot from just before connect() until its login ends:
// the root calls Login.End. The slot is also released when the socket
// closes and at the attempt's deadline, so a slot cannot leak. Dials whose
// context carries no Login (cancel requests, diagnostics) are not admitted:
// they bypass the queue.

const (
	admitStart = 16  // initial slots per address
	admitMin   = 4   // the limit never goes below
	admitMax   = 256 // nor above
	// admitBaseWindow: base latency is the fastest login seen this long.
	admitBaseWindow = 30 * time.Second
	// admitSlack: a latency within 2·base + slack is no queueing.
	admitSlack = 10 * time.Millisecond
	// admitSynGrace: a connect() unanswered this long is a lost SYN or a
	// blackholed address, not load on a server (nothing was forked): its
	// slot goes to the next startup. Without it a blackholed address would
	// hold every slot for connect_timeout and a caller's dial would queue
	// behind them before its own connect_timeout even starts, which is
	// later than raw moves on to the next host.
	admitSynGrace = time.Second
)

// admitKey is a resolved address, or a unix socket's path.
type admitKey struct {
	addr netip.AddrPort
	path string
}

// admission is a table of gates, one per address. It holds only plain data
// under a mutex: each waiter blocks on a channel it made itself, and no
// timer or goroutine is kept (deadpeer.go's synctest rule).
type admission struct {
	now func() time.Time
	// admitting, if set, is told each admission's gate before it (tests).
	admitting func(g *gate)

	mu    sync.Mutex
	gates map[admitKey]*gate
}

// admissions is the process's table.
var admissions = newAdmission(time.Now)

func newAdmission(now func() time.Time) *admission {
	return &admission{now: now, gates: make(map[admitKey]*gate)}
}

// gate is one address's slots, queue and limit.
type gate struct {
	limit float64            // slots: floor(limit)
	held  map[*slot]struct{} // slots admitted and not released
	queue []*waiter
	// samples is a monotonic deque of login latencies (ascending ℓ and
	// time) whose front is the minimum of the last admitBaseWindow.
	samples []latencySample
	// cut is when the limit last went down: a login admitted before it saw
	// the old limit, and its latency does not lower the limit again.
	cut     time.Time
	lastUse time.Time
	// live counts held slots whose connect() succeeded. silent is set
	// when a slot gave its place up unanswered (admitSynGrace) while none
	// was live: the address answers no SYN (blackholed, or its host gone),
	// nothing is forked there, and queueing would only make callers wait
	// longer than raw before their own connect_timeout; while it is set,
	// startups are admitted without limit. A connect() that succeeds ends it.
	live   int
	silent bool
}

// room reports whether another startup may be admitted now.
func (g *gate) room() bool { return g.silent || len(g.held) < g.capacity() }

type latencySample struct {
	at time.Time
	l  time.Duration
}

func (g *gate) capacity() int { return int(g.limit) }

// waiter is a dial in the queue; admit closes ch once s is set.
type waiter struct {
	ch      chan struct{}
	g       *gate
	login   *Login
	key     admitKey
	timeout time.Duration
	cont    bool // continues an admitted login: ahead of fresh startups
	s       *slot
}

// slot is one admitted startup to one address.
type slot struct {
	a        *admission
	g        *gate
	key      admitKey
	login    *Login
	admitted time.Time
	deadline time.Time // zero: no connect_timeout
	timeout  time.Duration
	// refs counts the dials in progress and sockets open on the slot; the
	// last one to go releases it.
	refs     int
	released bool
	// connected: the connect() it admitted returned (admitSynGrace);
	// live: it succeeded while the slot was held (gate.live).
	connected, live bool
}

// signal is what a released slot says about the server.
type signal int

const (
	sigNone    signal = iota // cancelled, closed early, failed otherwise
	sigDone                  // the login succeeded: a latency sample
	sigSlow                  // past connect_timeout: queueing in the server
	sigTooMany               // 53300 too_many_connections
)

// gateFor returns key's gate, making it (and pruning long idle ones).
func (a *admission) gateFor(key admitKey, now time.Time) *gate {
	g := a.gates[key]
	if g == nil {
		for k, o := range a.gates {
			if len(o.held) == 0 && len(o.queue) == 0 && now.Sub(o.lastUse) > admitBaseWindow {
				delete(a.gates, k)
			}
		}
		g = &gate{limit: admitStart, held: make(map[*slot]struct{})}
		a.gates[key] = g
	}
	g.lastUse = now
	return g
}

// acquire admits one startup of login l to key, queueing (FIFO) while the
// address's slots are taken; ctx bounds the wait. A dial continuing l's
// admitted startup to key (pgx's sslmode=prefer fallback) shares its slot,
// and one whose slot a socket close released goes ahead of every fresh
// startup.
func (a *admission) acquire(ctx context.Context, l *Login, key admitKey, timeout time.Duration) (*slot, error) {
	s, w := a.enter(l, key, timeout, ctx.Err() != nil)
	if s != nil {
		return s, nil
	}
	if w == nil {
		return nil, ctx.Err()
	}
	// While queued, a holder whose SYN went unanswered for admitSynGrace
	// gives its slot up: looked at once per grace period (this waiter's own
	// timer; the table keeps none).
	t := time.NewTimer(admitSynGrace)
	defer t.Stop()
	for {
		select {
		case <-w.ch:
			return w.s, nil
		case <-ctx.Done():
		case <-t.C:
			a.mu.Lock()
			a.expire(w.g, a.now())
			a.mu.Unlock()
			t.Reset(admitSynGrace)
			continue
		}
		break
	}
	if s := a.leave(w); s != nil {
		a.release(s, sigNone) // admitted as ctx ended
	}
	return nil, ctx.Err()
}

// enter admits at once (s), or queues w, or neither when done (the
// caller's context has ended).
func (a *admission) enter(l *Login, key admitKey, timeout time.Duration, done bool) (s *slot, w *waiter) {
	prev := l.slotFor(key)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if prev != nil && !prev.released {
		prev.refs++
		return prev, nil
	}
	g := a.gateFor(key, now)
	a.expire(g, now)
	cont := prev != nil
	if g.room() && (len(g.queue) == 0 || cont && !g.queue[0].cont) {
		return a.admitLocked(g, l, key, timeout, now), nil
	}
	if done {
		return nil, nil
	}
	w = &waiter{ch: make(chan struct{}), g: g, login: l, key: key, timeout: timeout, cont: cont}
	if cont {
		i := 0
		for i < len(g.queue) && g.queue[i].cont {
			i++
		}
		g.queue = slices.Insert(g.queue, i, w)
	} else {
		g.queue = append(g.queue, w)
	}
	return nil, w
}

// leave takes w out of its queue; it returns w's slot if w was admitted
// meanwhile (the caller releases it).
func (a *admission) leave(w *waiter) *slot {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.s != nil {
		return w.s
	}
	if i := slices.Index(w.g.queue, w); i >= 0 {
		w.g.queue = slices.Delete(w.g.queue, i, i+1)
	}
	return nil
}

// admitLocked makes a held slot; a.mu is held.
func (a *admission) admitLocked(g *gate, l *Login, key admitKey, timeout time.Duration, now time.Time) *slot {
	if a.admitting != nil {
		a.admitting(g)
	}
	s := &slot{a: a, g: g, key: key, login: l, admitted: now, timeout: timeout, refs: 1}
	if timeout > 0 {
		s.deadline = now.Add(timeout)
	}
	g.held[s] = struct{}{}
	l.addSlot(s)
	return s
}

// unref drops one dial or socket from s; the last releases it. sig is
// sigSlow when the socket went past its deadline.
func (s *slot) unref() {
	a := s.a
	a.mu.Lock()
	if s.released {
		a.mu.Unlock()
		return
	}
	s.refs--
	if s.refs > 0 {
		a.mu.Unlock()
		return
	}
	now := a.now()
	sig := sigNone
	if !s.deadline.IsZero() && !now.Before(s.deadline) {
		sig = sigSlow
	}
	a.releaseLocked(s, sig, now)
	a.mu.Unlock()
}

func (a *admission) release(s *slot, sig signal) {
	a.mu.Lock()
	a.releaseLocked(s, sig, a.now())
	a.mu.Unlock()
}

// releaseLocked frees s once, adapts the limit to sig and admits waiters.
func (a *admission) releaseLocked(s *slot, sig signal, now time.Time) {
	if s.released {
		return
	}
	s.released = true
	g := s.g
	delete(g.held, s)
	if s.live {
		g.live--
	}
	g.lastUse = now
	g.adapt(s, sig, now)
	a.admitWaiters(g, now)
}

// admitWaiters admits the queue's head while slots are free.
func (a *admission) admitWaiters(g *gate, now time.Time) {
	for len(g.queue) > 0 && g.room() {
		w := g.queue[0]
		g.queue[0] = nil
		g.queue = g.queue[1:]
		w.s = a.admitLocked(g, w.login, w.key, w.timeout, now)
		close(w.ch)
	}
	if len(g.queue) == 0 {
		g.queue = nil // drop the backing array a long queue left
	}
}

// expire releases g's slots past their deadline whose release did not
// come (a driver that never closed the socket nor ended the login), and
// those whose connect() is unanswered after admitSynGrace: the dial goes on
// without a slot.
func (a *admission) expire(g *gate, now time.Time) {
	if len(g.held) < g.capacity() {
		return
	}
	for s := range g.held {
		switch {
		case !s.connected && now.Sub(s.admitted) >= admitSynGrace:
			if g.live == 0 {
				g.silent = true
			}
			a.releaseLocked(s, sigNone, now)
		case !s.deadline.IsZero() && !now.Before(s.deadline):
			a.releaseLocked(s, sigSlow, now)
		}
	}
}

// adapt applies the limit rule to one released slot.
//
//   - A login's latency ℓ runs from admission to its end; base is the
//     fastest of the last 30 s. ℓ ≤ 1.5·base + 10 ms with waiters: the
//     server keeps up, and the limit grows by one slot per such login (it
//     doubles per round, as TCP's slow start: a remote server with a long
//     RTT and many cores reaches the parallelism raw would use within a few
//     rounds). ℓ > 2·base + 10 ms: the server is queueing inside, limit =
//     0.9·limit, but latency alone never takes it below admitStart: on a
//     machine shared with other work a server's logins are slow without
//     being overloaded by us, and fewer startups than raw's would then only
//     make the cold start slower than raw's.
//   - Only failures push it lower (to admitMin): a login past
//     connect_timeout (×0.9), 53300 too many clients (×0.5).
//   - A decrease counts once per round: a login admitted before the last
//     decrease ran under the old limit and lowers it no further.
func (g *gate) adapt(s *slot, sig signal, now time.Time) {
	switch sig {
	case sigDone:
		l := now.Sub(s.admitted)
		base := g.observe(now, l)
		switch {
		case l > 2*base+admitSlack:
			if g.limit > admitStart {
				g.decrease(s, 0.9, now)
				g.limit = max(g.limit, admitStart)
			}
		case l <= base*3/2+admitSlack && len(g.queue) > 0:
			g.limit = min(admitMax, g.limit+1)
		}
	case sigSlow:
		g.decrease(s, 0.9, now)
	case sigTooMany:
		g.decrease(s, 0.5, now)
	}
}

// observe adds a latency sample and returns the window's minimum.
func (g *gate) observe(now time.Time, l time.Duration) time.Duration {
	for len(g.samples) > 0 && g.samples[len(g.samples)-1].l >= l {
		g.samples = g.samples[:len(g.samples)-1]
	}
	g.samples = append(g.samples, latencySample{at: now, l: l})
	for now.Sub(g.samples[0].at) > admitBaseWindow {
		g.samples = g.samples[1:]
	}
	return g.samples[0].l
}

func (g *gate) decrease(s *slot, factor float64, now time.Time) {
	if s.admitted.Before(g.cut) {
		return
	}
	g.limit = max(admitMin, g.limit*factor)
	g.cut = now
}

// Login is one login's claim on admission: the slots its dials were
// admitted to and the sockets whose deadline they armed. Put it in the
// dial's context with WithLogin; End it when the login ends.
type Login struct {
	mu    sync.Mutex
	ended bool
	slots []*slot
	socks []*trackedConn
	// plainIO: a read or write past the attempt's deadline reports as a
	// plain I/O timeout (PlainTimeouts).
	plainIO bool
}

// PlainTimeouts makes a read or write past the attempt's deadline match
// os.ErrDeadlineExceeded only, as lib/pq's own connect_timeout (a socket
// deadline) reports it; by default it also matches context.DeadlineExceeded,
// as pgx's (a context) does. Call it before the first dial.
func (l *Login) PlainTimeouts() { l.plainIO = true }

type loginKey struct{}

// WithLogin returns ctx carrying a new Login: every dial under it is
// admitted, and its socket's deadline is the attempt's connect_timeout
// counted from admission, until End.
func WithLogin(ctx context.Context) (context.Context, *Login) {
	l := &Login{}
	return context.WithValue(ctx, loginKey{}, l), l
}

// LoginOf returns the Login in ctx, nil if none.
func LoginOf(ctx context.Context) *Login {
	l, _ := ctx.Value(loginKey{}).(*Login)
	return l
}

func (l *Login) slotFor(key admitKey) *slot {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.slots) - 1; i >= 0; i-- {
		if l.slots[i].key == key {
			return l.slots[i]
		}
	}
	return nil
}

func (l *Login) addSlot(s *slot) {
	l.mu.Lock()
	l.slots = append(l.slots, s)
	l.mu.Unlock()
}

// End ends the login: its slots are released (a success is a latency
// sample, 53300 halves the limit, a timeout lowers it) and the deadline
// admission armed is cleared from its sockets, so a connection handed out
// carries none. err is the login's outcome; End on nil does nothing, and a
// second End nothing more.
func (l *Login) End(err error) {
	if l == nil {
		return
	}
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	slots, socks := l.slots, l.socks
	l.slots, l.socks = nil, nil
	l.mu.Unlock()

	for _, tc := range socks {
		if tc.attempt.Swap(nil) != nil {
			_ = tc.Conn.SetDeadline(time.Time{})
		}
	}
	sig := signalOf(err)
	for _, s := range slots {
		s.a.mu.Lock()
		now := s.a.now()
		ssig := sig
		if ssig == sigNone && err != nil && !s.deadline.IsZero() && !now.Before(s.deadline) {
			ssig = sigSlow
		}
		s.a.releaseLocked(s, ssig, now)
		s.a.mu.Unlock()
	}
}

// signalOf reads a login's outcome. The SQLSTATE is read through the
// method both drivers' errors have, so netx imports neither.
func signalOf(err error) signal {
	var coded interface{ SQLState() string }
	var own *attemptTimeoutError
	switch {
	case err == nil:
		return sigDone
	case errors.As(err, &coded) && coded.SQLState() == "53300":
		return sigTooMany
	case errors.As(err, &own):
		return sigSlow
	}
	return sigNone
}

// settle hands the dial's reference to s over to the socket it made: the
// socket carries the attempt's deadline, and its Close releases s, until
// the login ends. A failed dial, or one made after the login ended, drops
// its reference; an untracked socket's slot waits for End.
func (s *slot) settle(nc net.Conn, err error) {
	s.a.mu.Lock()
	s.connected = true
	if err == nil {
		s.g.silent = false
		if !s.released {
			s.live = true
			s.g.live++
		}
	}
	s.a.mu.Unlock()
	if err != nil {
		s.unref()
		return
	}
	l := s.login
	l.mu.Lock()
	ended := l.ended
	if !ended {
		if tc := trackedOf(nc); tc != nil {
			tc.attempt.Store(s)
			l.socks = append(l.socks, tc)
			if !s.deadline.IsZero() {
				_ = tc.Conn.SetDeadline(s.deadline)
			}
		}
	}
	l.mu.Unlock()
	if ended {
		s.unref()
	}
}

// attemptExpired turns a deadline error of a socket still in its login
// into the attempt's timeout error, as a dial past connect_timeout reports.
func (c *trackedConn) attemptExpired(err error) error {
	s := c.attempt.Load()
	if s == nil || s.deadline.IsZero() || !IsDeadline(err) || time.Now().Before(s.deadline) {
		return err
	}
	var op *net.OpError
	if errors.As(err, &op) {
		cp := *op
		cp.Err = &attemptTimeoutError{after: s.timeout, err: op.Err, ioOnly: s.login != nil && s.login.plainIO}
		return &cp
	}
	return &attemptTimeoutError{after: s.timeout, err: err, ioOnly: s.login != nil && s.login.plainIO}
}

// admissionFor returns the process's table, or, for a dialer made inside a
// synctest bubble, one of its own.
func admissionFor() *admission {
	if InBubble() {
		return newAdmission(time.Now)
	}
	return admissions
}

// admitted runs dial, one startup's connect() to key, once admitted, with
// the attempt's deadline: connect_timeout from admission (zero for none).
// Without a Login in ctx it runs dial at once. onAdmit, if set, is told
// when the queue is left (the Happy Eyeballs delay starts then).
func (d *Dialer) admitted(ctx context.Context, key admitKey, onAdmit func(), dial func(deadline time.Time) (net.Conn, error)) (net.Conn, error) {
	timeout := d.settings.ConnectTimeout
	l := LoginOf(ctx)
	if l == nil {
		if onAdmit != nil {
			onAdmit()
		}
		var deadline time.Time
		if timeout > 0 {
			deadline = time.Now().Add(timeout)
		}
		return dial(deadline)
	}
	d.queued.Add(1)
	s, err := d.adm.acquire(ctx, l, key, timeout)
	d.queued.Add(-1)
	if err != nil {
		return nil, err
	}
	if onAdmit != nil {
		onAdmit()
	}
	nc, err := dial(s.deadline)
	s.settle(nc, err)
	return nc, err
}

// Queued returns how many of d's dials wait for admission. An attempt
// waiting there has sent nothing: it is not one whose SYN may be lost, and
// starting another beside it only lengthens the queue.
func (d *Dialer) Queued() int { return int(d.queued.Load()) }

// resolveBounded resolves within connect_timeout: the caller's context
// alone no longer bounds a login (queue time is not connect_timeout's), and
// a resolver that hangs must not hold a background attempt for ever.
func (d *Dialer) resolveBounded(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if t := d.settings.ConnectTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	return d.resolve(ctx, network, host)
}

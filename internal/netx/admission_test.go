package netx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is admission's clock in these tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestAdmission() (*admission, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return newAdmission(clk.now), clk
}

var admitTestKey = admitKey{addr: netip.MustParseAddrPort("127.0.0.1:5432")}

// fill admits n fresh logins, which must not queue.
func fill(t *testing.T, a *admission, n int, timeout time.Duration) []*slot {
	t.Helper()
	out := make([]*slot, n)
	for i := range out {
		s, w := a.enter(&Login{}, admitTestKey, timeout, false)
		if s == nil || w != nil {
			t.Fatalf("login %d queued, want admitted", i)
		}
		a.mu.Lock()
		s.connected = true // handshake done: a startup the server works on
		a.mu.Unlock()
		out[i] = s
	}
	return out
}

// TestAdmissionSynGrace: slots whose connect() is unanswered for
// admitSynGrace (a blackholed address) stop holding the queue, so a caller
// is not kept waiting behind attempts that load no server; a slot whose
// handshake completed keeps its place until its deadline.
func TestAdmissionSynGrace(t *testing.T) {
	a, clk := newTestAdmission()
	stuck := make([]*slot, admitStart)
	for i := range stuck {
		s, _ := a.enter(&Login{}, admitTestKey, 10*time.Second, false)
		if s == nil {
			t.Fatalf("login %d queued, want admitted", i)
		}
		stuck[i] = s
	}
	_, w := a.enter(&Login{}, admitTestKey, 10*time.Second, false)
	if w == nil {
		t.Fatal("admitted past the limit")
	}
	clk.advance(admitSynGrace - time.Millisecond)
	a.mu.Lock()
	a.expire(w.g, a.now())
	a.mu.Unlock()
	if admittedNow(w) {
		t.Fatal("admitted before the grace passed")
	}
	clk.advance(time.Millisecond)
	a.mu.Lock()
	a.expire(w.g, a.now())
	a.mu.Unlock()
	if !admittedNow(w) {
		t.Fatal("still queued behind connects unanswered for admitSynGrace")
	}
	if g := a.gateOf(admitTestKey); g.limit != admitStart {
		t.Errorf("limit %.2f after unanswered SYNs, want %d: a blackhole is not a busy server", g.limit, admitStart)
	}

	b, clk2 := newTestAdmission()
	fill(t, b, admitStart, 10*time.Second)
	_, w2 := b.enter(&Login{}, admitTestKey, 10*time.Second, false)
	clk2.advance(2 * admitSynGrace)
	b.mu.Lock()
	b.expire(w2.g, b.now())
	b.mu.Unlock()
	if admittedNow(w2) {
		t.Fatal("a startup past its handshake lost its slot to the grace rule")
	}
}

func (a *admission) gateOf(key admitKey) *gate {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gates[key]
}

func admittedNow(w *waiter) bool {
	select {
	case <-w.ch:
		return true
	default:
		return false
	}
}

func TestAdmissionFIFO(t *testing.T) {
	a, _ := newTestAdmission()
	held := fill(t, a, admitStart, 0)
	var queued []*waiter
	for i := range 5 {
		s, w := a.enter(&Login{}, admitTestKey, 0, false)
		if s != nil || w == nil {
			t.Fatalf("waiter %d admitted past the limit", i)
		}
		queued = append(queued, w)
	}
	for i, s := range held[:5] {
		s.unref() // the socket closed
		for j, w := range queued {
			if got, want := admittedNow(w), j <= i; got != want {
				t.Fatalf("after %d releases: waiter %d admitted = %v, want %v (FIFO)", i+1, j, got, want)
			}
		}
	}
}

func TestAdmissionCancelLeavesQueue(t *testing.T) {
	a, _ := newTestAdmission()
	held := fill(t, a, admitStart, 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := a.acquire(ctx, &Login{}, admitTestKey, 0)
		errc <- err
	}()
	g := a.gateOf(admitTestKey)
	waitFor(t, func() bool { a.mu.Lock(); defer a.mu.Unlock(); return len(g.queue) == 1 })
	_, behind := a.enter(&Login{}, admitTestKey, 0, false)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire = %v, want context.Canceled", err)
	}
	a.mu.Lock()
	n := len(g.queue)
	a.mu.Unlock()
	if n != 1 {
		t.Fatalf("queue holds %d waiters after a cancel, want 1 (the one behind)", n)
	}
	held[0].unref()
	if !admittedNow(behind) {
		t.Fatal("the waiter behind the cancelled one was not admitted by the next release")
	}
	// A context already ended queues nothing.
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := a.acquire(done, &Login{}, admitTestKey, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with an ended context = %v, want context.Canceled", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAdmissionReleaseOnCloseAndDeadline: a slot whose login never ends is
// released by its socket's Close, and, past its deadline, by the next
// startup that finds the address full.
func TestAdmissionReleaseOnCloseAndDeadline(t *testing.T) {
	a, clk := newTestAdmission()
	c1, c2 := net.Pipe()
	defer c2.Close()
	tc := &trackedConn{Conn: c1}
	l := &Login{}
	s, _ := a.enter(l, admitTestKey, time.Second, false)
	s.settle(tc, nil)
	g := a.gateOf(admitTestKey)
	tc.Close()
	if n := len(g.held); n != 0 {
		t.Fatalf("%d slots held after the socket closed, want 0", n)
	}

	held := fill(t, a, admitStart, time.Second) // logins that never end
	_, w := a.enter(&Login{}, admitTestKey, time.Second, false)
	if w == nil {
		t.Fatal("admitted past the limit")
	}
	clk.advance(time.Second)
	s2, _ := a.enter(&Login{}, admitTestKey, time.Second, false)
	if !admittedNow(w) {
		t.Fatal("the queued startup was not admitted once the held slots passed their deadline")
	}
	if s2 == nil {
		t.Fatal("a startup after the deadline sweep was not admitted")
	}
	for _, s := range held {
		if !s.released {
			t.Fatal("a slot past its deadline is still held")
		}
	}
	if g.limit >= admitStart {
		t.Errorf("limit %.2f after logins past connect_timeout, want lowered", g.limit)
	}
}

// TestAdmissionContinuation: a second dial of an admitted login to the
// same address shares its slot; after a socket close released it, the
// login's next dial goes ahead of fresh startups.
func TestAdmissionContinuation(t *testing.T) {
	a, _ := newTestAdmission()
	l := &Login{}
	s, _ := a.enter(l, admitTestKey, 0, false)
	rest := fill(t, a, admitStart-1, 0)
	again, w := a.enter(l, admitTestKey, 0, false)
	if again != s || w != nil {
		t.Fatal("a continuation of a held slot did not share it")
	}
	s.unref() // the first dial's socket closed: still held by the second
	if s.released {
		t.Fatal("released while a continuation still holds it")
	}
	_, fresh1 := a.enter(&Login{}, admitTestKey, 0, false)
	s.unref() // released: the head waiter gets it
	if !admittedNow(fresh1) {
		t.Fatal("the released slot did not go to the head of the queue")
	}
	_, fresh2 := a.enter(&Login{}, admitTestKey, 0, false)
	_, cont := a.enter(l, admitTestKey, 0, false) // the prefer fallback's dial
	if cont == nil || fresh2 == nil {
		t.Fatal("admitted past the limit")
	}
	rest[0].unref()
	if !admittedNow(cont) || admittedNow(fresh2) {
		t.Fatal("the continuation did not go ahead of the fresh startup queued before it")
	}
}

// TestAdmissionLimitRule is the limit rule as a table.
func TestAdmissionLimitRule(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name    string
		limit   float64
		base    time.Duration // an earlier sample within the window
		l       time.Duration
		sig     signal
		waiters bool
		want    float64
	}{
		{"fast with waiters grows by 1", 16, 10 * ms, 12 * ms, sigDone, true, 17},
		{"fast without waiters stays", 16, 10 * ms, 12 * ms, sigDone, false, 16},
		{"between 1.5 base + 10ms and 2 base + 10ms stays", 16, 10 * ms, 26 * ms, sigDone, true, 16},
		{"2 base + 10ms stays", 16, 10 * ms, 30 * ms, sigDone, true, 16},
		{"slow shrinks by 0.9", 32, 10 * ms, 31 * ms, sigDone, true, 32 * 0.9},
		{"slow never below the start", 17, 10 * ms, 100 * ms, sigDone, false, admitStart},
		{"slow at the start stays", 16, 10 * ms, 100 * ms, sigDone, false, 16},
		{"past connect_timeout shrinks", 16, 0, 0, sigSlow, false, 16 * 0.9},
		{"53300 halves", 16, 0, 0, sigTooMany, false, 8},
		{"53300 never below 4", 6, 0, 0, sigTooMany, false, 4},
		{"growth stops at 256", 256, 10 * ms, 10 * ms, sigDone, true, 256},
		{"cancelled says nothing", 16, 0, 0, sigNone, true, 16},
		{"a new minimum is the base", 16, 50 * ms, 5 * ms, sigDone, true, 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			g := &gate{limit: tc.limit, held: map[*slot]struct{}{}}
			if tc.base > 0 {
				g.observe(now.Add(-time.Second), tc.base)
			}
			if tc.waiters {
				g.queue = []*waiter{{}}
			}
			g.adapt(&slot{admitted: now.Add(-tc.l)}, tc.sig, now)
			if d := g.limit - tc.want; d > 1e-9 || d < -1e-9 {
				t.Errorf("limit = %.4f, want %.4f", g.limit, tc.want)
			}
		})
	}
}

func TestAdmissionBaseWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := &gate{limit: admitStart}
	g.observe(now, 5*time.Millisecond)
	g.observe(now.Add(10*time.Second), 20*time.Millisecond)
	if base := g.observe(now.Add(20*time.Second), 30*time.Millisecond); base != 5*time.Millisecond {
		t.Errorf("base = %v within 30s of a 5ms login, want 5ms", base)
	}
	if base := g.observe(now.Add(31*time.Second), 40*time.Millisecond); base != 20*time.Millisecond {
		t.Errorf("base = %v after the 5ms sample left the window, want 20ms", base)
	}
}

// TestAdmissionDecreaseOncePerRound: slow logins admitted before the last
// decrease lower the limit no further (they ran under the old limit).
func TestAdmissionDecreaseOncePerRound(t *testing.T) {
	a, clk := newTestAdmission()
	a.mu.Lock()
	a.gateFor(admitTestKey, a.now()).limit = 2 * admitStart // grown earlier
	a.mu.Unlock()
	held := fill(t, a, 2*admitStart, 0)
	clk.advance(10 * time.Millisecond)
	held[0].login.End(nil) // base 10ms
	clk.advance(time.Second)
	for _, s := range held[1:] {
		s.login.End(nil) // 1s: slow, all admitted before the first decrease
	}
	if g := a.gateOf(admitTestKey); g.limit != 2*admitStart*0.9 {
		t.Errorf("limit = %.2f after one round of slow logins, want %.2f", g.limit, 2*admitStart*0.9)
	}
}

type sqlStateError string

func (e sqlStateError) Error() string    { return "pq: sorry, too many clients already" }
func (e sqlStateError) SQLState() string { return string(e) }

func TestLoginEndSignals(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want signal
	}{
		{nil, sigDone},
		{fmt.Errorf("connect: %w", sqlStateError("53300")), sigTooMany},
		{sqlStateError("28P01"), sigNone},
		{&net.OpError{Op: "read", Err: &attemptTimeoutError{after: time.Second, err: os.ErrDeadlineExceeded}}, sigSlow},
		{context.Canceled, sigNone},
	} {
		if got := signalOf(tc.err); got != tc.want {
			t.Errorf("signalOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestLoginEndClearsDeadline: the deadline armed at admission is on the
// socket until End, and gone after it.
func TestLoginEndClearsDeadline(t *testing.T) {
	a, _ := newTestAdmission()
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	tc := &trackedConn{Conn: c1}
	l := &Login{}
	s, _ := a.enter(l, admitTestKey, time.Nanosecond, false) // the fake clock's deadline is long past
	s.settle(tc, nil)
	buf := make([]byte, 1)
	_, err := tc.Read(buf)
	var own *attemptTimeoutError
	if !errors.As(err, &own) || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read past the attempt's deadline = %v, want an attempt timeout", err)
	}
	l.End(nil)
	go func() { _, _ = c2.Write([]byte{'x'}) }()
	if _, err := tc.Read(buf); err != nil {
		t.Fatalf("read after End = %v, want the deadline cleared", err)
	}
	if g := a.gateOf(admitTestKey); len(g.held) != 0 {
		t.Fatal("End left the slot held")
	}
}

// TestAdmissionProperty drives one address's admission through a seeded
// random interleaving of startups, cancels, successes, timeouts, 53300s,
// socket closes, continuations and deadline sweeps: no startup is admitted
// while the limit's slots are taken, a free slot never leaves a waiter
// queued, and once every login ended each slot is released.
func TestAdmissionProperty(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { admissionProperty(t, seed, 10_000) })
	}
}

func admissionProperty(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	a, clk := newTestAdmission()
	var violations int
	a.admitting = func(g *gate) {
		if len(g.held) >= g.capacity() && !g.silent {
			violations++
		}
	}
	type entry struct {
		l *Login
		s *slot
		w *waiter
	}
	var live []*entry // admitted or queued
	var all []*slot
	const timeout = 2 * time.Second
	// Most connects are answered at once; one in ten never (a lost SYN).
	connect := func(s *slot) {
		if s != nil && !s.connected && rng.IntN(10) > 0 {
			s.settle(nil, nil)
		}
	}
	promote := func() {
		for _, e := range live {
			if e.w != nil && admittedNow(e.w) {
				e.s, e.w = e.w.s, nil
				all = append(all, e.s)
				connect(e.s)
			}
		}
	}
	drop := func(i int) { live = append(live[:i], live[i+1:]...) }
	for step := range steps {
		clk.advance(time.Duration(rng.IntN(20)) * time.Millisecond)
		switch op := rng.IntN(10); {
		case op < 4 || len(live) == 0: // a new startup
			l := &Login{}
			s, w := a.enter(l, admitTestKey, timeout, false)
			if s != nil {
				all = append(all, s)
				connect(s)
			}
			live = append(live, &entry{l: l, s: s, w: w})
		default:
			i := rng.IntN(len(live))
			e := live[i]
			if e.w != nil { // queued: cancel
				if s := a.leave(e.w); s != nil {
					a.release(s, sigNone)
				}
				drop(i)
				break
			}
			switch rng.IntN(6) {
			case 0:
				e.l.End(nil)
				drop(i)
			case 1:
				e.l.End(&attemptTimeoutError{after: timeout})
				drop(i)
			case 2:
				e.l.End(sqlStateError("53300"))
				drop(i)
			case 3: // the socket closed; the login may go on
				e.s.unref()
				if rng.IntN(2) == 0 {
					drop(i)
					e.l.End(errors.New("auth failed"))
				}
			case 4: // a continuation (sslmode=prefer fallback)
				s, w := a.enter(e.l, admitTestKey, timeout, false)
				if s != nil {
					if s != e.s {
						all = append(all, s)
					}
					e.s = s
				} else {
					e.s, e.w = nil, w
				}
			case 5: // time passes beyond the deadline of older slots
				clk.advance(timeout / 2)
			}
		}
		promote()
		g := a.gateOf(admitTestKey)
		a.mu.Lock()
		if len(g.held) < g.capacity() && len(g.queue) > 0 {
			t.Fatalf("step %d: %d of %d slots held with %d waiters queued", step, len(g.held), g.capacity(), len(g.queue))
		}
		if g.limit < admitMin || g.limit > admitMax {
			t.Fatalf("step %d: limit %.2f outside [%d, %d]", step, g.limit, admitMin, admitMax)
		}
		a.mu.Unlock()
	}
	if violations > 0 {
		t.Fatalf("%d admissions while the limit's slots were taken", violations)
	}
	for _, e := range live {
		if e.w != nil {
			if s := a.leave(e.w); s != nil {
				a.release(s, sigNone)
			}
		}
		e.l.End(errors.New("test over"))
	}
	promote()
	for _, s := range all {
		if !s.released {
			t.Fatal("a slot is still held after every login ended")
		}
	}
	if g := a.gateOf(admitTestKey); len(g.held) != 0 || len(g.queue) != 0 {
		t.Fatalf("%d held, %d queued at the end", len(g.held), len(g.queue))
	}
	t.Logf("%d slots admitted, final limit %.2f", len(all), a.gateOf(admitTestKey).limit)
}

// TestDialQueuedTimesFromAdmission: a dial queued for admission starts
// neither its connect_timeout nor Happy Eyeballs' attempt delay: the next
// family is tried only once the first attempt was admitted and the delay
// passed, and the first attempt's deadline is connect_timeout from its
// admission. When the login ends, both addresses' slots are free.
func TestDialQueuedTimesFromAdmission(t *testing.T) {
	dialTestLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	const timeout = 2 * time.Second
	d := NewDialer(Settings{AttemptDelay: 20 * time.Millisecond, ConnectTimeout: timeout},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	d.adm = newAdmission(time.Now)
	hook := newDialTestHook(d, "::1")
	v6 := admitKey{addr: netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(port))}
	var held []*slot
	for range admitStart {
		s, _ := d.adm.enter(&Login{}, v6, 0, false)
		held = append(held, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx, login := WithLogin(ctx)
	type result struct {
		nc  net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort("db.example", fmt.Sprint(port)))
		done <- result{nc, err}
	}()
	time.Sleep(300 * time.Millisecond) // 15 attempt delays, queued
	if calls := hook.calls(); len(calls) != 0 {
		t.Fatalf("dialled %v while the first attempt was queued, want nothing yet", calls)
	}
	if n := d.Queued(); n != 1 {
		t.Errorf("Queued() = %d while one dial waits, want 1", n)
	}
	held[0].unref()
	r := <-done
	if r.err != nil {
		t.Fatalf("DialContext: %v", r.err)
	}
	defer r.nc.Close()
	if n := d.Queued(); n != 0 {
		t.Errorf("Queued() = %d once admitted, want 0", n)
	}
	calls := hook.calls()
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "[::1]") || !strings.HasPrefix(calls[1], "127.0.0.1") {
		t.Fatalf("attempts %v, want ::1 then 127.0.0.1", calls)
	}
	hook.mu.Lock()
	left := hook.deadline[calls[0]]
	hook.mu.Unlock()
	if left < timeout-200*time.Millisecond {
		t.Errorf("the queued attempt had %v of its %v connect_timeout left when it dialled: queue time counted", left, timeout)
	}
	login.End(nil)
	for _, key := range []admitKey{v6, {addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}} {
		d.adm.mu.Lock()
		n := len(d.adm.gates[key].held)
		d.adm.mu.Unlock()
		if want := map[bool]int{true: admitStart - 1, false: 0}[key == v6]; n != want {
			t.Errorf("%v: %d slots held after the login ended, want %d", key.addr, n, want)
		}
	}
	for _, s := range held[1:] {
		s.unref()
	}
}

// TestAdmissionBlackholedAddress: 1,000 startups at once to an address that
// answers no SYN. Raw sends every SYN at once and each dial's
// connect_timeout starts then; queued 16 per grace period the last would
// start 62 s later (found by the outside review). Once a slot gave its
// place up unanswered and none connected, the rest are admitted together;
// the first connect() that succeeds restores the limit.
func TestAdmissionBlackholedAddress(t *testing.T) {
	a, clk := newTestAdmission()
	const n = 1000
	var ws []*waiter
	var first []*slot
	for range n {
		s, w := a.enter(&Login{}, admitTestKey, 10*time.Second, false)
		if s != nil {
			first = append(first, s)
		} else {
			ws = append(ws, w)
		}
	}
	clk.advance(admitSynGrace)
	a.mu.Lock()
	a.expire(ws[0].g, a.now())
	a.mu.Unlock()
	for i, w := range ws {
		if !admittedNow(w) {
			t.Fatalf("startup %d of %d still queued %v after the address answered no SYN", i+len(first), n, admitSynGrace)
		}
	}
	// The address answers again: the limit holds for what comes next.
	ws[0].s.settle(nil, nil)
	fill := 0
	for {
		s, w := a.enter(&Login{}, admitTestKey, 10*time.Second, false)
		if w != nil {
			break
		}
		_ = s
		if fill++; fill > n {
			t.Fatal("no limit after a connect() succeeded")
		}
	}
}

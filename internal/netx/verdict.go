package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Corroboration: one socket's silence is not a dead host. Under packet loss
// TCP's retransmission backoff leaves a live connection silent for 10 s now
// and then; a dead host silences every socket to it and answers no fresh
// handshake. So before a host-level verdict from silence, other evidence is
// asked (docs/design/fleet.md §3.3):
//
//   - another socket to the address heard from (an ACK or data) after the
//     suspect's silence began proves the path: veto;
//   - otherwise a fresh TCP handshake within a short budget: completed, the
//     path works (veto); refused (RST), nothing listens (confirmed); no
//     answer, the host is silent too (confirmed).
//
// The watcher starts it at window − budget, so a true death is judged at the
// window, as before. A vetoed socket that stays silent is this connection's
// problem (one flow dropped by a middlebox, a long loss burst): at
// silentConnFactor × window it alone is closed, nothing is evicted and the
// connector's state does not change.

// finding is what a corroboration found.
type finding int32

const (
	findingPending   finding = iota // the handshake is still running
	findingConfirmed                // the host is silent or refuses: host-level
	findingVetoed                   // the path answers: the silence is this connection's
)

const (
	// corroborateMin is the least handshake budget: two SYNs (the kernel
	// retransmits the first at 1 s).
	corroborateMin = 1500 * time.Millisecond
	// corroborateRTTs: a remote server's handshake gets this many round trips.
	corroborateRTTs = 4
	// corroborateLossy is the budget when the suspect recovered losses
	// before, or a silence on its path was vetoed recently: the path drops
	// packets, so a lost SYN is likely. Three SYNs per handshake (the
	// kernel sends them at 0, 1 and 3 s) and time for the third's answer:
	// at 20 % loss each way a handshake then fails with p = 0.36³ ≈ 0.05
	// (3 s allowed two SYNs: 0.13), both of the race's with 0.002.
	corroborateLossy = 3500 * time.Millisecond
	// corroborateDials is how many handshakes race (independent losses).
	corroborateDials = 2
	// heardRecently is how recently a socket must have been heard to veto
	// evidence without a watched silence (no route, a socket the kernel
	// killed): it proves the path now.
	heardRecently = time.Second
	// silentConnFactor × window: a silent socket on a path proven alive is
	// closed, as connection-level evidence.
	silentConnFactor = 3
)

// corroborationBudget is the handshake budget for a suspect last sampled as
// s: max(1.5 s, 4 × srtt), 3.5 s on a lossy path (pathLossy), at most half
// the window (a short tcp_user_timeout keeps its meaning).
func corroborationBudget(s tcpSample, window time.Duration, lossy bool) time.Duration {
	b := max(corroborateMin, corroborateRTTs*s.rtt)
	if lossy {
		b = max(b, corroborateLossy)
	}
	return min(b, window/2)
}

// corroboration is one suspicion of a socket's host, from its start to its
// finding.
type corroboration struct {
	// began is when the suspect's silence began: a sibling heard after it
	// vetoes.
	began  time.Time
	result atomic.Int32 // a finding
	// due: the suspect's window has passed, so a confirmation is applied
	// (apply) by whoever sees it first; applied makes that once.
	due     atomic.Bool
	applied atomic.Bool
	apply   func()
	// bySibling: vetoed by a sibling heard (not a handshake); rechecked: a
	// handshake already decided once in this silence.
	bySibling, rechecked bool
}

func (c *corroboration) finding() finding { return finding(c.result.Load()) }

// settle records f and applies a confirmation already due.
func (c *corroboration) settle(f finding) {
	c.result.Store(int32(f))
	if f == findingConfirmed && c.due.Load() {
		c.applyOnce()
	}
}

// markDue says the window has passed: a confirmation found (now or later)
// is applied.
func (c *corroboration) markDue() {
	c.due.Store(true)
	if c.finding() == findingConfirmed {
		c.applyOnce()
	}
}

func (c *corroboration) applyOnce() {
	if c.apply != nil && c.applied.CompareAndSwap(false, true) {
		c.apply()
	}
}

// corroborator is what a corroboration asks: the sockets' TCP_INFO, a fresh
// handshake, the clock (tests replace them).
type corroborator struct {
	sample func(*trackedConn) (tcpSample, bool)
	dial   func(ctx context.Context, addr netip.AddrPort) error
	now    func() time.Time
	// flights, when set, joins handshakes to the same address in flight.
	flights *handshakeFlights
}

// handshakeFlights are the corroboration handshakes in flight, by address.
type handshakeFlights struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*handshakeFlight
}

type handshakeFlight struct {
	done chan struct{}
	f    finding
}

// verdicts is the corroborator for evidence found outside the watcher (I/O
// errors, checkouts, dials); tests replace it.
var verdicts = corroborator{sample: tcpInfoOf, dial: handshake, now: time.Now}

// handshake completes a TCP handshake with addr and closes the connection
// without a byte sent (PostgreSQL logs nothing for that).
func handshake(ctx context.Context, addr netip.AddrPort) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return err
	}
	_ = nc.Close()
	return nil
}

// peersOf lists the sockets to tc's address that may vouch for the path:
// those of tc's book (its connector's), tc excluded, and, since a verdict
// is shared, those of every other book of its view (another tenant's
// socket heard since the silence began proves the path for all: one
// tenant's short window or lossy socket must not shut the others down).
// Books are asked outside the view's lock (Book.mu before View.mu).
func peersOf(tc *trackedConn) []*trackedConn {
	if tc.book == nil {
		return nil
	}
	out := tc.book.peers(tc.addr, tc)
	if v := tc.book.view; v != nil {
		for _, b := range v.others(tc.addr, tc.book) {
			out = append(out, b.peers(tc.addr, nil)...)
		}
	}
	return out
}

// heardAfter reports whether any of socks was heard from after t.
func (k corroborator) heardAfter(socks []*trackedConn, t time.Time) bool {
	now := k.now()
	for _, o := range socks {
		if o.evicted.Load() || o.closed.Load() {
			continue
		}
		if s, ok := k.sample(o); ok && now.Add(-s.heard()).After(t) {
			return true
		}
	}
	return false
}

// handshakes races corroborateDials handshakes with addr until deadline (or
// ctx's end): vetoed when one completes, confirmed when none does (refused,
// unreachable or unanswered), pending when ctx ended first. Every dial has
// returned when it does.
func (k corroborator) handshakes(parent context.Context, addr netip.AddrPort, deadline time.Time) finding {
	if k.flights == nil {
		return k.handshakesNow(parent, addr, deadline)
	}
	fs := k.flights
	fs.mu.Lock()
	if fl := fs.m[addr]; fl != nil {
		fs.mu.Unlock()
		select {
		case <-fl.done:
			return fl.f
		case <-parent.Done():
			return findingPending
		}
	}
	fl := &handshakeFlight{done: make(chan struct{})}
	if fs.m == nil {
		fs.m = make(map[netip.AddrPort]*handshakeFlight)
	}
	fs.m[addr] = fl
	fs.mu.Unlock()
	fl.f = k.handshakesNow(parent, addr, deadline)
	fs.mu.Lock()
	delete(fs.m, addr)
	fs.mu.Unlock()
	close(fl.done)
	return fl.f
}

// handshakesNow is handshakes without joining one in flight.
func (k corroborator) handshakesNow(parent context.Context, addr netip.AddrPort, deadline time.Time) finding {
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	errs := make(chan error, corroborateDials)
	for range corroborateDials {
		go func() { errs <- k.dial(ctx, addr) }()
	}
	f := findingConfirmed
	for range corroborateDials {
		if err := <-errs; err == nil {
			f = findingVetoed
			cancel()
		}
	}
	if f == findingConfirmed && parent.Err() != nil {
		return findingPending // the caller gave up (its own deadline too): no finding
	}
	return f
}

// pathHeardAfter reports whether another socket of tc's path, open or
// closed since, was heard after t.
func (k corroborator) pathHeardAfter(tc *trackedConn, t time.Time) bool {
	return k.heardAfter(peersOf(tc), t) || tc.book.pathFacts(tc.addr).closedHeard.After(t)
}

// pathLossy reports whether tc's path drops packets: tc recovered losses
// before (s), or a silence of any socket to its address was vetoed lately.
func (k corroborator) pathLossy(tc *trackedConn, s tcpSample) bool {
	return s.lossy() || tc.book.pathFacts(tc.addr).lossy(k.now())
}

// suspect starts the corroboration of tc's silence begun at began: the
// siblings are asked at once (unless handshakeOnly), then a handshake given
// until deadline runs in a goroutine of its own, bounded by that deadline.
// apply is run once when the host is confirmed and the window has passed
// (markDue).
func (k corroborator) suspect(tc *trackedConn, began, deadline time.Time, handshakeOnly bool, apply func()) *corroboration {
	c := &corroboration{began: began, apply: apply, rechecked: handshakeOnly}
	if !handshakeOnly && k.pathHeardAfter(tc, began) {
		c.bySibling = true
		c.result.Store(int32(findingVetoed))
		return c
	}
	go func() {
		f := k.handshakes(context.Background(), tc.addr, deadline)
		if f == findingVetoed {
			tc.book.markVetoed(tc.addr, k.now())
		}
		c.settle(f)
	}()
	return c
}

// judgeSilent judges a watched socket whose peer has been silent for silent
// (dead: the window and its confirmation passed), s its latest sample: it
// starts the corroboration at window − budget and gives the verdict. It runs
// on the watcher's goroutine (tc.silence is its own).
func (k corroborator) judgeSilent(tc *trackedConn, s tcpSample, silent time.Duration, dead bool) {
	now := k.now()
	c := tc.suspicion.Load()
	since := tc.silence.since
	if c != nil && !c.began.Equal(since) {
		c = nil // answered since: a new silence
	}
	lossy := k.pathLossy(tc, s)
	budget := corroborationBudget(s, tc.window, lossy)
	silentFrom := now.Add(-silent)
	if c == nil {
		if silent < tc.window-budget {
			if tc.suspicion.Load() != nil {
				tc.suspicion.Store(nil)
			}
			return
		}
		// The verdict lands when the window passes, as without
		// corroboration; a suspicion seen late (a keep-alive probe is
		// outstanding for the window at once) still gets the handshake
		// its round trips need, and the whole budget on a lossy path.
		floor := max(watchConfirm-watchTick/2, corroborateRTTs*s.rtt)
		if lossy {
			floor = budget
		}
		deadline := silentFrom.Add(tc.window)
		if d := now.Add(min(floor, tc.window/2)); d.After(deadline) {
			deadline = d
		}
		c = k.suspect(tc, since, deadline, false, k.silentVerdict(tc, silentFrom))
		tc.suspicion.Store(c)
	}
	if !dead {
		return
	}
	switch c.finding() {
	case findingVetoed:
		switch {
		case silent >= silentConnFactor*tc.window:
			tc.shutdownWith(&connSilentError{silent: silent, window: tc.window})
		case c.bySibling && !c.rechecked && !k.pathHeardAfter(tc, now.Add(-budget)):
			// The siblings were heard early in this silence and not
			// since: that may have been just before the host died, so a
			// handshake decides.
			c = k.suspect(tc, since, now.Add(budget), true, k.silentVerdict(tc, silentFrom))
			c.markDue()
			tc.suspicion.Store(c)
		}
	default:
		c.markDue()
	}
}

// silentVerdict is the host-level verdict on tc, silent since silentFrom.
func (k corroborator) silentVerdict(tc *trackedConn, silentFrom time.Time) func() {
	return func() {
		cause := &peerSilentError{silent: k.now().Sub(silentFrom), window: tc.window}
		if !tc.book.evict(tc.addr, tc.gen, cause, evictDead) {
			tc.shutdown() // an older generation: only this socket is left to end
		}
	}
}

// judgeNow corroborates host-level evidence err about tc found outside the
// watcher: an I/O error (watched: the watcher may have suspected this
// silence) or a checkout's. It never makes its caller wait. No route is
// vetoed by any socket to the address heard within heardRecently. The
// kernel's timeout is vetoed by the watcher's finding for this silence if it
// has one, else by a sibling heard within heardRecently, else a handshake
// decides in the background. A refusal and the watcher's own verdict are
// taken as they are. confirm runs once if the host is confirmed; the finding
// is returned (pending: the handshake runs on and confirms on its own).
func (k corroborator) judgeNow(tc *trackedConn, err error, watched bool, confirm func()) finding {
	now := k.now()
	recent := now.Add(-heardRecently)
	switch {
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		if k.heardAfter(append(peersOf(tc), tc), recent) {
			return findingVetoed
		}
	case errors.Is(err, syscall.ETIMEDOUT):
		if c := tc.suspicion.Load(); c != nil && watched && now.Sub(c.began) < silentConnFactor*tc.window {
			// The watcher saw this I/O waiting: its suspicion decides (its
			// own verdict evicts as confirm would).
			f := c.finding()
			switch f {
			case findingConfirmed:
				confirm()
			case findingPending:
				c.markDue()
			}
			return f
		}
		if k.pathHeardAfter(tc, recent) {
			return findingVetoed
		}
		s, _ := k.sample(tc)
		c := &corroboration{began: recent, apply: confirm}
		c.due.Store(true)
		deadline := now.Add(corroborationBudget(s, tc.window, k.pathLossy(tc, s)))
		go func() {
			f := k.handshakes(context.Background(), tc.addr, deadline)
			if f == findingVetoed {
				tc.book.markVetoed(tc.addr, k.now())
			}
			c.settle(f)
		}()
		return findingPending
	}
	confirm()
	return findingConfirmed
}

// connSilentError is the cause when a socket silent for silentConnFactor ×
// window on a path proven alive was closed: connection-level. It reads as
// errConnEvicted (the socket was shut down under its user, a timeout).
type connSilentError struct {
	silent, window time.Duration
}

func (e *connSilentError) Error() string {
	return "pgfast: connection shut down: no ACK from the server for " + e.silent.Round(time.Millisecond).String() +
		" while other connections to it were answered (dead-peer window " + e.window.String() + ")"
}

func (e *connSilentError) Timeout() bool   { return true }
func (e *connSilentError) Temporary() bool { return false }

// Is matches errConnEvicted and os.ErrDeadlineExceeded, as a shutdown does.
func (e *connSilentError) Is(target error) bool {
	return target == errConnEvicted || target == os.ErrDeadlineExceeded
}

// peers lists addr's open sockets of the current generation, except.
func (b *Book) peers(addr netip.AddrPort, except *trackedConn) []*trackedConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.addrs[addr]
	if e == nil {
		return nil
	}
	out := make([]*trackedConn, 0, len(e.conns))
	for tc := range e.conns {
		if tc != except {
			out = append(out, tc)
		}
	}
	return out
}

// PathHeard reports whether err, a failed dial's, is silence alone (every
// address tried went unanswered until connect_timeout) from addresses that
// one of the book's sockets was heard from since since: SYNs lost on a
// lossy path, not a dead host, so it says nothing about the server's state.
func (b *Book) PathHeard(err error, since time.Time) bool {
	var de *DialError
	if b == nil || !errors.As(err, &de) || len(de.Attempts) == 0 {
		return false
	}
	for _, a := range de.Attempts {
		var timeout *attemptTimeoutError
		if !errors.As(a.Err, &timeout) || errors.Is(a.Err, syscall.ECONNREFUSED) {
			return false
		}
		addr, perr := netip.ParseAddrPort(a.Addr)
		if perr != nil || !verdicts.heardAfter(b.peers(addr, nil), since) {
			return false
		}
	}
	return true
}

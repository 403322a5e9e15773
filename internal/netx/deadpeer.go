package netx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// verdict is what one piece of evidence about a socket says.
type verdict int

const (
	// noEvidence: a socket pgfast or the driver closed, or a driver deadline.
	noEvidence verdict = iota
	// connLevel: this connection is bad, the server is fine (reset, EOF, a
	// zero-window stall ended by tcp_user_timeout while the peer kept
	// ACKing). Siblings are swept; the address is not evicted.
	connLevel
	// hostLevel: the peer silent for the window, or no route: evict, go Down.
	hostLevel
)

func (v verdict) String() string {
	switch v {
	case connLevel:
		return "connection-level"
	case hostLevel:
		return "host-level"
	}
	return "no evidence"
}

// tcpSample is one TCP_INFO reading of a socket.
type tcpSample struct {
	lastAck      time.Duration // tcpi_last_ack_recv: since the last ACK received
	lastDataRecv time.Duration // tcpi_last_data_recv: since the last data received
	lastDataSent time.Duration // tcpi_last_data_sent: since data was last sent (retransmissions too)
	unacked      uint32        // tcpi_unacked: segments sent and not acknowledged
	probes       uint8         // tcpi_probes: keep-alive or window probes unanswered
	backoff      uint8         // tcpi_backoff: retransmission / probe backoff exponent
	// zeroWindow: tcpi_snd_wnd (Linux 6.2+) is zero: alive but not reading
	// (a lock wait). Older kernels report zero too, erring towards "alive".
	zeroWindow bool
	rtt        time.Duration // tcpi_rtt: the smoothed round trip
	// retransmits (tcpi_retransmits) are the current episode's unrecovered
	// retransmissions, totalRetrans (tcpi_total_retrans) the socket's.
	retransmits  uint8
	totalRetrans uint32
}

func (s tcpSample) heard() time.Duration { return min(s.lastAck, s.lastDataRecv) }

func (s tcpSample) outstanding() bool { return s.unacked > 0 || s.probes > 0 }

// lossy: the socket retransmitted before this episode and recovered, so
// its path drops packets.
func (s tcpSample) lossy() bool { return s.totalRetrans > uint32(s.retransmits) }

// classify judges one I/O error of a socket. info (asked only for an
// ETIMEDOUT) reads TCP_INFO. The verdict depends only on the error and the
// TCP state, never on which goroutine saw it first.
func classify(err error, info func() (tcpSample, bool), window time.Duration) verdict {
	switch {
	case err == nil:
		return noEvidence
	case errors.Is(err, errConnEvicted), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrShortWrite), IsDeadline(err):
		return noEvidence
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, errPeerSilent):
		return hostLevel
	case errors.Is(err, syscall.ETIMEDOUT):
		// The kernel gave up. Since Linux 5.1 TCP_USER_TIMEOUT also aborts a
		// zero-window stall whose peer still answers probes: a peer heard
		// within the window, or one advertising a zero window, was alive
		// (a lock wait on this connection), not a dead host.
		if info != nil {
			if s, ok := info(); ok && (s.heard() < window || s.zeroWindow) {
				return connLevel
			}
		}
		return hostLevel
	}
	// ECONNRESET (a terminated backend's kernel RSTs further writes), EPIPE,
	// ECONNABORTED, EOF, anything else: this connection.
	return connLevel
}

// IsHostLevel reports whether err, an error without a socket to ask (a
// dial's), says the server's host is unreachable or refuses connections.
func IsHostLevel(err error) bool { return classify(err, nil, 0) == hostLevel }

// IsDeadline reports a deadline set on the socket (drivers set one when a
// query's context ends).
func IsDeadline(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, syscall.ETIMEDOUT)
}

// errPeerSilent is the cause when the dead-peer watcher shut a socket down.
var errPeerSilent = errors.New("pgfast: the server sent nothing (no ACK) for the dead-peer detection window while the connection waited for it")

// peerSilentError says how long the peer was silent; it matches errPeerSilent.
type peerSilentError struct {
	silent, window time.Duration
}

func (e *peerSilentError) Error() string {
	return "pgfast: no ACK from the server for " + e.silent.Round(time.Millisecond).String() +
		" (dead-peer window " + e.window.String() + ") while the connection waited for it"
}

func (e *peerSilentError) Is(target error) bool { return target == errPeerSilent }

// DefaultDeadPeerWindow is the root package's DefaultDeadPeerWindow, whose
// doc comment explains the dead-peer rule.
const DefaultDeadPeerWindow = 10 * time.Second

const (
	watchTick = 500 * time.Millisecond
	// watchConfirm: a live peer answers a probe within its round trip.
	watchConfirm = time.Second
)

func (s Settings) deadPeerWindow() time.Duration {
	if s.TCPUserTimeout > 0 {
		return s.TCPUserTimeout
	}
	return DefaultDeadPeerWindow
}

// silence is since when the watcher has seen one socket wait unanswered.
// Only the watcher goroutine touches it.
type silence struct {
	since time.Time // zero: not waiting, or answered since
}

// observe returns how long the peer has been silent with something
// outstanding, and whether that makes it dead (≥ window, confirmed for
// watchConfirm on the watcher's own clock).
func (w *silence) observe(now time.Time, s tcpSample, window time.Duration) (time.Duration, bool) {
	// A zero window with nothing unacknowledged is a live server that stopped
	// reading (a lock-waiting COPY): its window probes are not silence.
	if !s.outstanding() || s.zeroWindow && s.unacked == 0 {
		w.since = time.Time{}
		return 0, false
	}
	heardAt := now.Add(-s.heard())
	if w.since.IsZero() || heardAt.After(w.since) {
		w.since = now // newly waiting, or the peer answered since the last look
	}
	// Probes: silent since the peer was last heard (as TCP_USER_TIMEOUT
	// counts). Data: since first seen waiting, so a connection idle for long
	// before a query is not silent for that.
	from := heardAt
	if s.probes == 0 {
		from = w.since
	}
	silent := now.Sub(from)
	// Ticks jitter: a look half a tick early still counts as a full one.
	return silent, silent >= window && now.Sub(w.since) >= watchConfirm-watchTick/2
}

// peerWatcher is the one process-wide goroutine watching pgfast's sockets
// for a silent peer. It runs only while some registered socket has a Read or
// Write in progress: registering a socket (at dial) does not start it, the
// socket's Read and Write do (wake, one load of parked while it runs), and
// after idleTicksToPark ticks with no socket in I/O it parks (exits).
//
// Each goroutine owns its stop and done channels: one started inside a
// testing/synctest bubble belongs to it, and the runtime aborts when a
// bubble's channel is used from outside. So successive goroutines never wait
// for each other; turn (a mutex, which belongs to no bubble) keeps them from
// looking at the sockets at the same time.
type peerWatcher struct {
	// flights joins the corroboration handshakes of sockets to one
	// address (verdict.go): with a thousand tenants silenced by one dead
	// host, two handshakes, not two per tenant. Per watcher, so per view:
	// a bubble's view has its own.
	flights handshakeFlights
	// parked: no goroutine runs (read on every tracked Read and Write;
	// alone on its cache line, written only when the goroutine starts or
	// parks).
	parked atomic.Bool
	_      [64 - 4]byte

	tick time.Duration
	// sample reads TCP_INFO (tcpInfoOf; tests replace it).
	sample func(tc *trackedConn) (tcpSample, bool)
	// now is the clock (time.Now).
	now func() time.Time
	// dial is corroboration's handshake (handshake; tests replace it).
	dial func(ctx context.Context, addr netip.AddrPort) error

	// turn is held for one tick; the silence state is its holder's.
	turn sync.Mutex

	mu    sync.Mutex
	socks map[*trackedConn]struct{}
	stop  chan struct{} // closed to stop the running goroutine; nil when none
	done  chan struct{} // closed when the goroutine started with stop has exited
	poke  chan struct{} // ends the running goroutine's doze (one slot)
	// scans counts the looks at every registered socket (tests).
	scans int
}

// idleTicksToPark is how many ticks in a row without a socket in I/O park
// the watcher.
const idleTicksToPark = 2

var deadPeers = newPeerWatcher()

func newPeerWatcher() *peerWatcher {
	w := &peerWatcher{tick: watchTick, sample: tcpInfoOf, now: time.Now, dial: handshake, socks: make(map[*trackedConn]struct{})}
	w.parked.Store(true)
	return w
}

// add registers tc; its first Read or Write wakes the watcher.
func (w *peerWatcher) add(tc *trackedConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.socks[tc] = struct{}{}
	tc.watcher = w
}

// wake starts the goroutine if it is parked (a tracked socket's Read or
// Write is in progress: its inIO was raised before).
func (w *peerWatcher) wake() {
	if !w.parked.CompareAndSwap(true, false) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stop != nil: // dozing, or a parking goroutine saw the socket and stayed
		select {
		case w.poke <- struct{}{}:
		default:
		}
	case len(w.socks) == 0:
		w.parked.Store(true)
	default:
		w.stop, w.done, w.poke = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
		go w.run(w.stop, w.done, w.poke)
	}
}

func (w *peerWatcher) remove(tc *trackedConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.socks[tc]; !ok {
		return
	}
	delete(w.socks, tc)
	if len(w.socks) == 0 && w.stop != nil {
		close(w.stop)
		w.stop = nil
		w.parked.Store(true)
	}
}

func (w *peerWatcher) running() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop == nil {
		return nil
	}
	return w.done
}

func (w *peerWatcher) run(stop chan struct{}, done chan<- struct{}, poke <-chan struct{}) {
	defer close(done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var busy []*trackedConn
	idle := 0
	woke := false // a doze ended: look at once, as a tick would have then
	for {
		if !woke {
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
		woke = false
		l := w.look(busy, stop)
		busy = l.busy
		switch {
		case l.waiting > 0:
			idle = 0
		case len(l.busy) == 0:
			if idle++; idle >= idleTicksToPark && w.park(stop) {
				return
			}
		default:
			if idle++; idle >= idleTicksToPark {
				dozed, poked, stopped := w.doze(stop, poke, l)
				if stopped {
					return
				}
				if dozed {
					// Woken by I/O, or a quiet socket no longer is:
					// look at every socket at once, as a tick would have.
					woke = true
					if poked {
						idle = 0
					}
					t.Reset(w.tick)
				}
			}
		}
		clear(busy)
	}
}

// answered: the socket's last request has its reply. replied says data was
// read since the last Write began; the kernel's clocks say whether data came
// after the last data sent: replies to a batch's first queries read while
// its last ones were still being written do not answer the last ones. The
// clocks count kernel ticks (4-10 ms), and a tie counts as answered (a
// loopback reply often lands in its request's tick), so early replies within
// a tick of a batch's last segment still answer it: that doze then lasts
// dozeMax, as with replied alone, never longer.
func answered(tc *trackedConn, s tcpSample) bool {
	return tc.replied.Load() && s.lastDataRecv <= s.lastDataSent
}

// dozeMax bounds a doze: a look at least this often however quiet.
const dozeMax = 10 * time.Second

// doze sleeps, while every socket in I/O is quiet (a Read waiting with
// nothing outstanding: pgx's background reader stays in Read on an idle
// connection), until the first of them may have sent a keep-alive probe
// (l.until), or until a Read or Write starts anywhere (poke). Without it one
// idle pgx connection kept the watcher ticking at 2 Hz for ever: 0.3 % of a
// core with 1,000 idle tenants, where raw pgx uses 0.02 %. Nothing can be
// judged silent earlier: a quiet socket's silence begins with a probe
// unanswered or a Write, and a Write pokes. It does not doze when a socket's
// I/O moved since the last look (settle).
//
// When its timer ends it, the watcher is still parked: no socket can have
// started I/O without poking it, so it looks again at the quiet sockets only
// (relook) and dozes on while they stay quiet. A look at every socket per
// doze cost more than the sockets' own system calls at 1,000 idle tenants
// (each socket's counters on a cache line of its own).
//
// It reports whether it dozed, whether I/O woke it, and whether the
// goroutine was stopped meanwhile (it must then exit without touching
// parked).
func (w *peerWatcher) doze(stop chan struct{}, poke <-chan struct{}, l lookResult) (dozed, poked, stopped bool) {
	quiet, until := l.busy, l.until
	for {
		d := min(until.Sub(w.now()), dozeMax)
		if d <= w.tick {
			break
		}
		if !dozed && !w.settle(stop) {
			return false, false, false
		}
		dozed = true
		t := time.NewTimer(d)
		select {
		case <-stop:
			// remove stopped it and left parked set for the next Read or
			// Write to start a goroutine: the flag is no longer this one's.
			t.Stop()
			return true, false, true
		case <-poke:
			poked = true
		case <-t.C:
		}
		t.Stop()
		if poked {
			break
		}
		r, ended := w.relook(quiet, stop)
		if ended {
			return true, false, true
		}
		if r.waiting > 0 || len(r.busy) == 0 {
			break
		}
		quiet, until = r.busy, r.until
	}
	if !dozed {
		return false, false, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != stop {
		return true, poked, true
	}
	w.parked.Store(false)
	return true, poked, false
}

// settle marks the watcher parked for a doze unless a socket's I/O moved
// since the last look.
func (w *peerWatcher) settle(stop chan struct{}) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != stop {
		return false
	}
	// A poke left from before (I/O that began during a relook that then
	// ended the doze) would end this doze at once for nothing.
	select {
	case <-w.poke:
	default:
	}
	return w.parkUnlessLocked(func(tc *trackedConn) bool {
		return tc.inIO.Load() != tc.lookIO || tc.writes.Load() != tc.lookWrites || tc.writing.Load() > 0
	})
}

// park ends the goroutine started with stop unless a socket is in I/O
// (parkUnlessLocked says why no wake-up is lost).
func (w *peerWatcher) park(stop chan struct{}) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != stop {
		return true // stopped (remove) meanwhile
	}
	if !w.parkUnlessLocked(func(tc *trackedConn) bool { return tc.inIO.Load() > 0 }) {
		return false
	}
	w.stop = nil
	return true
}

// parkUnlessLocked sets parked, then clears it again and reports false if
// any socket is busy. The order is what loses no wake-up (park, settle): a
// Read or Write raises its counts before it reads parked, so either it sees
// parked and wakes the watcher, or this scan sees it. w.mu is held.
func (w *peerWatcher) parkUnlessLocked(busy func(*trackedConn) bool) bool {
	w.parked.Store(true)
	w.scans++
	for tc := range w.socks {
		if busy(tc) {
			w.parked.Store(false)
			return false
		}
	}
	return true
}

// lookResult is one tick's finding: the sockets in I/O (busy, cleared),
// how many of them wait on the peer, and, when none does, until when the
// quiet ones cannot have sent a keep-alive probe.
type lookResult struct {
	busy    []*trackedConn
	waiting int
	until   time.Time
}

// look is one tick, skipped if stop was closed while it waited for its turn.
func (w *peerWatcher) look(busy []*trackedConn, stop <-chan struct{}) lookResult {
	w.turn.Lock()
	defer w.turn.Unlock()
	select {
	case <-stop:
		return lookResult{busy: busy[:0]}
	default:
	}
	return w.judge(w.inIO(busy[:0]))
}

// relook is a doze's look at the sockets that were quiet when it began
// (doze): those still registered and in I/O are judged again, the others
// dropped. ended: stop was closed.
func (w *peerWatcher) relook(socks []*trackedConn, stop <-chan struct{}) (r lookResult, ended bool) {
	w.turn.Lock()
	defer w.turn.Unlock()
	select {
	case <-stop:
		return lookResult{}, true
	default:
	}
	busy := socks[:0]
	w.mu.Lock()
	for _, tc := range socks {
		if _, ok := w.socks[tc]; !ok {
			continue
		}
		if tc.inIO.Load() > 0 {
			busy = append(busy, tc)
		} else {
			tc.silence.since = time.Time{}
		}
	}
	w.mu.Unlock()
	clear(socks[len(busy):])
	return w.judge(busy), false
}

// judge checks each socket in I/O (the turn is held): how many wait on the
// peer and, if none does, until when the quiet ones may doze.
func (w *peerWatcher) judge(busy []*trackedConn) lookResult {
	now := w.now()
	r := lookResult{busy: busy, until: now.Add(dozeMax)}
	for _, tc := range busy {
		if quiet, until := w.check(tc, now); !quiet {
			r.waiting++
		} else if until.Before(r.until) {
			r.until = until
		}
	}
	return r
}

// inIO collects the sockets with a Read or Write in progress; the others
// cost one atomic load and no system call. It notes every socket's I/O
// counts for doze.
func (w *peerWatcher) inIO(out []*trackedConn) []*trackedConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scans++
	for tc := range w.socks {
		tc.lookIO, tc.lookWrites = tc.inIO.Load(), tc.writes.Load()
		if tc.lookIO > 0 {
			out = append(out, tc)
		} else if !tc.silence.since.IsZero() {
			tc.silence.since = time.Time{}
		}
	}
	return out
}

// check samples one busy socket and judges its silence (verdict.go:
// corroborated before it is host-level). It reports whether the socket is
// quiet (only a Read waits, nothing is outstanding) and, if so, until when
// a doze may last: while a request waits for its reply, until its first
// keep-alive probe may go out (heard + keepalives_idle: nothing is judged
// later than when ticking); once the reply came (an idle connection's
// Read), dozeMax, so a thousand such sockets wake the watcher once, not
// each at its own probe time.
func (w *peerWatcher) check(tc *trackedConn, now time.Time) (quiet bool, until time.Time) {
	s, ok := w.sample(tc)
	if !ok {
		return false, time.Time{}
	}
	silent, dead := tc.silence.observe(w.now(), s, tc.window)
	if !tc.evicted.Load() {
		corroborator{sample: w.sample, dial: w.dial, now: w.now, flights: &w.flights}.judgeSilent(tc, s, silent, dead)
	}
	if s.outstanding() || tc.writing.Load() > 0 || tc.suspicion.Load() != nil {
		return false, time.Time{}
	}
	until = now.Add(dozeMax)
	if tc.keepIdle > 0 && !answered(tc, s) {
		until = now.Add(tc.keepIdle - s.heard())
	}
	return true, until
}

package pgfast

import (
	"sync"
	"time"
)

// DefaultDeadPeerWindow is how long the server may stay silent (no ACK, no
// data) while a connection waits for it before pgfast declares the server's
// host dead, when the DSN sets no tcp_user_timeout. A tcp_user_timeout in the
// DSN is the window instead (and is also set on the socket, libpq's meaning).
//
// The rule (pgfast explain prints its timeline): while a Read or Write is
// blocked on a socket, pgfast looks at the socket's TCP_INFO about twice a
// second; the server is silent when something is outstanding (data not
// acknowledged, or a keep-alive or window probe unanswered), nothing was
// received for the window (counted from the last ACK, or for data from when
// pgfast first saw it waiting), and it stayed so for a second. A server that keeps a zero
// window while it waits on a lock still answers every window probe: it is
// slow, not dead, and its connection is left alone however long the wait.
const DefaultDeadPeerWindow = 10 * time.Second

const (
	// watchTick is how often the watcher looks at the sockets in I/O.
	watchTick = 500 * time.Millisecond
	// watchConfirm is how long a socket must be seen waiting unanswered
	// (on the watcher's own clock) before it can be judged silent: a live
	// peer answers a probe within its round trip.
	watchConfirm = time.Second
)

// deadPeerWindow is the detection window of sockets dialled with s.
func (s dialSettings) deadPeerWindow() time.Duration {
	if s.TCPUserTimeout > 0 {
		return s.TCPUserTimeout
	}
	return DefaultDeadPeerWindow
}

// silence is the watcher's memory of one socket: since when it has seen the
// socket wait for the peer without an answer. Only the watcher goroutine
// touches it.
type silence struct {
	since time.Time // zero: not waiting, or answered since
}

// observe judges one TCP_INFO sample taken at now. It returns how long the
// peer has been silent while something was outstanding, and whether that
// makes it dead: silent for at least window, confirmed by this watcher for
// at least watchConfirm.
func (w *silence) observe(now time.Time, s tcpSample, window time.Duration) (time.Duration, bool) {
	// A peer whose latest window is zero, with nothing unacknowledged, is
	// a live server that stopped reading (a lock-waiting COPY): its window
	// probes are not silence (the kernel keeps probing it as long as the
	// raw drivers would).
	if !s.outstanding() || s.zeroWindow && s.unacked == 0 {
		w.since = time.Time{}
		return 0, false
	}
	heardAt := now.Add(-s.heard())
	if w.since.IsZero() || heardAt.After(w.since) {
		w.since = now // newly waiting, or the peer answered since the last look
	}
	// Keep-alive and window probes: silent since the peer was last heard
	// (the kernel's TCP_USER_TIMEOUT counts the same way). Data: since this
	// watcher first saw it waiting (at most a tick after it was sent): a
	// connection idle for long before a query is not silent for that.
	from := heardAt
	if s.probes == 0 {
		from = w.since
	}
	silent := now.Sub(from)
	// Ticks jitter: a look half a tick early still counts as a full one.
	return silent, silent >= window && now.Sub(w.since) >= watchConfirm-watchTick/2
}

// peerWatcher is the one process-wide goroutine that watches pgfast's
// sockets for a silent peer. It runs while at least one socket is
// registered: the first registration starts it, the last removal stops it.
// Its registry is guarded by mu; the per-socket silence state belongs to the
// goroutine that holds turn.
//
// Each goroutine has its own stop and done channels, made by the add that
// starts it and never handed to another goroutine: a goroutine (and the
// channels made with it) started inside a testing/synctest bubble belongs to
// that bubble, and the Go runtime aborts the process when a channel of a
// bubble is used from outside it. So a stopping goroutine and the next one
// do not wait for each other; they may overlap for a moment, and turn (a
// mutex, which belongs to no bubble) keeps them from looking at the sockets
// at the same time.
type peerWatcher struct {
	tick time.Duration
	// sample reads a socket's TCP_INFO (tcpInfoOf; tests replace it).
	sample func(tc *trackedConn) (tcpSample, bool)
	// now is the clock (time.Now).
	now func() time.Time

	// turn is held by a goroutine for one look at the sockets (a tick):
	// the silence state is its holder's.
	turn sync.Mutex

	mu    sync.Mutex
	socks map[*trackedConn]struct{}
	stop  chan struct{} // closed to stop the running goroutine; nil when none
	done  chan struct{} // closed when the goroutine started with stop has exited
}

// deadPeers is the process's watcher.
var deadPeers = newPeerWatcher()

func newPeerWatcher() *peerWatcher {
	return &peerWatcher{tick: watchTick, sample: tcpInfoOf, now: time.Now, socks: make(map[*trackedConn]struct{})}
}

// add registers tc, starting the goroutine if none runs.
func (w *peerWatcher) add(tc *trackedConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.socks[tc] = struct{}{}
	if w.stop == nil {
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		go w.run(w.stop, w.done)
	}
}

// remove forgets tc, stopping the goroutine when it was the last socket.
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
	}
}

// running returns the done channel of the running goroutine, or nil.
func (w *peerWatcher) running() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop == nil {
		return nil
	}
	return w.done
}

// run ticks until stop is closed. stop and done are this goroutine's own.
func (w *peerWatcher) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var busy []*trackedConn
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		busy = w.look(busy, stop)
	}
}

// look is one tick: it checks the sockets in I/O, unless stop was closed
// while it waited for its turn (the next goroutine looks from then on).
func (w *peerWatcher) look(busy []*trackedConn, stop <-chan struct{}) []*trackedConn {
	w.turn.Lock()
	defer w.turn.Unlock()
	select {
	case <-stop:
		return busy
	default:
	}
	busy = w.inIO(busy[:0])
	for _, tc := range busy {
		w.check(tc)
	}
	clear(busy)
	return busy
}

// inIO collects the registered sockets with a Read or Write in progress;
// the others cost one atomic load and no system call.
func (w *peerWatcher) inIO(out []*trackedConn) []*trackedConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	for tc := range w.socks {
		if tc.inIO.Load() > 0 {
			out = append(out, tc)
		} else {
			tc.silence.since = time.Time{}
		}
	}
	return out
}

// check samples one busy socket and, when its peer is silent, shuts it down
// and evicts its address (host-level evidence).
func (w *peerWatcher) check(tc *trackedConn) {
	s, ok := w.sample(tc)
	if !ok {
		return
	}
	silent, dead := tc.silence.observe(w.now(), s, tc.window)
	if !dead || tc.evicted.Load() {
		return
	}
	cause := &peerSilentError{silent: silent, window: tc.window}
	if !tc.book.evict(tc.addr, tc.gen, cause, evictDead) {
		tc.shutdown() // an older generation: only this socket is left to end
	}
}

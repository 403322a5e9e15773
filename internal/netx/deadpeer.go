package netx

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// verdict is what one piece of evidence about a socket says.
type verdict int

const (
	// noEvidence: the error says nothing about the server (a socket pgfast
	// or the driver closed, a deadline the driver set for a context).
	noEvidence verdict = iota
	// connLevel: this connection is bad, the server is fine (a reset, a
	// broken pipe, EOF, a terminated backend, a zero-window stall ended by
	// the user's tcp_user_timeout while the peer kept ACKing). The
	// connection is dropped; its siblings are checked (sweep); the address
	// is not evicted and the connector stays Ready.
	connLevel
	// hostLevel: the path or the server is gone (the peer silent for the
	// detection window, no route to it). The address is evicted and the
	// connector goes Down.
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

// tcpSample is what TCP_INFO says about a socket at one moment: how long ago
// the peer last sent anything, and what is outstanding.
type tcpSample struct {
	lastAck      time.Duration // tcpi_last_ack_recv: since the last ACK received
	lastDataRecv time.Duration // tcpi_last_data_recv: since the last data received
	lastDataSent time.Duration // tcpi_last_data_sent: since new data was last sent
	unacked      uint32        // tcpi_unacked: segments sent and not acknowledged
	probes       uint8         // tcpi_probes: keep-alive or window probes unanswered
	backoff      uint8         // tcpi_backoff: retransmission / probe backoff exponent
	// zeroWindow: the peer's latest advertised window (tcpi_snd_wnd, Linux
	// 6.2+) is zero: it was alive and had stopped reading (a lock wait).
	// Kernels without the field report zero too, which errs on the side of
	// "alive".
	zeroWindow bool
}

// heard is how long ago the peer last sent anything (an ACK or data).
func (s tcpSample) heard() time.Duration { return min(s.lastAck, s.lastDataRecv) }

// outstanding reports whether the socket waits for an answer from the peer:
// data in flight, or a keep-alive or zero-window probe unanswered.
func (s tcpSample) outstanding() bool { return s.unacked > 0 || s.probes > 0 }

// classify judges one I/O error of a socket. info, when not nil, reads the
// socket's TCP_INFO; it is only asked for an ETIMEDOUT. window is the
// socket's dead-peer detection window. The verdict depends only on the error
// and the socket's TCP state, never on which goroutine saw it first, so the
// same event always gives the same verdict.
func classify(err error, info func() (tcpSample, bool), window time.Duration) verdict {
	switch {
	case err == nil:
		return noEvidence
	case errors.Is(err, errConnEvicted), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrShortWrite), IsDeadline(err):
		// Shut down or closed by pgfast or the driver, or a deadline the
		// driver set for a context: says nothing about the server.
		return noEvidence
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, errPeerSilent):
		return hostLevel
	case errors.Is(err, syscall.ETIMEDOUT):
		// The kernel gave up: keep-alive, retransmissions or
		// TCP_USER_TIMEOUT. Since Linux 5.1 TCP_USER_TIMEOUT also aborts a
		// zero-window stall whose peer still answers every probe: a peer
		// heard within the window is alive, the stall was this
		// connection's (a lock wait), not the host's.
		// A peer whose last advertised window is zero was alive and not
		// reading: the abort ended a stall, however long ago its last
		// probe was answered.
		if info != nil {
			if s, ok := info(); ok && (s.heard() < window || s.zeroWindow) {
				return connLevel
			}
		}
		return hostLevel
	}
	// ECONNRESET (a terminated backend's kernel answers further writes with
	// RST), EPIPE, ECONNABORTED, EOF, anything else: this connection.
	return connLevel
}

// IsHostLevel reports whether err, an error without a socket to ask (a
// dial's), says the server's host is unreachable or refuses connections.
func IsHostLevel(err error) bool { return classify(err, nil, 0) == hostLevel }

// IsDeadline reports a deadline set on the socket (the drivers set one when a
// query's context ends).
func IsDeadline(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, syscall.ETIMEDOUT)
}

// errPeerSilent is the cause recorded when the dead-peer watcher shut a
// socket down: the peer answered nothing for the detection window while
// something was outstanding.
var errPeerSilent = errors.New("pgfast: the server sent nothing (no ACK) for the dead-peer detection window while the connection waited for it")

// peerSilentError says how long the peer was silent; it matches
// errPeerSilent.
type peerSilentError struct {
	silent, window time.Duration
}

func (e *peerSilentError) Error() string {
	return "pgfast: no ACK from the server for " + e.silent.Round(time.Millisecond).String() +
		" (dead-peer window " + e.window.String() + ") while the connection waited for it"
}

func (e *peerSilentError) Is(target error) bool { return target == errPeerSilent }

// DefaultDeadPeerWindow (the root package's, documented there) is how long the server may stay silent (no ACK, no
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
func (s Settings) deadPeerWindow() time.Duration {
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

package netx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
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
	lastDataSent time.Duration // tcpi_last_data_sent: since new data was last sent
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
// for a silent peer; it runs while at least one socket is registered.
//
// Each goroutine owns its stop and done channels: one started inside a
// testing/synctest bubble belongs to it, and the runtime aborts when a
// bubble's channel is used from outside. So successive goroutines never wait
// for each other; turn (a mutex, which belongs to no bubble) keeps them from
// looking at the sockets at the same time.
type peerWatcher struct {
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
}

var deadPeers = newPeerWatcher()

func newPeerWatcher() *peerWatcher {
	return &peerWatcher{tick: watchTick, sample: tcpInfoOf, now: time.Now, dial: handshake, socks: make(map[*trackedConn]struct{})}
}

func (w *peerWatcher) add(tc *trackedConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.socks[tc] = struct{}{}
	if w.stop == nil {
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		go w.run(w.stop, w.done)
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

// look is one tick, skipped if stop was closed while it waited for its turn.
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

// inIO collects the sockets with a Read or Write in progress; the others
// cost one atomic load and no system call.
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

// check samples one busy socket and judges its silence (verdict.go:
// corroborated before it is host-level).
func (w *peerWatcher) check(tc *trackedConn) {
	s, ok := w.sample(tc)
	if !ok {
		return
	}
	silent, dead := tc.silence.observe(w.now(), s, tc.window)
	if tc.evicted.Load() {
		return
	}
	corroborator{sample: w.sample, dial: w.dial, now: w.now}.judgeSilent(tc, s, silent, dead)
}

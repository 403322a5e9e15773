package pgfast

import (
	"errors"
	"io"
	"net"
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
	case errors.Is(err, errConnEvicted), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrShortWrite), isDeadline(err):
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

// isDeadline reports a deadline set on the socket (the drivers set one when a
// query's context ends).
func isDeadline(err error) bool {
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

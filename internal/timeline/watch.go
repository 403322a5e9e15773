package timeline

import "time"

// pgfast's dead-peer watcher (pgfast's internal/netx/deadpeer.go holds the same values; a
// test there keeps them equal).
const (
	// WatchTick is how often the watcher samples TCP_INFO of the sockets
	// with a Read or Write in progress. Idle sockets are never sampled.
	WatchTick = 500 * time.Millisecond
	// WatchConfirm is how long the watcher must have seen a socket wait
	// unanswered before it may judge the peer silent: a live peer answers a
	// probe within its round trip.
	WatchConfirm = time.Second
	// DefaultWatchWindow is the detection window when tcp_user_timeout is
	// not set; when it is, the window is tcp_user_timeout.
	DefaultWatchWindow = 10 * time.Second
)

// Watch is pgfast's dead-peer watcher as the timelines model it.
type Watch struct {
	// Window is how long the peer must be silent while something is
	// outstanding (tcp_user_timeout when set, else DefaultWatchWindow).
	Window time.Duration
}

// WatchWorstCase returns, at the latest, when the watcher declares a peer
// dead that was last heard at 0 and left unanswered something sent at
// outstandingAt (a keep-alive probe, or data): the first sample that sees it
// comes up to one tick later, the judgement needs WatchConfirm more, and the
// silence must have lasted the window (judged at the first tick after it).
func WatchWorstCase(window, outstandingAt time.Duration) time.Duration {
	return max(outstandingAt+WatchTick+WatchConfirm, window+WatchTick)
}

// WatchedIdle returns how long pgfast takes to notice that the peer of a
// connection waiting for a query's answer (nothing unacknowledged) died
// right after the last ACK: the kernel's keep-alive timeline (Idle), cut
// short by the watcher once the first keep-alive probe is unanswered.
func WatchedIdle(k Kernel, s Socket, w Watch) Result {
	kernel := Idle(k, s)
	if !s.Keepalive {
		return kernel // nothing is outstanding: nothing to watch
	}
	eff := s.Effective(k)
	at := WatchWorstCase(w.Window, eff.KeepIdle)
	if at >= kernel.Detected {
		return kernel
	}
	var log eventLog
	log.add(0, "last ACK received; a query runs on the server; the peer dies")
	log.add(eff.KeepIdle, "keep-alive probe 1 sent; unanswered")
	log.add(eff.KeepIdle+WatchTick, "pgfast's watcher sees the probe unanswered (TCP_INFO, sampled every %s)", Format(WatchTick))
	return log.result(at, CauseDeadPeerWindow,
		"silent >= %s (dead-peer window), probe unanswered >= %s: socket shut down, address evicted (host-level)",
		Format(w.Window), Format(WatchConfirm))
}

// WatchedUnacked returns how long pgfast takes to notice that the peer died
// while data sent to it is unacknowledged: the kernel's retransmission
// timeline (Unacked), cut short by the watcher at the window.
func WatchedUnacked(k Kernel, s Socket, w Watch) Result {
	kernel := Unacked(k, s)
	at := WatchWorstCase(w.Window, 0)
	if at >= kernel.Detected {
		return kernel
	}
	var log eventLog
	log.add(0, "data sent (a query); the peer is gone, nothing is acknowledged")
	log.add(WatchTick, "pgfast's watcher sees the data unacknowledged (TCP_INFO, sampled every %s)", Format(WatchTick))
	return log.result(at, CauseDeadPeerWindow,
		"no ACK >= %s since the send (dead-peer window): socket shut down, address evicted (host-level)",
		Format(w.Window))
}

// ZeroWindow returns what happens to a connection whose server stops reading
// (a COPY waiting on a lock) but stays alive: the client's send queue fills,
// the server advertises a zero window and answers every window probe. Only
// TCP_USER_TIMEOUT ends that (Linux 5.1 and later), after the user timeout;
// pgfast then drops that connection alone (connection-level: the peer was
// heard recently), and its watcher never does, however long the stall.
func ZeroWindow(s Socket) Result {
	events := []Event{
		{0, "the server stops reading (lock wait); the send queue fills; zero window"},
		{0, "window probes are sent with backoff and each is ACKed: the peer is alive"},
	}
	if s.UserTimeout <= 0 {
		events = append(events, Event{0, "no TCP_USER_TIMEOUT: the connection waits as long as the server does"})
		return Result{Never: true, Cause: CauseNoUserTimeout, Events: events}
	}
	events = append(events, Event{s.UserTimeout, "zero window for " + Format(s.UserTimeout) +
		" >= tcp_user_timeout: the kernel aborts the connection (ETIMEDOUT; Linux 5.1+)"})
	return Result{Detected: s.UserTimeout, Cause: CauseUserTimeout, Events: events}
}

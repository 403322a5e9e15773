package timeline

import (
	"strings"
	"testing"
	"time"
)

// pgfastDefaults is pgfast's default socket: keep-alive 10s/5s/3, no
// TCP_USER_TIMEOUT.
func pgfastDefaults() Socket {
	return Socket{Keepalive: true, KeepIdle: 10 * s, KeepIntvl: 5 * s, KeepCount: 3}
}

// tuned is issue 10's tuned DSN: keepalives_idle=1 keepalives_interval=1
// keepalives_count=2 tcp_user_timeout=3000.
func tuned() Socket {
	return Socket{Keepalive: true, KeepIdle: s, KeepIntvl: s, KeepCount: 2, UserTimeout: 3 * s}
}

// TestWatchedDefaults: with pgfast's defaults a query in flight on a dead
// peer is detected in <= 12 s (issue 10), by the watcher; tuned, the kernel's
// 3 s user timeout comes first (<= 3.5 s).
func TestWatchedDefaults(t *testing.T) {
	k := kernel()
	w := Watch{Window: DefaultWatchWindow}
	idle := WatchedIdle(k, pgfastDefaults(), w)
	if idle.Detected != 11500*ms || idle.Cause != CauseDeadPeerWindow {
		t.Errorf("defaults, idle in a query: %v by %s, want 11.5s by the dead-peer window:\n%s", idle.Detected, idle.Cause, dump(idle.Events))
	}
	unacked := WatchedUnacked(k, pgfastDefaults(), w)
	if unacked.Detected != 10500*ms || unacked.Cause != CauseDeadPeerWindow {
		t.Errorf("defaults, unacked: %v by %s, want 10.5s by the dead-peer window", unacked.Detected, unacked.Cause)
	}
	for _, r := range []Result{idle, unacked} {
		if last := r.Events[len(r.Events)-1]; last.At != r.Detected || !strings.Contains(last.Text, "address evicted") {
			t.Errorf("last event %+v, want the eviction at %v", last, r.Detected)
		}
	}

	w = Watch{Window: 3 * s}
	if r := WatchedIdle(k, tuned(), w); r.Detected != 3*s || r.Cause != CauseUserTimeout {
		t.Errorf("tuned, idle in a query: %v by %s, want 3s by tcp_user_timeout", r.Detected, r.Cause)
	}
	if r := WatchedUnacked(k, tuned(), w); r.Detected != 3200*ms || r.Cause != CauseUserTimeout {
		t.Errorf("tuned, unacked: %v by %s, want 3.2s by tcp_user_timeout", r.Detected, r.Cause)
	}
	off := pgfastDefaults()
	off.Keepalive = false
	if r := WatchedIdle(k, off, Watch{Window: DefaultWatchWindow}); !r.Never {
		t.Errorf("keep-alive off, idle in a query: %+v, want never (nothing outstanding to watch)", r)
	}
}

func TestWatchWorstCase(t *testing.T) {
	for _, tc := range []struct{ window, at, want time.Duration }{
		{10 * s, 10 * s, 11500 * ms}, // keep-alive probe at 10s
		{10 * s, 0, 10500 * ms},      // data unacked from the start
		{3 * s, s, 3500 * ms},
		{20 * s, 10 * s, 20500 * ms},
	} {
		if got := WatchWorstCase(tc.window, tc.at); got != tc.want {
			t.Errorf("WatchWorstCase(%v, %v) = %v, want %v", tc.window, tc.at, got, tc.want)
		}
	}
}

// TestZeroWindow: a live server's zero window is never ended without
// TCP_USER_TIMEOUT (raw drivers and pgfast's defaults alike); with it, the
// kernel (Linux 5.1+) ends it at the user timeout.
func TestZeroWindow(t *testing.T) {
	if r := ZeroWindow(pgfastDefaults()); !r.Never || r.Cause != CauseNoUserTimeout {
		t.Errorf("defaults: %+v, want never", r)
	}
	if r := ZeroWindow(GoDefaultSocket()); !r.Never {
		t.Errorf("raw drivers: %+v, want never", r)
	}
	if r := ZeroWindow(tuned()); r.Never || r.Detected != 3*s || r.Cause != CauseUserTimeout {
		t.Errorf("tcp_user_timeout=3000: %+v, want 3s by tcp_user_timeout", r)
	}
}

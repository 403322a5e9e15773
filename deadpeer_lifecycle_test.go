package pgfast

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestPeerWatcherGenerationsTakeTurns: a goroutine stopped while it looks at
// the sockets and the goroutine started after it (each with its own
// channels, none handed from one to the next) never look at the same time:
// the new one's ticks wait until the old one has finished its look.
func TestPeerWatcherGenerationsTakeTurns(t *testing.T) {
	w := newPeerWatcher()
	w.tick = time.Millisecond
	var inside, samples atomic.Int32
	var overlap, first atomic.Bool
	entered := make(chan struct{})
	release := make(chan struct{})
	w.sample = func(*trackedConn) (tcpSample, bool) {
		if inside.Add(1) > 1 {
			overlap.Store(true)
		}
		defer inside.Add(-1)
		samples.Add(1)
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release // the first goroutine is stopped and replaced meanwhile
		}
		return tcpSample{}, true
	}
	tc := watchedPipe(t, newAddrBook(), netip.MustParseAddrPort("127.0.0.1:5432"))
	tc.inIO.Add(1)
	defer tc.inIO.Add(-1)

	w.add(tc)
	first1 := w.running()
	waitClosed(t, entered, "the first goroutine's first look")
	w.remove(tc) // stops the first goroutine, which is still looking
	w.add(tc)    // starts the second one
	second := w.running()
	if second == nil || second == first1 {
		t.Fatal("no new goroutine after a removal and an add")
	}
	time.Sleep(50 * w.tick) // some fifty ticks of the second goroutine
	if n := samples.Load(); n != 1 {
		t.Errorf("%d samples while the stopped goroutine still looked, want 1", n)
	}
	close(release)
	waitClosed(t, first1, "the stopped goroutine's exit")
	deadline := time.Now().Add(5 * time.Second)
	for samples.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := samples.Load(); n < 3 {
		t.Errorf("%d samples, want the second goroutine to look once the first was done", n)
	}
	w.remove(tc)
	waitClosed(t, second, "the second goroutine's exit")
	if overlap.Load() {
		t.Error("two watcher goroutines sampled at the same time")
	}
}

// waitClosed waits (bounded) until ch is closed.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not happen within 5 s", what)
	}
}

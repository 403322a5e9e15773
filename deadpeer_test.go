package pgfast

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgfast/pgfast/internal/timeline"
)

// watchedPipe makes a tracked socket over an in-memory pipe, registered in a
// book (no file descriptor: the test's sampler stands in for TCP_INFO).
func watchedPipe(t *testing.T, b *addrBook, addr netip.AddrPort) *trackedConn {
	t.Helper()
	b.attemptStarted(addr)
	client, server := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	tc := b.attemptDone(addr, client, nil).(*trackedConn)
	tc.window = DefaultDeadPeerWindow
	return tc
}

// TestPeerWatcherStartsAndStops: the watcher goroutine runs only while a
// socket is registered; removing the last one stops it, and a new socket
// starts it again. Idle sockets (no Read or Write in progress) are never
// sampled.
func TestPeerWatcherStartsAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newPeerWatcher()
		var samples atomic.Int64
		w.sample = func(*trackedConn) (tcpSample, bool) {
			samples.Add(1)
			return tcpSample{lastAck: time.Millisecond, lastDataRecv: time.Millisecond}, true
		}
		b := newAddrBook()
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		if w.running() != nil {
			t.Fatal("a new watcher runs before any socket is registered")
		}
		a, c := watchedPipe(t, b, addr), watchedPipe(t, b, addr)
		w.add(a)
		w.add(c)
		done := w.running()
		if done == nil {
			t.Fatal("no goroutine after the first registration")
		}
		time.Sleep(10*time.Second + time.Millisecond) // between ticks
		if n := samples.Load(); n != 0 {
			t.Errorf("%d samples of idle sockets, want 0 (idle sockets cost no system call)", n)
		}
		a.inIO.Add(1)
		time.Sleep(2*watchTick + time.Millisecond)
		if n := samples.Load(); n != 2 {
			t.Errorf("%d samples of one busy socket in two ticks, want 2", n)
		}
		a.inIO.Add(-1)

		w.remove(a)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("stopped while a socket is still registered")
		default:
		}
		w.remove(c)
		w.remove(c) // twice: no effect
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the watcher goroutine still runs after its last socket was removed")
		}
		if w.running() != nil {
			t.Error("running() reports a goroutine after the stop")
		}

		w.add(c)
		if w.running() == nil {
			t.Fatal("no goroutine after a registration following a stop")
		}
		w.remove(c)
		synctest.Wait() // the bubble would report a goroutine left running
	})
}

// TestPeerWatcherEvictsSilentPeerOnly: a busy socket whose peer is silent
// for the window is shut down and its address evicted (Down); a busy socket
// whose peer keeps answering window probes (a server waiting on a lock) is
// left alone however long it waits.
func TestPeerWatcherEvictsSilentPeerOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newPeerWatcher()
		start := time.Now()
		w.sample = func(tc *trackedConn) (tcpSample, bool) {
			since := time.Since(start)
			if tc.addr.Port() == 1 { // alive: zero window, every probe ACKed at once
				return tcpSample{lastAck: since % (3 * time.Second), lastDataRecv: since}, true
			}
			// dead since start: a keep-alive probe unanswered from 10 s on
			s := tcpSample{lastAck: since, lastDataRecv: since}
			if since >= 10*time.Second {
				s.probes = 1
			}
			return s, true
		}
		var mu sync.Mutex
		var evictedList []netip.AddrPort
		var downCount int
		state := func() ([]netip.AddrPort, int) {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(evictedList), downCount
		}
		b := newAddrBook()
		b.onEvict = func(addr netip.AddrPort, cause error, how eviction) {
			mu.Lock()
			defer mu.Unlock()
			evictedList = append(evictedList, addr)
			if how.down {
				downCount++
			}
			if !errors.Is(cause, errPeerSilent) {
				t.Errorf("eviction cause %v, want errPeerSilent", cause)
			}
		}
		slow := watchedPipe(t, b, netip.MustParseAddrPort("127.0.0.1:1"))
		dead := watchedPipe(t, b, netip.MustParseAddrPort("127.0.0.1:2"))
		slow.inIO.Add(1)
		dead.inIO.Add(1)
		w.add(slow)
		w.add(dead)
		time.Sleep(10*time.Second + watchConfirm - time.Millisecond)
		if evicted, _ := state(); len(evicted) != 0 {
			t.Fatalf("evicted %v before the window and its confirmation passed", evicted)
		}
		time.Sleep(watchTick + time.Millisecond)
		evicted, downs := state()
		if len(evicted) != 1 || evicted[0].Port() != 2 || downs != 1 || !dead.evicted.Load() {
			t.Fatalf("after %v: evicted %v (down %d), dead socket shut down=%v; want only :2, Down",
				time.Since(start), evicted, downs, dead.evicted.Load())
		}
		if detected := time.Since(start); detected > timeline.WatchWorstCase(10*time.Second, 10*time.Second) {
			t.Errorf("detected after %v, more than the timeline's worst case", detected)
		}
		time.Sleep(120 * time.Second)
		if evicted, _ := state(); len(evicted) != 1 || slow.evicted.Load() {
			t.Errorf("the slow server's socket was judged dead: evicted %v", evicted)
		}
		w.remove(slow)
		w.remove(dead)
		synctest.Wait()
	})
}

// TestWatcherConstantsMatchTimeline: pgfast explain models the watcher with
// the same tick and confirmation.
func TestWatcherConstantsMatchTimeline(t *testing.T) {
	if timeline.WatchTick != watchTick || timeline.WatchConfirm != watchConfirm || timeline.DefaultWatchWindow != DefaultDeadPeerWindow {
		t.Errorf("timeline models tick %v confirm %v window %v; the watcher uses %v %v %v",
			timeline.WatchTick, timeline.WatchConfirm, timeline.DefaultWatchWindow, watchTick, watchConfirm, DefaultDeadPeerWindow)
	}
}

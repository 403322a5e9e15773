package netx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgfast/pgfast/internal/timeline"
)

// sampleOf returns a TCP_INFO reader that always answers s.
func sampleOf(s tcpSample) func() (tcpSample, bool) {
	return func() (tcpSample, bool) { return s, true }
}

// TestClassifyEvidence: each error of item 1 of issue 10 gets its level, with
// and without a TCP_INFO snapshot, and the same event twice (or seen by
// another goroutine, wrapped differently) gets the same verdict.
func TestClassifyEvidence(t *testing.T) {
	const window = 10 * time.Second
	opErr := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	ackedRecently := sampleOf(tcpSample{lastAck: 2 * time.Second, lastDataRecv: 40 * time.Second, probes: 1})
	silent := sampleOf(tcpSample{lastAck: 25 * time.Second, lastDataRecv: 25 * time.Second, probes: 3})
	for _, tc := range []struct {
		name string
		err  error
		info func() (tcpSample, bool)
		want verdict
	}{
		{"RST (terminated backend)", opErr("read", syscall.ECONNRESET), nil, connLevel},
		{"EPIPE", opErr("write", syscall.EPIPE), nil, connLevel},
		{"ECONNABORTED", opErr("read", syscall.ECONNABORTED), nil, connLevel},
		{"EOF", io.EOF, nil, connLevel},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), nil, connLevel},
		{"server closing (ErrorResponse waiting)", errServerClosing, nil, connLevel},
		{"ETIMEDOUT, peer ACKed 2s ago (zero-window stall ended by tcp_user_timeout)", opErr("write", syscall.ETIMEDOUT), ackedRecently, connLevel},
		{"ETIMEDOUT, peer silent 25s", opErr("read", syscall.ETIMEDOUT), silent, hostLevel},
		{"ETIMEDOUT, zero window, last probe answer long ago (the abort of a stall)", opErr("write", syscall.ETIMEDOUT),
			sampleOf(tcpSample{lastAck: 25 * time.Second, lastDataRecv: 25 * time.Second, zeroWindow: true}), connLevel},
		{"ETIMEDOUT, no TCP_INFO", opErr("read", syscall.ETIMEDOUT), nil, hostLevel},
		{"ETIMEDOUT, TCP_INFO unreadable", opErr("read", syscall.ETIMEDOUT), func() (tcpSample, bool) { return tcpSample{}, false }, hostLevel},
		{"EHOSTUNREACH", opErr("read", syscall.EHOSTUNREACH), nil, hostLevel},
		{"ENETUNREACH", opErr("write", syscall.ENETUNREACH), nil, hostLevel},
		{"peer silent (watcher)", &peerSilentError{silent: 11 * time.Second, window: window}, nil, hostLevel},
		{"a deadline the driver set for a context", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, nil, noEvidence},
		{"closed by the driver", &net.OpError{Op: "read", Err: net.ErrClosed}, nil, noEvidence},
		{"shut down by pgfast", errConnEvicted, nil, noEvidence},
		{"nil", nil, nil, noEvidence},
	} {
		for i := range 2 {
			if got := classify(tc.err, tc.info, window); got != tc.want {
				t.Errorf("%s (run %d): %v, want %v", tc.name, i+1, got, tc.want)
			}
		}
		if tc.err != nil {
			wrapped := fmt.Errorf("another goroutine's view: %w", tc.err)
			if got := classify(wrapped, tc.info, window); got != tc.want {
				t.Errorf("%s, wrapped: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}

// TestSilenceRule: the watcher's judgement of TCP_INFO samples over time.
func TestSilenceRule(t *testing.T) {
	const window = 10 * time.Second
	t0 := time.Unix(1000, 0)
	type step struct {
		at   time.Duration // since t0
		s    tcpSample
		dead bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"idle in a query, keep-alive probe unanswered (blackhole)", []step{
			{9500 * time.Millisecond, tcpSample{lastAck: 9500 * time.Millisecond, lastDataRecv: 9500 * time.Millisecond}, false},
			{10 * time.Second, tcpSample{lastAck: 10 * time.Second, lastDataRecv: 10 * time.Second, probes: 1}, false},
			{10500 * time.Millisecond, tcpSample{lastAck: 10500 * time.Millisecond, lastDataRecv: 10500 * time.Millisecond, probes: 1}, false},
			{11 * time.Second, tcpSample{lastAck: 11 * time.Second, lastDataRecv: 11 * time.Second, probes: 1}, true},
		}},
		{"zero window, peer ACKs every probe (lock wait)", []step{
			{10 * time.Second, tcpSample{lastAck: 6 * time.Second, lastDataRecv: 30 * time.Second}, false},
			{20 * time.Second, tcpSample{lastAck: 12800 * time.Millisecond, lastDataRecv: 40 * time.Second, probes: 1}, false},
			{20500 * time.Millisecond, tcpSample{lastAck: 0, lastDataRecv: 40 * time.Second}, false},
			{45 * time.Second, tcpSample{lastAck: 25 * time.Second, lastDataRecv: 65 * time.Second, probes: 1}, false},
			{45500 * time.Millisecond, tcpSample{lastAck: 10 * time.Millisecond, lastDataRecv: 65 * time.Second}, false},
			{90 * time.Second, tcpSample{lastAck: 44 * time.Second, lastDataRecv: 110 * time.Second}, false},
		}},
		{"zero window, peer dies: probes go unanswered", []step{
			{10 * time.Second, tcpSample{lastAck: 12 * time.Second, lastDataRecv: 30 * time.Second, probes: 1}, false},
			{10500 * time.Millisecond, tcpSample{lastAck: 12500 * time.Millisecond, lastDataRecv: 30 * time.Second, probes: 1}, false},
			{11 * time.Second, tcpSample{lastAck: 13 * time.Second, lastDataRecv: 31 * time.Second, probes: 1}, true},
		}},
		{"query sent into a blackhole: data unacked", []step{
			{500 * time.Millisecond, tcpSample{lastAck: 60 * time.Second, lastDataRecv: 60 * time.Second, lastDataSent: 500 * time.Millisecond, unacked: 1}, false},
			{9500 * time.Millisecond, tcpSample{lastAck: 69 * time.Second, lastDataRecv: 69 * time.Second, lastDataSent: 9500 * time.Millisecond, unacked: 1}, false},
			{10 * time.Second, tcpSample{lastAck: 70 * time.Second, lastDataRecv: 70 * time.Second, lastDataSent: 10 * time.Second, unacked: 1}, false},
			{10500 * time.Millisecond, tcpSample{lastAck: 70500 * time.Millisecond, lastDataRecv: 70500 * time.Millisecond, lastDataSent: 200 * time.Millisecond, unacked: 1}, true},
		}},
		{"big COPY to a live server: unacked all the time, ACKs flowing", []step{
			{10 * time.Second, tcpSample{lastAck: 1 * time.Millisecond, lastDataRecv: 50 * time.Second, lastDataSent: 0, unacked: 40}, false},
			{20 * time.Second, tcpSample{lastAck: 3 * time.Millisecond, lastDataRecv: 60 * time.Second, lastDataSent: 0, unacked: 40}, false},
		}},
		{"a long-idle connection sends a query; the ACK is slow (900ms)", []step{
			{0, tcpSample{lastAck: 600 * time.Second, lastDataRecv: 600 * time.Second, lastDataSent: 0, unacked: 1}, false},
			{500 * time.Millisecond, tcpSample{lastAck: 600 * time.Second, lastDataRecv: 600 * time.Second, lastDataSent: 500 * time.Millisecond, unacked: 1}, false},
			{time.Second, tcpSample{lastAck: 100 * time.Millisecond, lastDataRecv: 100 * time.Millisecond}, false},
		}},
		{"keep-alive answered after 800ms (slow path)", []step{
			{10500 * time.Millisecond, tcpSample{lastAck: 10500 * time.Millisecond, lastDataRecv: 10500 * time.Millisecond, probes: 1}, false},
			{11 * time.Second, tcpSample{lastAck: 200 * time.Millisecond, lastDataRecv: 11 * time.Second}, false},
		}},
	} {
		var w silence
		for i, st := range tc.steps {
			now := t0.Add(st.at)
			_, dead := w.observe(now, st.s, window)
			if dead != st.dead {
				t.Errorf("%s, step %d (%v): dead=%v, want %v", tc.name, i+1, st.at, dead, st.dead)
			}
		}
	}
}

// TestCallerDeadlineDoesNotMarkAddressBad: a caller whose context ends
// during a dial (its own deadline, shorter than connect_timeout) is not the
// server's fault: the address keeps its status and its place in the order.
// The attempt's own connect_timeout still marks it bad.
func TestCallerDeadlineDoesNotMarkAddressBad(t *testing.T) {
	blackhole := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
	}
	target := netip.MustParseAddrPort("127.0.0.9:5432")

	d := NewDialer(Settings{ConnectTimeout: 2 * time.Second}, nil)
	d.dialAddr = blackhole
	d.book = NewBook(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := d.DialContext(ctx, "tcp", target.String())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with a 50ms context: %v, want context.DeadlineExceeded", err)
	}
	if d.book.isBad(target) {
		t.Errorf("the caller's own deadline marked %s bad", target)
	}
	for _, a := range d.book.Stats() {
		if a.Err != nil || a.Status == "failed" {
			t.Errorf("Stats after the caller's deadline: %+v, want no failure", a)
		}
	}
	if p := d.book.Progress(time.Now()); len(p) != 0 {
		t.Errorf("progress after the caller's deadline: %v, want nothing (no attempt pending, no failure)", p)
	}

	d2 := NewDialer(Settings{ConnectTimeout: 50 * time.Millisecond}, nil)
	d2.dialAddr = blackhole
	d2.book = NewBook(nil)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	_, err = d2.DialContext(ctx, "tcp", target.String())
	cancel()
	if err == nil || !d2.book.isBad(target) {
		t.Errorf("connect_timeout reached (%v): address bad=%v, want true", err, d2.book.isBad(target))
	}
}

// TestEveryErrorIsActedOn: a socket's later errors count as much as its
// first. Whether the reader's EOF or the writer's EHOSTUNREACH is seen first,
// the address is evicted (once), and a connection-level error alone never
// evicts.
func TestEveryErrorIsActedOn(t *testing.T) {
	unreachable := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EHOSTUNREACH)}
	for _, order := range [][]error{{io.EOF, unreachable}, {unreachable, io.EOF}, {io.EOF, io.EOF}} {
		b := NewBook(nil)
		var evictions []error
		b.onEvict = func(_ netip.AddrPort, cause error, how eviction) {
			if !how.down {
				t.Errorf("eviction %v is not Down", how)
			}
			evictions = append(evictions, cause)
		}
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		b.attemptStarted(addr)
		client, server := net.Pipe()
		tc := b.attemptDone(addr, client, nil).(*trackedConn)
		for _, err := range order {
			tc.failed(err)
		}
		want := 1
		if order[0] == io.EOF && order[1] == io.EOF {
			want = 0
		}
		if len(evictions) != want {
			t.Errorf("errors %v: %d evictions (%v), want %d", order, len(evictions), evictions, want)
		}
		client.Close()
		server.Close()
	}
}

// watchedPipe makes a tracked socket over an in-memory pipe, registered in a
// book (no file descriptor: the test's sampler stands in for TCP_INFO).
func watchedPipe(t *testing.T, b *Book, addr netip.AddrPort) *trackedConn {
	t.Helper()
	b.attemptStarted(addr)
	client, server := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	tc := b.attemptDone(addr, client, nil).(*trackedConn)
	// As a dial with pgfast's defaults sets them (keepalives_idle=10).
	tc.window, tc.keepIdle = DefaultDeadPeerWindow, 10*time.Second
	return tc
}

// TestPeerWatcherStartsAndStops: registering sockets starts no goroutine;
// a socket in I/O wakes it (as Read and Write do), it parks after
// idleTicksToPark ticks with no socket in I/O, wakes again, and stops when
// the last socket is removed. Idle sockets (no Read or Write in progress)
// are never sampled. Before parking, registration started the goroutine and
// it ticked for as long as any socket was registered.
func TestPeerWatcherStartsAndStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newPeerWatcher()
		var samples atomic.Int64
		w.sample = func(*trackedConn) (tcpSample, bool) {
			samples.Add(1)
			// Waiting on the peer (unacknowledged data), answered lately.
			return tcpSample{unacked: 1, lastAck: time.Millisecond, lastDataRecv: time.Millisecond}, true
		}
		b := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		if w.running() != nil {
			t.Fatal("a new watcher runs before any socket is registered")
		}
		a, c := watchedPipe(t, b, addr), watchedPipe(t, b, addr)
		w.add(a)
		w.add(c)
		if w.running() != nil {
			t.Fatal("registering idle sockets started the goroutine")
		}
		a.inIO.Add(1)
		w.wake()
		done := w.running()
		if done == nil {
			t.Fatal("no goroutine once a socket is in I/O")
		}
		time.Sleep(2*watchTick + time.Millisecond)
		if n := samples.Load(); n != 2 {
			t.Errorf("%d samples of one busy socket in two ticks, want 2", n)
		}
		a.inIO.Add(-1)
		time.Sleep(idleTicksToPark*watchTick + time.Millisecond)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatalf("still running after %d ticks with no socket in I/O", idleTicksToPark)
		}
		if w.running() != nil || !w.parked.Load() {
			t.Error("running() reports a goroutine, or not parked, after parking")
		}
		time.Sleep(10 * time.Second)
		if n := samples.Load(); n != 2 {
			t.Errorf("%d samples while parked, want none", n-2)
		}

		a.inIO.Add(1)
		w.wake()
		done = w.running()
		if done == nil {
			t.Fatal("no goroutine after a wake following a park")
		}
		a.inIO.Add(-1)
		w.remove(a)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("stopped at once while a socket is still registered")
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
		c.inIO.Add(1)
		w.wake()
		if w.running() == nil {
			t.Fatal("no goroutine after a registration and a wake following a stop")
		}
		c.inIO.Add(-1)
		w.remove(c)
		synctest.Wait() // the bubble would report a goroutine left running
	})
}

// TestPeerWatcherReadWakes: a tracked socket's Read wakes the parked
// watcher, which watches it while the Read waits and parks once it returned.
func TestPeerWatcherReadWakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newPeerWatcher()
		var samples atomic.Int64
		w.sample = func(*trackedConn) (tcpSample, bool) {
			samples.Add(1)
			return tcpSample{unacked: 1}, true // the query not acknowledged yet
		}
		b := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		b.attemptStarted(addr)
		client, server := net.Pipe()
		defer server.Close()
		tc := b.attemptDone(addr, client, nil).(*trackedConn)
		tc.window = DefaultDeadPeerWindow
		w.add(tc)
		defer tc.Close()
		defer w.remove(tc)
		read := make(chan error, 1)
		go func() {
			_, err := tc.Read(make([]byte, 1))
			read <- err
		}()
		synctest.Wait()
		done := w.running()
		if done == nil {
			t.Fatal("a Read did not wake the watcher")
		}
		time.Sleep(3*watchTick + time.Millisecond)
		if n := samples.Load(); n != 3 {
			t.Errorf("%d samples of the waiting Read in 3 ticks, want 3", n)
		}
		if _, err := server.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		time.Sleep(idleTicksToPark*watchTick + time.Millisecond)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the watcher did not park once the Read returned")
		}
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
		w.dial = func(ctx context.Context, _ netip.AddrPort) error { // the corroboration's handshake: no SYN-ACK
			<-ctx.Done()
			return ctx.Err()
		}
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
		b := NewBook(nil)
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
		w.wake() // as their Reads do
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
	tc := watchedPipe(t, NewBook(nil), netip.MustParseAddrPort("127.0.0.1:5432"))
	tc.inIO.Add(1)
	defer tc.inIO.Add(-1)

	w.add(tc)
	w.wake()
	first1 := w.running()
	waitClosed(t, entered, "the first goroutine's first look")
	w.remove(tc) // stops the first goroutine, which is still looking
	w.add(tc)
	w.wake() // starts the second one
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

// TestPeerWatcherDozeLooksAtQuietSocketsOnly: while the only sockets in I/O
// are quiet, each doze's end looks again at those sockets, not at every
// registered one: the watcher stayed parked, so no other socket can have
// started I/O unseen. Before, each doze (at most 10 s) began and ended with
// a look at every socket: two scans of 1,000 idle tenants' sockets every
// 10 s, most of pgfast's idle CPU once the watcher dozed (scripts/scale:
// 0.16 % of a core, raw pgx 0.02 %).
func TestPeerWatcherDozeLooksAtQuietSocketsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newPeerWatcher()
		var samples atomic.Int64
		w.sample = func(*trackedConn) (tcpSample, bool) {
			samples.Add(1)
			// Answered: data received after the last data sent.
			return tcpSample{lastAck: time.Millisecond, lastDataRecv: time.Millisecond, lastDataSent: 2 * time.Millisecond}, true
		}
		b := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		var idle []*trackedConn
		for range 100 {
			tc := watchedPipe(t, b, addr)
			w.add(tc)
			idle = append(idle, tc)
		}
		a := watchedPipe(t, b, addr)
		a.replied.Store(true) // an idle connection's Read: dozes dozeMax
		w.add(a)
		a.inIO.Add(1)
		w.wake()
		time.Sleep(idleTicksToPark*watchTick + time.Millisecond)
		synctest.Wait()
		w.mu.Lock()
		before := w.scans
		w.mu.Unlock()
		n := samples.Load()
		time.Sleep(10 * dozeMax)
		synctest.Wait()
		w.mu.Lock()
		scans := w.scans - before
		w.mu.Unlock()
		if scans != 0 {
			t.Errorf("%d looks at every socket over 10 dozes, want none", scans)
		}
		if got := samples.Load() - n; got < 9 || got > 11 {
			t.Errorf("the quiet socket sampled %d times over 10 dozes, want one per doze", got)
		}
		// Its Read ends and a Write starts on another socket: a full look.
		a.inIO.Add(-1)
		idle[0].inIO.Add(1)
		if w.parked.Load() {
			w.wake()
		}
		synctest.Wait()
		w.mu.Lock()
		scans = w.scans - before
		w.mu.Unlock()
		if scans == 0 {
			t.Error("no look at every socket after a Write began")
		}
		idle[0].inIO.Add(-1)
		for _, tc := range append(idle, a) {
			w.remove(tc)
		}
		synctest.Wait()
	})
}

// TestKeepIdleOfOSDefault: with keepalives_idle=0 (the system's) a watched
// socket's keep-alive idle time is the one the socket has, not zero: zero
// let a doze sleep dozeMax (10 s) past the first probe of a system whose
// tcp_keepalive_time is shorter.
func TestKeepIdleOfOSDefault(t *testing.T) {
	if !watchesPeers {
		t.Skip("the watcher runs on Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	d := NewDialer(Settings{Keepalives: true, ConnectTimeout: 5 * time.Second}, nil)
	d.book = NewBook(nil)
	nc, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := trackedOf(nc)
	if tc == nil {
		t.Fatal("the dial's socket is not tracked")
	}
	opts, err := ReadSocketOptions(nc)
	if err != nil {
		t.Fatal(err)
	}
	if opts.KeepalivesIdle <= 0 || tc.keepIdle != opts.KeepalivesIdle {
		t.Errorf("keep-alive idle time %v for the watcher, the socket's is %v", tc.keepIdle, opts.KeepalivesIdle)
	}
}

// TestQuietSocketDozeUntil: how long the watcher may doze on a quiet socket
// (check): an answered request, dozeMax; an unanswered one, until its first
// keep-alive probe may go out. Data read during the last Write that came
// before the last data sent (replies to a batch's first queries) does not
// answer it.
func TestQuietSocketDozeUntil(t *testing.T) {
	const keepIdle = 3 * time.Second
	ms := time.Millisecond
	for _, c := range []struct {
		name       string
		replied    bool
		recv, sent time.Duration // since the last data received, sent
		want       time.Duration
	}{
		{"answered", true, 5 * ms, 8 * ms, dozeMax},
		{"answered within the same kernel tick", true, 5 * ms, 5 * ms, dozeMax},
		{"nothing read since the Write", false, 50 * ms, 8 * ms, keepIdle - 8*ms},
		{"read during the Write, before its last data", true, 50 * ms, 8 * ms, keepIdle - 8*ms},
	} {
		w := newPeerWatcher()
		now := time.Now()
		w.now = func() time.Time { return now }
		w.sample = func(*trackedConn) (tcpSample, bool) {
			return tcpSample{lastAck: c.sent, lastDataRecv: c.recv, lastDataSent: c.sent}, true
		}
		tc := watchedPipe(t, NewBook(nil), netip.MustParseAddrPort("127.0.0.1:5432"))
		tc.keepIdle = keepIdle
		tc.replied.Store(c.replied)
		quiet, until := w.check(tc, now)
		if !quiet || until.Sub(now) != c.want {
			t.Errorf("%s: quiet %v, doze %v, want quiet, %v", c.name, quiet, until.Sub(now), c.want)
		}
	}
}

// TestReplyBeforeWriteReturns: a reply that a Read waiting beside the Write
// (pgx's background reader) gets before the Write returns is the request's
// reply. Before, replied was cleared after the Write returned: on loopback
// the reply often came first, the answered request looked unanswered for
// good, and the watcher, waiting for its keep-alive probe, never dozed again
// (scripts/scale: 7 of 1,000 idle sockets, 0.4 % of a core).
func TestReplyBeforeWriteReturns(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	deadline := time.Now().Add(10 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	read := make(chan struct{})
	tc := &trackedConn{Conn: &replyFirstConn{Conn: client, read: read}}
	tc.replied.Store(true) // the previous request was answered
	go func() {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err == nil {
			_, _ = server.Write([]byte("reply"))
		}
	}()
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 5)
		_, err := io.ReadFull(tc, buf)
		close(read)
		got <- err
	}()
	if _, err := tc.Write([]byte("query")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !tc.replied.Load() {
		t.Error("the reply read before the Write returned does not count: the request looks unanswered")
	}
}

// replyFirstConn's Write returns only once a Read has returned: the reply
// arrives before the Write's caller runs again.
type replyFirstConn struct {
	net.Conn
	read chan struct{}
}

func (c *replyFirstConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	select {
	case <-c.read:
	case <-time.After(10 * time.Second):
	}
	return n, err
}

// TestPeerWatcherDozesOnQuietReads: a Read that waits with nothing
// outstanding (pgx's background reader stays in Read on an idle connection)
// does not keep the watcher ticking: after idleTicksToPark ticks it dozes
// until the socket's first keep-alive probe may go out, and a Read or Write
// starting anywhere wakes it at once. Before, one such connection among
// 1,000 idle tenants kept it sampling at 2 Hz for ever (scripts/scale: 0.3 %
// of a core idle, raw pgx 0.02 %).
func TestPeerWatcherDozesOnQuietReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newPeerWatcher()
		var samples atomic.Int64
		var waiting atomic.Bool
		w.sample = func(*trackedConn) (tcpSample, bool) {
			samples.Add(1)
			s := tcpSample{lastAck: time.Millisecond, lastDataRecv: time.Millisecond}
			if waiting.Load() {
				s.unacked = 1
			}
			return s, true
		}
		b := NewBook(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		a, c := watchedPipe(t, b, addr), watchedPipe(t, b, addr)
		a.keepIdle = 3 * time.Second // its probe, not dozeMax, ends the doze
		w.add(a)
		w.add(c)
		startIO := func(tc *trackedConn) {
			tc.inIO.Add(1)
			if w.parked.Load() {
				w.wake()
			}
		}
		startIO(a) // a Read that stays
		done := w.running()
		time.Sleep(idleTicksToPark*watchTick + time.Millisecond)
		synctest.Wait()
		n := samples.Load()
		if n != idleTicksToPark {
			t.Fatalf("%d samples before dozing, want %d", n, idleTicksToPark)
		}
		time.Sleep(a.keepIdle - 3*time.Millisecond) // the doze began 1 ms ago, 1 ms after the socket was last heard
		if got := samples.Load() - n; got != 0 {
			t.Errorf("%d samples of a quiet Read before its keep-alive idle time, want none", got)
		}
		time.Sleep(2 * time.Millisecond)
		if got := samples.Load() - n; got == 0 {
			t.Error("no look when a quiet Read's first keep-alive probe may have gone out")
		}
		select {
		case <-done:
			t.Fatal("the watcher parked while a Read was in progress")
		default:
		}
		// A Write on another socket wakes it at once.
		waiting.Store(true)
		n = samples.Load()
		startIO(c)
		synctest.Wait()
		if got := samples.Load() - n; got != 2 {
			t.Errorf("%d samples at once after a Write began, want 2 (both sockets)", got)
		}
		time.Sleep(watchTick + time.Millisecond)
		if got := samples.Load() - n; got != 4 {
			t.Errorf("%d samples one tick after a Write began, want 4 (ticking again)", got)
		}
		c.inIO.Add(-1)
		waiting.Store(false)
		// Dozing again, it looks at the keep-alive idle time at the latest.
		time.Sleep(idleTicksToPark*watchTick + time.Millisecond)
		n = samples.Load()
		time.Sleep(a.keepIdle + watchTick)
		if got := samples.Load() - n; got == 0 {
			t.Error("no look within the keep-alive idle time of a quiet Read")
		}
		// Removed while dozing, the watcher stops, and a later Read starts
		// it again.
		time.Sleep(idleTicksToPark*watchTick + time.Millisecond)
		w.remove(a)
		w.remove(c)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the watcher goroutine still runs after its last socket was removed")
		}
		if !w.parked.Load() {
			t.Fatal("not parked after its last socket was removed while it dozed: no Read would start it again")
		}
		d := watchedPipe(t, b, addr)
		w.add(d)
		waiting.Store(true)
		startIO(d)
		if w.running() == nil {
			t.Fatal("a Read after a doze ended by removal did not start the watcher")
		}
		d.inIO.Add(-1)
		w.remove(d)
		synctest.Wait()
	})
}

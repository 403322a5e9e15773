package netx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
	"github.com/pgfast/pgfast/internal/timeline"
)

// corroborationRig is a watcher over canned TCP_INFO: one suspect whose data
// stays unacknowledged from the start, optional siblings in the same book,
// and a handshake the test scripts. It counts evictions and dials.
type corroborationRig struct {
	t       *testing.T
	w       *peerWatcher
	b       *Book
	start   time.Time
	suspect *trackedConn

	mu       sync.Mutex
	evicted  []error
	downs    int
	dials    []time.Duration // since start, one per handshake
	samples  map[*trackedConn]func(since time.Duration) tcpSample
	dialWith func(ctx context.Context) error
}

var rigAddr = netip.MustParseAddrPort("127.0.0.1:5432")

func newCorroborationRig(t *testing.T, suspect func(since time.Duration) tcpSample) *corroborationRig {
	r := &corroborationRig{t: t, w: newPeerWatcher(), b: NewBook(nil), start: time.Now(),
		samples: map[*trackedConn]func(time.Duration) tcpSample{}}
	r.b.onEvict = func(_ netip.AddrPort, cause error, how eviction) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.evicted = append(r.evicted, cause)
		if how.down {
			r.downs++
		}
	}
	r.w.sample = func(tc *trackedConn) (tcpSample, bool) {
		r.mu.Lock()
		f := r.samples[tc]
		r.mu.Unlock()
		if f == nil {
			return tcpSample{}, false
		}
		return f(time.Since(r.start)), true
	}
	r.w.dial = func(ctx context.Context, _ netip.AddrPort) error {
		r.mu.Lock()
		r.dials = append(r.dials, time.Since(r.start))
		dial := r.dialWith
		r.mu.Unlock()
		if dial != nil {
			return dial(ctx)
		}
		<-ctx.Done() // a blackhole: no SYN-ACK
		return &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}
	}
	r.suspect = r.sibling(suspect)
	r.suspect.inIO.Add(1)
	r.w.add(r.suspect)
	r.w.wake() // the watcher parks until a socket's I/O wakes it; the rig sets inIO directly
	return r
}

// sibling adds a socket to the suspect's address with canned samples.
func (r *corroborationRig) sibling(sample func(since time.Duration) tcpSample) *trackedConn {
	tc := watchedPipe(r.t, r.b, rigAddr)
	r.mu.Lock()
	r.samples[tc] = sample
	r.mu.Unlock()
	return tc
}

// setDial scripts the handshake (default: a blackhole).
func (r *corroborationRig) setDial(f func(ctx context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dialWith = f
}

func (r *corroborationRig) counts() (evictions, downs, dials int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evicted), r.downs, len(r.dials)
}

func (r *corroborationRig) dialTimes() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.dials...)
}

func (r *corroborationRig) stop() {
	r.suspect.inIO.Add(-1)
	r.w.remove(r.suspect)
	synctest.Wait()
}

// unacked is a suspect that sent a query into silence at the start.
func unacked(since time.Duration) tcpSample {
	return tcpSample{lastAck: time.Minute + since, lastDataRecv: time.Minute + since, unacked: 1, retransmits: 3, totalRetrans: 3}
}

// heardAlways is a busy sibling on a live path.
func heardAlways(time.Duration) tcpSample {
	return tcpSample{lastAck: 20 * time.Millisecond, lastDataRecv: 20 * time.Millisecond}
}

// todayVerdict is when the watcher judged a socket silent since the start
// before corroboration: the first tick with the window passed and confirmed.
const todayVerdict = 10*time.Second + watchTick

// TestCorroborationConfirmsSilentHost: no sibling, no SYN-ACK: the handshake
// starts at window − budget and the host-level verdict lands when the window
// passes, no later than without corroboration.
func TestCorroborationConfirmsSilentHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		r.sibling(func(since time.Duration) tcpSample { // idle, last heard before the silence
			return tcpSample{lastAck: 30*time.Second + since, lastDataRecv: 30*time.Second + since}
		})
		time.Sleep(todayVerdict - time.Millisecond)
		if ev, _, _ := r.counts(); ev != 0 {
			t.Fatalf("evicted before the window passed")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		ev, downs, dials := r.counts()
		if ev != 1 || downs != 1 || !r.suspect.evicted.Load() {
			t.Fatalf("at %v: %d evictions (%d Down), suspect shut down %v; want the host evicted, Down",
				time.Since(r.start), ev, downs, r.suspect.evicted.Load())
		}
		if dials != corroborateDials {
			t.Errorf("%d handshakes, want %d", dials, corroborateDials)
		}
		if d := r.dialTimes(); len(d) == 0 || d[0] > todayVerdict-corroborateMin+watchTick || d[0] < todayVerdict-corroborateMin-watchTick {
			t.Errorf("handshakes started at %v, want at window − budget (%v)", d, todayVerdict-corroborateMin)
		}
		if !errors.Is(r.evicted[0], errPeerSilent) {
			t.Errorf("cause %v, want errPeerSilent", r.evicted[0])
		}
		if worst := timeline.WatchWorstCase(DefaultDeadPeerWindow, DefaultDeadPeerWindow); time.Since(r.start) > worst {
			t.Errorf("judged after %v, later than the timeline's worst case %v", time.Since(r.start), worst)
		}
	})
}

// TestCorroborationRefusedConfirms: a handshake answered with a reset (no
// server listens) confirms; the verdict still waits for the window.
func TestCorroborationRefusedConfirms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		r.setDial(func(context.Context) error {
			return &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		})
		time.Sleep(todayVerdict - time.Millisecond)
		if ev, _, dials := r.counts(); ev != 0 || dials == 0 {
			t.Fatalf("before the window: %d evictions, %d handshakes; want none evicted, the handshake done", ev, dials)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if ev, downs, _ := r.counts(); ev != 1 || downs != 1 {
			t.Fatalf("at the window: %d evictions (%d Down), want 1 Down", ev, downs)
		}
	})
}

// TestCorroborationVetoedBySibling: another socket to the address heard
// after the suspect's silence began proves the path (TCP backoff under
// loss): no handshake, no eviction, no Down; at 3 × window the suspect alone
// is closed, with a connection-level cause.
func TestCorroborationVetoedBySibling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		r.sibling(heardAlways)
		time.Sleep(silentConnFactor*DefaultDeadPeerWindow - time.Millisecond)
		if ev, _, dials := r.counts(); ev != 0 || dials != 0 || r.suspect.evicted.Load() {
			t.Fatalf("before 3 × window: %d evictions, %d handshakes, suspect shut %v; want none",
				ev, dials, r.suspect.evicted.Load())
		}
		time.Sleep(2 * watchTick)
		synctest.Wait()
		ev, downs, dials := r.counts()
		if ev != 0 || downs != 0 || dials != 0 {
			t.Errorf("after 3 × window: %d evictions, %d Down, %d handshakes; want none", ev, downs, dials)
		}
		if !r.suspect.evicted.Load() {
			t.Fatal("the suspect still open after 3 × window")
		}
		err := r.suspect.ioError(errors.New("read after shutdown"))
		var cs *connSilentError
		if !errors.As(err, &cs) || !errors.Is(err, errConnEvicted) || classify(err, nil, DefaultDeadPeerWindow) != noEvidence {
			t.Errorf("the suspect's I/O error %v: want a connSilentError read as errConnEvicted (no evidence)", err)
		}
		if r.b.Evictions() != 0 {
			t.Errorf("book counts %d evictions, want 0", r.b.Evictions())
		}
	})
}

// TestCorroborationVetoedByClosedSibling: a sibling heard during the
// suspect's silence and closed before the verdict (a pool recycling its
// connections every few seconds) still vetoes it: its word is kept at
// Close. Without it, the handshake decided alone, and under 20 % loss
// it evicted a live server (loss-compare/pgfast-pgxpool, lifetime 5 s).
func TestCorroborationVetoedByClosedSibling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		sib := r.sibling(heardAlways)
		time.Sleep(todayVerdict - watchTick/2)
		r.b.untrack(sib, time.Now()) // what Close does with its TCP_INFO
		// Without the closed sibling's word, the recheck's handshake began
		// at the window and evicted one budget later, before this.
		time.Sleep(corroborateMin + 2*watchTick)
		synctest.Wait()
		ev, _, _ := r.counts()
		// Later, with no socket heard since, a handshake decides (the
		// host may have died after the sibling was heard): let it end.
		time.Sleep(corroborateLossy + corroborateMin)
		synctest.Wait()
		if ev != 0 {
			t.Errorf("%d evictions at the window, want none (a closed sibling was heard during the silence)", ev)
		}
	})
}

// TestCorroborationVetoedByHandshake: no sibling, but a fresh handshake
// completes: the path works, nothing is evicted; 3 × window closes the
// suspect alone.
func TestCorroborationVetoedByHandshake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		r.setDial(func(context.Context) error { return nil })
		time.Sleep(silentConnFactor*DefaultDeadPeerWindow + 2*watchTick)
		synctest.Wait()
		ev, downs, dials := r.counts()
		if ev != 0 || downs != 0 {
			t.Errorf("%d evictions, %d Down; want none (the handshake proved the path)", ev, downs)
		}
		if dials != corroborateDials {
			t.Errorf("%d handshakes, want one corroboration (%d)", dials, corroborateDials)
		}
		if !r.suspect.evicted.Load() {
			t.Error("the suspect still open after 3 × window")
		}
	})
}

// TestCorroborationStaleSiblingRechecked: a sibling heard just after the
// suspect's silence began, then silent too (the host died right after): the
// veto is not trusted at the window, a handshake decides, and the host is
// judged one budget later rather than at 3 × window.
func TestCorroborationStaleSiblingRechecked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		r.sibling(func(since time.Duration) tcpSample { // heard at 0.7 s, never after
			d := max(since-700*time.Millisecond, 0)
			return tcpSample{lastAck: d, lastDataRecv: d}
		})
		time.Sleep(todayVerdict + corroborateMin + watchTick)
		synctest.Wait()
		ev, downs, dials := r.counts()
		if ev != 1 || downs != 1 || dials != corroborateDials {
			t.Fatalf("%d evictions (%d Down), %d handshakes; want the host evicted after one handshake", ev, downs, dials)
		}
	})
}

// TestCorroborationBudget: max(1.5 s, 4 × srtt), 3.5 s on a lossy path, at
// most half the window.
func TestCorroborationBudget(t *testing.T) {
	for _, tc := range []struct {
		s      tcpSample
		window time.Duration
		want   time.Duration
	}{
		{tcpSample{rtt: 50 * time.Microsecond}, 10 * time.Second, corroborateMin},
		{tcpSample{rtt: 600 * time.Millisecond}, 10 * time.Second, 2400 * time.Millisecond},
		{tcpSample{rtt: time.Millisecond, retransmits: 2, totalRetrans: 5}, 10 * time.Second, corroborateLossy},
		{tcpSample{rtt: time.Millisecond, retransmits: 4, totalRetrans: 4}, 10 * time.Second, corroborateMin},
		{tcpSample{rtt: time.Millisecond, totalRetrans: 1}, 3 * time.Second, 1500 * time.Millisecond},
		{tcpSample{rtt: time.Millisecond}, 2 * time.Second, time.Second},
	} {
		if got := corroborationBudget(tc.s, tc.window, tc.s.lossy()); got != tc.want {
			t.Errorf("budget(%+v, window %v) = %v, want %v", tc.s, tc.window, got, tc.want)
		}
	}
}

// TestCorroborationLossyStartsEarlier: a suspect that recovered losses
// before gets the 3 s budget, started 3 s before the window.
func TestCorroborationLossyStartsEarlier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, func(since time.Duration) tcpSample {
			s := unacked(since)
			s.totalRetrans = 9 // recovered 6 losses before this episode
			return s
		})
		defer r.stop()
		time.Sleep(todayVerdict)
		synctest.Wait()
		dials := r.dialTimes()
		if len(dials) == 0 || dials[0] > todayVerdict-corroborateLossy+watchTick {
			t.Fatalf("handshakes at %v, want the first at about %v", dials, todayVerdict-corroborateLossy)
		}
		if ev, _, _ := r.counts(); ev != 1 {
			t.Errorf("%d evictions at the window, want 1", ev)
		}
	})
}

// TestCorroborationVetoMakesPathLossy: once a silence on a path was vetoed
// (here by a handshake), the next suspect on that path gets the lossy
// budget though its own socket saw no loss (a reading socket's
// tcpi_total_retrans does not count the server's retransmissions; under 20 %
// loss the 1.5 s budget's two SYNs per handshake evicted a live server:
// TestFaultSuite/loss-compare). A blackholed handshake then still confirms
// the host, at the window.
func TestCorroborationVetoMakesPathLossy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		r.setDial(func(context.Context) error { return nil })
		time.Sleep(todayVerdict + watchTick)
		synctest.Wait()
		if ev, _, dials := r.counts(); ev != 0 || dials == 0 {
			t.Fatalf("%d evictions, %d handshakes; want the first silence vetoed by a handshake", ev, dials)
		}
		if !r.b.pathFacts(rigAddr).lossy(time.Now()) {
			t.Fatal("the path is not lossy after a vetoed silence")
		}
		// A second socket on the path goes silent; the handshakes now go
		// unanswered.
		r.setDial(nil)
		second := time.Since(r.start)
		next := r.sibling(func(since time.Duration) tcpSample {
			d := max(since-second, 0) // silent from now on, no loss of its own
			return tcpSample{lastAck: d, lastDataRecv: d, unacked: 1, retransmits: 3, totalRetrans: 3}
		})
		next.inIO.Add(1)
		r.w.add(next)
		r.w.wake()
		defer func() { next.inIO.Add(-1); r.w.remove(next) }()
		time.Sleep(todayVerdict + watchTick)
		synctest.Wait()
		var first time.Duration = -1
		for _, d := range r.dialTimes() {
			if d > second {
				first = d - second
				break
			}
		}
		if first < 0 || first > todayVerdict-corroborateLossy+watchTick {
			t.Errorf("the second suspect's first handshake %v after its silence, want about %v (the lossy budget)", first, todayVerdict-corroborateLossy)
		}
	})
}

// TestJudgeNowEvidence: evidence found outside the watcher (I/O errors,
// the checkout), the caller never waiting. No route is vetoed by any socket
// heard within a second, without a handshake; the kernel's timeout by a
// sibling heard within a second or a completed handshake (run in the
// background); a refusal needs no witness.
func TestJudgeNowEvidence(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	}
	for _, tc := range []struct {
		name      string
		err       error
		sibling   time.Duration // since the sibling was heard; 0: no sibling
		self      time.Duration // since the suspect was heard
		handshake error         // nil: completes
		want      finding
		wantDials int
	}{
		{"no route, a sibling heard 200ms ago", opErr(syscall.EHOSTUNREACH), 200 * time.Millisecond, time.Minute, nil, findingVetoed, 0},
		{"no route, the socket itself heard 300ms ago", opErr(syscall.ENETUNREACH), 0, 300 * time.Millisecond, nil, findingVetoed, 0},
		{"no route, nothing heard for 5s", opErr(syscall.EHOSTUNREACH), 5 * time.Second, 5 * time.Second, nil, findingConfirmed, 0},
		{"refused: no corroboration", opErr(syscall.ECONNREFUSED), 100 * time.Millisecond, time.Minute, nil, findingConfirmed, 0},
		{"keep-alive timeout, a sibling heard 100ms ago", opErr(syscall.ETIMEDOUT), 100 * time.Millisecond, time.Minute, nil, findingVetoed, 0},
		{"keep-alive timeout, the handshake completes", opErr(syscall.ETIMEDOUT), 5 * time.Second, time.Minute, nil, findingVetoed, corroborateDials},
		{"keep-alive timeout, the handshake is refused", opErr(syscall.ETIMEDOUT), 0, time.Minute,
			os.NewSyscallError("connect", syscall.ECONNREFUSED), findingConfirmed, corroborateDials},
		{"keep-alive timeout, no SYN-ACK", opErr(syscall.ETIMEDOUT), 0, time.Minute, os.ErrDeadlineExceeded, findingConfirmed, corroborateDials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := NewBook(nil)
				suspect := watchedPipe(t, b, rigAddr)
				samples := map[*trackedConn]tcpSample{suspect: {lastAck: tc.self, lastDataRecv: tc.self}}
				if tc.sibling > 0 {
					samples[watchedPipe(t, b, rigAddr)] = tcpSample{lastAck: tc.sibling, lastDataRecv: time.Hour}
				}
				var dials atomic.Int32
				k := corroborator{
					sample: func(o *trackedConn) (tcpSample, bool) { s, ok := samples[o]; return s, ok },
					now:    time.Now,
					dial: func(ctx context.Context, _ netip.AddrPort) error {
						dials.Add(1)
						if errors.Is(tc.handshake, os.ErrDeadlineExceeded) {
							<-ctx.Done()
						}
						return tc.handshake
					},
				}
				var confirmed atomic.Int32
				got := k.judgeNow(suspect, tc.err, false, func() { confirmed.Add(1) })
				if tc.wantDials > 0 {
					if got != findingPending {
						t.Errorf("finding %v with a handshake to make, want pending (the caller never waits)", got)
					}
					time.Sleep(corroborateMin)
					synctest.Wait()
				} else if got != tc.want {
					t.Errorf("finding %v, want %v at once", got, tc.want)
				}
				if int(dials.Load()) != tc.wantDials {
					t.Errorf("%d handshakes, want %d", dials.Load(), tc.wantDials)
				}
				if n := confirmed.Load(); (n == 1) != (tc.want == findingConfirmed) || n > 1 {
					t.Errorf("confirm ran %d times, want the finding %v", n, tc.want)
				}
			})
		})
	}
}

// TestJudgeNowIOErrorDoesNotWait: the kernel's timeout of a socket in I/O
// returns at once; the handshake finishes on its own and confirms then.
func TestJudgeNowIOErrorDoesNotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBook(nil)
		suspect := watchedPipe(t, b, rigAddr)
		k := corroborator{
			sample: func(*trackedConn) (tcpSample, bool) { return tcpSample{lastAck: time.Minute}, true },
			now:    time.Now,
			dial: func(ctx context.Context, _ netip.AddrPort) error {
				<-ctx.Done()
				return ctx.Err()
			},
		}
		var confirmed atomic.Int32
		err := &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
		if f := k.judgeNow(suspect, err, true, func() { confirmed.Add(1) }); f != findingPending {
			t.Fatalf("finding %v, want pending (the handshake runs on)", f)
		}
		time.Sleep(corroborateMin + time.Millisecond)
		synctest.Wait()
		if n := confirmed.Load(); n != 1 {
			t.Errorf("confirmed %d times after the budget, want 1", n)
		}
	})
}

// TestPathHeard: a dial whose every SYN went unanswered is no evidence
// against the server while another socket to the address is heard (J3: a
// recycled connection's dial under loss); refused, or nothing heard, is.
func TestPathHeard(t *testing.T) {
	timeoutTo := func(addr netip.AddrPort) error {
		return fmt.Errorf("connect: %w", &DialError{Host: addr.Addr().String(), Port: strconv.Itoa(int(addr.Port())),
			Attempts: []AddrStats{{Addr: addr.String(), Status: "failed", Err: &attemptTimeoutError{after: 10 * time.Second, err: os.ErrDeadlineExceeded}}}})
	}
	refusedBy := func(addr netip.AddrPort) error {
		return &DialError{Host: addr.Addr().String(), Port: strconv.Itoa(int(addr.Port())),
			Attempts: []AddrStats{{Addr: addr.String(), Status: "failed", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}}
	}
	since := time.Now().Add(-time.Second)

	// A pipe has no TCP_INFO: nothing is heard.
	b := NewBook(nil)
	watchedPipe(t, b, rigAddr)
	if b.PathHeard(timeoutTo(rigAddr), since) {
		t.Error("PathHeard with no socket heard: want true only when one is")
	}

	// A real socket that just exchanged bytes is heard.
	c, srv := testkit.LoopbackPair(t)
	addr := netip.MustParseAddrPort(c.RemoteAddr().String())
	b2 := NewBook(nil)
	b2.Track(addr, c)
	if _, err := srv.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if !b2.PathHeard(timeoutTo(addr), since) {
		t.Error("a timed-out dial while another socket to the address was just heard: want PathHeard")
	}
	if b2.PathHeard(refusedBy(addr), since) {
		t.Error("a refused dial: want no PathHeard (refusal is evidence)")
	}
	if b2.PathHeard(timeoutTo(addr), time.Now().Add(time.Second)) {
		t.Error("heard only before the dial began: want no PathHeard")
	}
	if b2.PathHeard(errors.New("other"), since) || (*Book)(nil).PathHeard(timeoutTo(addr), since) {
		t.Error("PathHeard for a non-dial error or a nil book: want false")
	}
}

// TestCheckoutConfirmedDeathGoesDown (F3): a socket the kernel killed while
// idle, found at checkout, is corroborated there; confirmed, its address is
// evicted as current evidence (the connector goes Down, so database/sql's
// retry fails fast instead of dialling into the dead host); vetoed by a
// completed handshake, nothing is evicted.
func TestCheckoutConfirmedDeathGoesDown(t *testing.T) {
	killed := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	for _, tc := range []struct {
		name      string
		handshake error
		evictions int
		down      bool
	}{
		{"no SYN-ACK: confirmed", os.ErrDeadlineExceeded, 1, true},
		{"handshake completes: vetoed", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				saved := verdicts
				defer func() { verdicts = saved }()
				verdicts = corroborator{
					sample: func(*trackedConn) (tcpSample, bool) {
						return tcpSample{lastAck: time.Minute, lastDataRecv: time.Minute}, true
					},
					now: time.Now,
					dial: func(ctx context.Context, _ netip.AddrPort) error {
						if tc.handshake != nil {
							<-ctx.Done()
						}
						return tc.handshake
					},
				}
				b := NewBook(nil)
				var mu sync.Mutex
				var evictions int
				var down bool
				b.onEvict = func(_ netip.AddrPort, _ error, how eviction) {
					mu.Lock()
					defer mu.Unlock()
					evictions++
					down = how.down
				}
				idle := watchedPipe(t, b, rigAddr)
				idle.judgeIdle(killed)
				time.Sleep(corroborateMin)
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if evictions != tc.evictions || down != tc.down {
					t.Errorf("%d evictions (Down %v), want %d (Down %v)", evictions, down, tc.evictions, tc.down)
				}
			})
		})
	}
}

// TestCorroborationVetoedByAnotherTenant: the suspect's own tenant has no
// other socket, but another tenant of the same view was heard from the
// address throughout: the path is proven, nothing is evicted, no handshake
// is needed. Before, only the suspect's book vouched, so one tenant's lone
// lossy socket could shut every tenant's sockets down (outside review).
func TestCorroborationVetoedByAnotherTenant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newCorroborationRig(t, unacked)
		defer r.stop()
		v := NewView()
		r.b.SetView(v)
		other := NewBook(nil)
		other.SetView(v)
		other.resolved("db", strconv.Itoa(int(rigAddr.Port())), []netip.AddrPort{rigAddr})
		defer other.Close()
		sib := watchedPipe(t, other, rigAddr)
		r.mu.Lock()
		r.samples[sib] = heardAlways
		r.mu.Unlock()
		time.Sleep(todayVerdict + corroborateMin + watchTick)
		synctest.Wait()
		if ev, _, dials := r.counts(); ev != 0 || dials != 0 {
			t.Fatalf("%d evictions, %d handshakes with another tenant's socket heard throughout; want none", ev, dials)
		}
	})
}

package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

// viewTenant is one tenant on a view: a dialer, its book, and what its
// connector was told.
type viewTenant struct {
	d       *Dialer
	b       *Book
	evicted chan bool // onEvict's down, one per eviction
	alive   atomic.Int32
}

func newViewTenant(t *testing.T, v *View) *viewTenant {
	t.Helper()
	vt := &viewTenant{evicted: make(chan bool, 16)}
	vt.b = NewBook(func(_ netip.AddrPort, _ error, down bool) { vt.evicted <- down })
	vt.b.SetView(v)
	vt.b.SetOnAlive(func(netip.AddrPort) { vt.alive.Add(1) })
	vt.d = NewDialer(Settings{ConnectTimeout: 2 * time.Second}, nil)
	vt.d.SetBook(vt.b)
	t.Cleanup(vt.b.Close)
	return vt
}

// silentPulses makes v's pulse attempts wait out their budget (a
// blackhole), or answer once answer is set; it counts them.
type silentPulses struct {
	answer   atomic.Bool
	attempts atomic.Int32
	inFlight atomic.Int32
	maxIn    atomic.Int32
}

func (p *silentPulses) dial(ctx context.Context, _ netip.AddrPort) (bool, error) {
	p.attempts.Add(1)
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		if m := p.maxIn.Load(); n <= m || p.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	if p.answer.Load() {
		return false, nil
	}
	<-ctx.Done()
	return false, ctx.Err()
}

// TestViewFansOutDeadVerdict: one tenant's host-level eviction reaches
// another tenant of the same view at once: its socket to the address is
// shut down (a read in flight fails with errConnEvicted), its connector is
// told Down, and its dials fail at once naming the cause. A tenant of
// another view learns nothing. Before the view, the second tenant kept its
// socket and dialled.
func TestViewFansOutDeadVerdict(t *testing.T) {
	dialTestLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: reads block
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	v := NewView()
	p := &silentPulses{}
	v.pulseDial = p.dial
	other := NewView()
	a, b := newViewTenant(t, v), newViewTenant(t, v)
	c := newViewTenant(t, other)
	var conns []net.Conn
	for _, vt := range []*viewTenant{a, b, c} {
		nc, err := vt.d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
		defer nc.Close()
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := conns[1].Read(make([]byte, 1))
		readErr <- err
	}()

	key := trackedOf(conns[0]).addr
	cause := &peerSilentError{silent: 10 * time.Second, window: 10 * time.Second}
	start := time.Now()
	if !a.b.evict(key, trackedOf(conns[0]).gen, cause, evictDead) {
		t.Fatal("evict returned false")
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, errConnEvicted) {
			t.Errorf("read in flight on the other tenant: %v, want errConnEvicted", err)
		}
		if took := time.Since(start); took > 50*time.Millisecond {
			t.Errorf("the other tenant's read failed %v after the verdict, want ≤ 50ms", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other tenant's read in flight did not fail")
	}
	if down := <-b.evicted; !down {
		t.Error("the other tenant's connector was not told Down")
	}
	_, err = b.d.DialContext(NoSkip(context.Background()), "tcp", addr)
	var ue *unreachableError
	if !errors.As(err, &ue) || !errors.Is(err, errPeerSilent) {
		t.Errorf("the other tenant's dial: %v, want the view's verdict", err)
	}
	if len(c.evicted) != 0 || trackedOf(conns[2]).evicted.Load() {
		t.Error("a tenant of another view was evicted")
	}
	if got := v.Verdict(key); got != VerdictSilent {
		t.Errorf("verdict %v, want %v", got, VerdictSilent)
	}

	// The pulse answers: the verdict lifts, both tenants are told, dials work.
	p.answer.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for v.Verdict(key) != VerdictAlive && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := v.Verdict(key); got != VerdictAlive {
		t.Fatalf("verdict %v after the pulse answered, want alive", got)
	}
	for time.Now().Before(deadline) && (a.alive.Load() == 0 || b.alive.Load() == 0) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.alive.Load() != 1 || b.alive.Load() != 1 || c.alive.Load() != 0 {
		t.Errorf("told alive: %d, %d, %d; want 1, 1, 0", a.alive.Load(), b.alive.Load(), c.alive.Load())
	}
	nc, err := b.d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial after the pulse: %v", err)
	}
	nc.Close()
	for _, vt := range []*viewTenant{a, b, c} {
		vt.b.Close()
	}
	v.Wait()
	if n := v.Stats().Servers; n != 0 {
		t.Errorf("%d servers left in the view once every book closed", n)
	}
}

// TestPulseCadence: however many tenants dial a dead address, the pulse
// makes about one attempt per second, each cut short at 1.5 s (at most 2 in
// flight), every 8th with the full connect_timeout; it stops once no
// tenant uses the address. On the bubble's fake clock.
func TestPulseCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := NewView()
		p := &silentPulses{}
		v.pulseDial = p.dial
		var books []*Book
		key := netip.MustParseAddrPort("127.0.0.1:5432")
		var srv *server
		for range 100 {
			b := NewBook(nil)
			b.SetView(v)
			b.connectTimeout = 10 * time.Second
			b.resolved("127.0.0.1", "5432", []netip.AddrPort{key})
			books = append(books, b)
			srv = b.addrs[key].srv
		}
		v.dead(srv, errPeerSilent, books[0])
		// 100 tenants dialling every 10 ms for 20 s.
		for range 2000 {
			for _, b := range books[:10] {
				b.skipDead("tcp", []netip.AddrPort{key}, time.Now())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := p.attempts.Load(); n < 17 || n > 21 {
			t.Errorf("%d pulse attempts in 20 s, want about 20", n)
		}
		if m := p.maxIn.Load(); m > 3 {
			t.Errorf("%d pulse attempts in flight at once, want ≤ 3 (2 cut short + 1 full)", m)
		}
		for _, b := range books {
			b.Close()
		}
		v.Wait()
		if n := v.Stats().Servers; n != 0 {
			t.Errorf("%d servers left once every book closed", n)
		}
	})
}

// TestPulseRefusedOnDemand: a server that resets connects is pulsed when a
// dial asks, at most every 50 ms.
func TestPulseRefusedOnDemand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := NewView()
		var attempts atomic.Int32
		v.pulseDial = func(context.Context, netip.AddrPort) (bool, error) {
			attempts.Add(1)
			return true, &net.OpError{Op: "dial", Err: errors.New("connection refused")}
		}
		b := NewBook(nil)
		b.SetView(v)
		key := netip.MustParseAddrPort("127.0.0.1:5432")
		b.resolved("127.0.0.1", "5432", []netip.AddrPort{key})
		v.dead(b.addrs[key].srv, &net.OpError{Op: "read", Err: errors.New("x")}, nil)
		time.Sleep(pulseJitter + time.Millisecond)
		if got := v.Verdict(key); got != VerdictRefused {
			t.Fatalf("verdict %v after a refused pulse, want refused", got)
		}
		before := attempts.Load()
		for range 100 { // asked every 5 ms for 0.5 s
			b.skipDead("tcp", []netip.AddrPort{key}, time.Now())
			time.Sleep(5 * time.Millisecond)
		}
		if n := attempts.Load() - before; n < 8 || n > 11 {
			t.Errorf("%d pulse attempts in 0.5 s asked every 5 ms, want about 10 (50 ms floor)", n)
		}
		b.Close()
		v.Wait()
	})
}

// TestViewTableBounded: addresses come and go (DNS churn, tenants closing):
// the view keeps only the servers some book uses.
func TestViewTableBounded(t *testing.T) {
	v := NewView()
	b1, b2 := NewBook(nil), NewBook(nil)
	b1.SetView(v)
	b2.SetView(v)
	for i := range 1000 {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5432)
		b1.resolved("db.test", "5432", []netip.AddrPort{a})
		b2.resolved("db.test", "5432", []netip.AddrPort{a})
	}
	if n := v.Stats().Servers; n != 1 {
		t.Errorf("%d servers after 1,000 addresses came and went, want 1", n)
	}
	b1.Close()
	if n := v.Stats().Servers; n != 1 {
		t.Errorf("%d servers with one book left, want 1", n)
	}
	b2.Close()
	if n := v.Stats().Servers; n != 0 {
		t.Errorf("%d servers once every book closed, want 0", n)
	}
	b2.resolved("db.test", "5432", []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:5432")})
	if n := v.Stats().Servers; n != 0 {
		t.Errorf("a closed book subscribed again (%d servers)", n)
	}
}

// TestDialPulse: the pulse's proof is a byte of PostgreSQL answering its
// SSLRequest; a completed handshake alone (a frozen server) is not.
func TestDialPulse(t *testing.T) {
	dialTestLeakCheck(t)
	serve := func(answer []byte) (netip.AddrPort, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			var req [8]byte
			if _, err := c.Read(req[:]); err != nil || req != sslRequest {
				t.Errorf("pulse sent %v (%v), want an SSLRequest", req, err)
			}
			if answer != nil {
				c.Write(answer)
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			c.Read(req[:]) // until the pulse closes
		})
		return netip.MustParseAddrPort(ln.Addr().String()), func() { ln.Close(); wg.Wait() }
	}
	for _, b := range []byte("SNE") {
		addr, done := serve([]byte{b})
		if _, err := dialPulse(context.Background(), addr); err != nil {
			t.Errorf("server answering %q: %v", b, err)
		}
		done()
	}
	addr, done := serve(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := dialPulse(ctx, addr); err == nil {
		t.Error("a handshake with no byte counted as a pulse")
	}
	cancel()
	done()
	refusedAddr := netip.MustParseAddrPort("127.0.0.1:" + testkit.RefusedPort(t))
	if refused, err := dialPulse(context.Background(), refusedAddr); !refused || err == nil {
		t.Errorf("refused port: refused %v, err %v", refused, err)
	}
}

// TestViewBubbleSafe: a view made inside a synctest bubble has a dead-peer
// watcher of its own (no goroutine outside the bubble looks at its
// sockets), and a verdict reported into the shared view from inside a
// bubble starts no goroutine there (the fan-out runs inline; the pulse is
// left to the next dial from outside). Concurrently, a tenant outside the
// bubble on the shared view keeps working: it is told the verdict, and its
// dial starts the pulse outside.
func TestViewBubbleSafe(t *testing.T) {
	dialTestLeakCheck(t)
	v := SharedView()
	saved := v.pulseDial
	var pulses atomic.Int32
	v.pulseDial = func(ctx context.Context, _ netip.AddrPort) (bool, error) {
		pulses.Add(1)
		return false, nil // answers at once
	}
	defer func() { v.pulseDial = saved }()
	key := netip.MustParseAddrPort("127.0.0.1:1") // no test dials it
	outside := NewBook(nil)
	outside.SetView(v)
	told := make(chan bool, 4)
	outside.onEvict = func(_ netip.AddrPort, _ error, how eviction) { told <- how.down }
	outside.resolved("127.0.0.1", "1", []netip.AddrPort{key})
	defer outside.Close()
	srv := outside.addrs[key].srv

	synctest.Test(t, func(t *testing.T) {
		if own := NewView(); own.watcher == deadPeers {
			t.Error("a view made in a bubble uses the process's watcher")
		}
		v.dead(srv, errPeerSilent, nil) // e.g. the process's watcher running in the bubble
		synctest.Wait()
	})
	select {
	case down := <-told:
		if !down {
			t.Error("the outside tenant was told a non-host-level eviction")
		}
	default:
		t.Error("the outside tenant was not told the verdict")
	}
	if pulses.Load() != 0 {
		t.Error("a pulse ran from inside the bubble")
	}
	// A dial from outside starts the pulse, which lifts the verdict.
	outside.skipDead("tcp", []netip.AddrPort{key}, time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for v.Verdict(key) != VerdictAlive && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if v.Verdict(key) != VerdictAlive || pulses.Load() == 0 {
		t.Errorf("verdict %v after %d pulses started from outside", v.Verdict(key), pulses.Load())
	}
	outside.Close()
	v.Wait()
}

// TestViewAbortsConnectsInFlight: a dial still in connect() to an address
// when a dead verdict about it arrives fails at once with the verdict, as
// a dial begun after it does, instead of waiting out its connect_timeout
// in SYN-SENT (a pgfast-pq worker reached the new primary one
// tcp_user_timeout after the connector was Ready in failover-multihost).
// Its own tenant's eviction aborts it too.
func TestViewAbortsConnectsInFlight(t *testing.T) {
	dialTestLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, whose := range []string{"another tenant's", "its own tenant's"} {
		t.Run(whose, func(t *testing.T) {
			v := NewView()
			v.pulseDial = (&silentPulses{}).dial
			a, b := newViewTenant(t, v), newViewTenant(t, v)
			nc, err := a.d.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			evictor := a.b
			tc := trackedOf(nc)
			if whose == "its own tenant's" {
				nb, err := b.d.DialContext(context.Background(), "tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer nb.Close()
				evictor, tc = b.b, trackedOf(nb)
			}
			hook := newDialTestHook(b.d, "127.0.0.1") // b's next connect hangs, as in SYN-SENT
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			dialed := make(chan error, 1)
			go func() {
				nc, err := b.d.DialContext(ctx, "tcp", addr)
				if nc != nil {
					nc.Close()
				}
				dialed <- err
			}()
			for deadline := time.Now().Add(5 * time.Second); hook.running.Load() == 0; {
				if time.Now().After(deadline) {
					t.Fatal("b's dial never reached connect()")
				}
				time.Sleep(time.Millisecond)
			}
			cause := &peerSilentError{silent: 10 * time.Second, window: 10 * time.Second}
			start := time.Now()
			if !evictor.evict(tc.addr, tc.gen, cause, evictDead) {
				t.Fatal("evict returned false")
			}
			select {
			case err := <-dialed:
				var ue *unreachableError
				if !errors.As(err, &ue) || !ue.aborted || !errors.Is(err, errPeerSilent) {
					t.Errorf("the dial in connect(): %v, want the verdict (aborted)", err)
				}
				if took := time.Since(start); took > 100*time.Millisecond {
					t.Errorf("the dial in connect() failed %v after the verdict, want at once", took)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the dial in connect() went on after the verdict")
			}
			hook.assertSettled(t)
			// A dial that passed skipDead before the verdict and reaches
			// connect() after it (it waited for admission) fails there.
			var ue *unreachableError
			if err := b.b.connectStarted(tc.addr, &connecting{abort: func(error) {}}); !errors.As(err, &ue) || !ue.aborted {
				t.Errorf("a connect() begun after the verdict: %v, want the verdict (aborted)", err)
			}
			a.b.Close()
			b.b.Close()
			v.Wait()
		})
	}
}

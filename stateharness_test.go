package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// gateBackend is a backend whose every connection attempt waits until the
// test ends it (or its context does): the test decides which attempt
// finishes when, and how, so overlapping attempts can report in any order.
type gateBackend struct {
	mu       sync.Mutex
	attempts []*gateAttempt
	// rnd, when set, is the connector loop's source of jitter, so a run
	// is reproducible from its seed. Only the loop's goroutine uses it.
	rnd *rand.Rand
}

// gateAttempt is one call of Connect.
type gateAttempt struct {
	id    int
	ctx   context.Context
	end   chan error // nil: the attempt succeeds
	ended atomic.Bool
	conn  *fakeConn
}

func (g *gateBackend) Connect(ctx context.Context) (driver.Conn, error) {
	a := &gateAttempt{ctx: ctx, end: make(chan error, 1)}
	g.mu.Lock()
	a.id = len(g.attempts)
	g.attempts = append(g.attempts, a)
	g.mu.Unlock()
	select {
	case err := <-a.end:
		if err != nil {
			return nil, err
		}
		a.conn = &fakeConn{}
		return a.conn, nil
	case <-ctx.Done():
		a.ended.Store(true)
		return nil, ctx.Err()
	}
}

func (g *gateBackend) Driver() driver.Driver { return pgxDriver }

// jitter makes the loop's random delays come from the test's seed.
func (g *gateBackend) jitter(max time.Duration) time.Duration {
	if g.rnd == nil {
		return rand.N(max + 1)
	}
	return time.Duration(g.rnd.Int64N(int64(max) + 1))
}

// all returns every attempt so far, in the order they began.
func (g *gateBackend) all() []*gateAttempt {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*gateAttempt(nil), g.attempts...)
}

// pending returns the attempts still waiting, oldest first.
func (g *gateBackend) pending() []*gateAttempt {
	var p []*gateAttempt
	for _, a := range g.all() {
		if !a.ended.Load() {
			p = append(p, a)
		}
	}
	return p
}

// finish ends a with err (nil: success) and lets the bubble settle.
func (a *gateAttempt) finish(err error) {
	a.ended.Store(true)
	a.end <- err
	synctest.Wait()
}

// newGateConnector makes a connector on g inside the caller's bubble.
func newGateConnector(t *testing.T, g *gateBackend, dsn string, o options) *Connector {
	t.Helper()
	o.testBackend = func(core) driver.Connector { return g }
	c, err := newConnector(dsn, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// gateDSN keeps attempts from timing out on their own: the test ends them.
const gateDSN = "host=127.0.0.1 port=1 user=u dbname=d sslmode=disable connect_timeout=3600"

// stateCalls records the state hook's calls.
type stateCalls struct {
	mu    sync.Mutex
	calls []hookCall
	hold  chan struct{} // when set, the next call waits until it is closed
}

type hookCall struct {
	st  State
	err error
}

func (s *stateCalls) hook(st State, err error) {
	s.mu.Lock()
	s.calls = append(s.calls, hookCall{st, err})
	hold := s.hold
	s.hold = nil
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
}

func (s *stateCalls) states() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []State
	for _, c := range s.calls {
		out = append(out, c.st)
	}
	return out
}

// trackedPipe registers a connection to addr in c's address book, as the
// dialer does for a socket, and returns it with its server's end.
func trackedPipe(c *Connector, addr netip.AddrPort) (net.Conn, net.Conn) {
	client, srv := net.Pipe()
	return c.book.Track(addr, client), srv
}

// answer makes tc read a reply from its server.
func answer(t *testing.T, tc net.Conn, srv net.Conn) {
	t.Helper()
	go func() { _, _ = srv.Write([]byte("Z")) }()
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		t.Fatalf("read from the server: %v", err)
	}
}

// netTimeout is a dial that timed out (a blackholed address).
type netTimeout struct{ id int }

func (e netTimeout) Error() string   { return "dial tcp 127.0.0.1:1: i/o timeout" }
func (e netTimeout) Timeout() bool   { return true }
func (e netTimeout) Temporary() bool { return false }

var _ net.Error = netTimeout{}

// TestLateProbeFailureKeepsReady (issue 17, 4): two background attempts
// overlap; the newer one succeeds, then the older one, stuck on a
// blackholed address, reports its timeout. The connector stays Ready: the
// failure is older evidence than the success.
func TestLateProbeFailureKeepsReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateBackend{}
		h := &stateCalls{}
		c := newGateConnector(t, g, gateDSN, options{stateHook: h.hook})
		defer c.Close()
		synctest.Wait()
		time.Sleep(1500 * time.Millisecond) // the first attempt is stuck: a second starts beside it
		synctest.Wait()
		p := g.pending()
		if len(p) != 2 {
			t.Fatalf("%d attempts in flight, want 2", len(p))
		}
		p[1].finish(nil)
		if st := c.State(); st != StateReady {
			t.Fatalf("state %s after the newer attempt succeeded", st)
		}
		p[0].finish(netTimeout{})
		if st := c.State(); st != StateReady {
			t.Errorf("state %s after the older attempt's late timeout, want ready", st)
		}
		if _, err := c.Connect(context.Background()); err != nil {
			t.Errorf("Connect with a warm connection idle: %v", err)
		}
		if got := h.states(); len(got) != 1 || got[0] != StateReady {
			t.Errorf("state hook calls %v, want [ready]", got)
		}
	})
}

// TestLateCallerDialFailureKeepsReady (issue 17, 4, a caller's dial): a
// caller's dial that began before another one succeeded and fails after it
// does not turn Ready into Down.
func TestLateCallerDialFailureKeepsReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateBackend{}
		h := &stateCalls{}
		c := newGateConnector(t, g, gateDSN, options{stateHook: h.hook})
		defer c.Close()
		synctest.Wait()
		g.pending()[0].finish(nil) // Ready, one warm connection
		if _, err := c.Connect(context.Background()); err != nil {
			t.Fatal(err) // the warm one
		}
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := c.Connect(context.Background())
				errs <- err
			}()
			synctest.Wait()
		}
		p := g.pending()
		if len(p) != 2 {
			t.Fatalf("%d caller dials in flight, want 2", len(p))
		}
		p[1].finish(nil)
		p[0].finish(netTimeout{})
		<-errs
		<-errs
		if st := c.State(); st != StateReady {
			t.Errorf("state %s after an older dial's late failure, want ready", st)
		}
		if got := h.states(); len(got) != 1 {
			t.Errorf("state hook calls %v, want [ready]", got)
		}
	})
}

// TestIdleCheckoutDoesNotEndDown (issue 17, 5): while every dial fails, a
// connection that passes its checkout without having read anything from
// its server since Down began (an idle socket to a silent host has nothing
// to read) does not make the connector Ready; one that read its server's
// reply to a request made since does.
func TestIdleCheckoutDoesNotEndDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateBackend{}
		c := newGateConnector(t, g, gateDSN, options{})
		defer c.Close()
		synctest.Wait()
		g.pending()[0].finish(nil)
		addr := netip.MustParseAddrPort("127.0.0.1:1")
		tc, srv := trackedPipe(c, addr)
		defer srv.Close()
		answer(t, tc, srv) // in use while Ready
		c.onEvict(netip.MustParseAddrPort("127.0.0.2:1"), errors.New("connection timed out"), true)
		synctest.Wait()
		if st := c.State(); st != StateDown {
			t.Fatalf("state %s after an eviction", st)
		}
		for i := 0; i < 3; i++ {
			for _, a := range g.pending() {
				a.finish(netTimeout{})
			}
			if err := c.core.checkout(context.Background(), tc); err != nil {
				t.Fatalf("checkout: %v", err)
			}
			synctest.Wait()
			if st := c.State(); st != StateDown {
				t.Fatalf("state %s after checkout %d of an idle connection while every dial fails, want down", st, i)
			}
			time.Sleep(time.Second)
			synctest.Wait()
		}
		// The server answers a query sent after Down began: that proves it.
		answer(t, tc, srv)
		if err := c.core.checkout(context.Background(), tc); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if st := c.State(); st != StateReady {
			t.Errorf("state %s after a connection in use read its server's answer, want ready", st)
		}
	})
}

// TestMergedVerificationsKeepFresh (issue 17, 6): after an error waiting
// cannot fix, a fresh login's verification followed, before the loop looks,
// by a checkout's is one verification that is still fresh: Ready at once,
// not at the next retry 15–30 s later.
func TestMergedVerificationsKeepFresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateBackend{}
		h := &stateCalls{}
		c := newGateConnector(t, g, gateDSN, options{stateHook: h.hook})
		defer c.Close()
		synctest.Wait()
		hold := make(chan struct{})
		h.mu.Lock()
		h.hold = hold // the loop waits in the hook for the Down below
		h.mu.Unlock()
		g.pending()[0].finish(sqlStateError("28P01"))
		if perm, _ := c.ready.failedPermanently(); !perm {
			t.Fatalf("state %s, not down for good after 28P01", c.State())
		}
		// The loop is busy: the two verifications queue up together.
		c.post(event{kind: evVerified, fresh: true}) // a fresh login (role verification)
		c.post(event{kind: evVerified})              // a checkout's answered I/O
		close(hold)
		synctest.Wait()
		if st := c.State(); st != StateReady {
			t.Errorf("state %s after a fresh login, want ready", st)
		}
	})
}

// TestWarmDialFailureGoesDown (found by TestStateFollowsReality): a warm
// connection's dial is a fresh dial like a caller's; refused or timed out,
// it says the server went away, as the README's evidence table has it, and
// the connector goes Down instead of staying Ready with nothing behind it.
func TestWarmDialFailureGoesDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateBackend{}
		c := newGateConnector(t, g, gateDSN+" pgfast_min_conns=2", options{})
		defer c.Close()
		synctest.Wait()
		g.pending()[0].finish(nil)
		p := g.pending()
		if c.State() != StateReady || len(p) != 1 || !netx.IsNoSkip(p[0].ctx) {
			t.Fatalf("state %s, %d attempts in flight: no warm dial", c.State(), len(p))
		}
		p[0].finish(netTimeout{})
		if st := c.State(); st != StateDown {
			t.Errorf("state %s after the warm dial timed out, want down", st)
		}
	})
}

// TestOnlyAFreshLoginEndsDownAfterPermanentError (found by
// TestStateFollowsReality): after an error waiting cannot fix (28P01), a
// later transient failure (an eviction) does not make the connections
// opened before it proof enough: only a fresh login ends Down.
func TestOnlyAFreshLoginEndsDownAfterPermanentError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateBackend{}
		c := newGateConnector(t, g, gateDSN, options{})
		defer c.Close()
		synctest.Wait()
		g.pending()[0].finish(nil)
		tc, srv := trackedPipe(c, netip.MustParseAddrPort("127.0.0.1:1"))
		defer srv.Close()
		c.post(event{kind: evDialFailed, err: sqlStateError("28P01")})
		synctest.Wait()
		if perm, _ := c.ready.failedPermanently(); !perm {
			t.Fatalf("state %s, not down for good after 28P01", c.State())
		}
		c.onEvict(netip.MustParseAddrPort("127.0.0.2:1"), errors.New("connection timed out"), true)
		synctest.Wait()
		for i := 0; i < 2; i++ {
			if err := c.core.checkout(context.Background(), tc); err != nil {
				t.Fatal(err)
			}
			answer(t, tc, srv)
		}
		if err := c.core.checkout(context.Background(), tc); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if st := c.State(); st != StateDown {
			t.Errorf("state %s after a session opened before the password change answered, want down", st)
		}
	})
}

// TestProbeResultAndEvictionKeepTheirOrder (found by
// TestStateFollowsReality): while the state hook is slow, a probe's success
// and then an eviction are applied in that order: the connector ends Down,
// as the newest news says, not Ready.
func TestProbeResultAndEvictionKeepTheirOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateBackend{}
		h := &stateCalls{}
		c := newGateConnector(t, g, gateDSN, options{stateHook: h.hook})
		defer c.Close()
		synctest.Wait()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		p := g.pending()
		if len(p) != 2 {
			t.Fatalf("%d attempts in flight, want 2", len(p))
		}
		hold := make(chan struct{})
		h.mu.Lock()
		h.hold = hold
		h.mu.Unlock()
		p[0].finish(netTimeout{}) // Down: the loop waits in the hook
		p[1].finish(nil)
		c.onEvict(netip.MustParseAddrPort("127.0.0.2:1"), errors.New("connection timed out"), true)
		close(hold)
		synctest.Wait()
		if st := c.State(); st != StateDown {
			t.Errorf("state %s, want down: the eviction came after the success (hook calls %v)", st, h.states())
		}
		if got := h.states(); len(got) != 3 {
			t.Errorf("state hook calls %v, want [down ready down]", got)
		}
	})
}

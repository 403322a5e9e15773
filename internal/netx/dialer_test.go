package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

func TestDialContextCancelStopsEveryAttempt(t *testing.T) {
	dialTestLeakCheck(t)
	r := &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1", "::2")}
	d := NewDialer(Settings{AttemptDelay: 10 * time.Millisecond}, r)
	hook := newDialTestHook(d, "::1", "127.0.0.1", "::2")

	ctx, cancel := context.WithCancel(context.Background())
	var canceledAt time.Time
	timer := time.AfterFunc(50*time.Millisecond, func() {
		canceledAt = time.Now()
		cancel()
	})
	defer timer.Stop()
	_, err := d.DialContext(ctx, "tcp", "db.example:5432")
	returned := time.Now()
	hook.assertSettled(t)

	if lag := returned.Sub(canceledAt); canceledAt.IsZero() || lag > 50*time.Millisecond {
		t.Errorf("returned %v after cancellation, want < 50ms", lag)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "db.example:5432") {
		t.Errorf("err = %q, want it to name the host", err)
	}
	if n := len(hook.calls()); n != 3 {
		t.Errorf("%d attempts started, want 3", n)
	}
	if len(hook.ended) != 3 {
		t.Errorf("%d attempts saw cancellation, want 3", len(hook.ended))
	}
}

func TestDialContextCancelCause(t *testing.T) {
	d := NewDialer(Settings{}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")})
	newDialTestHook(d, "127.0.0.1")
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	_, err := d.DialContext(ctx, "tcp", "db.example:5432")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Errorf("err = %v, want context.Canceled and the cause", err)
	}
}

func TestDialContextDeadline(t *testing.T) {
	dialTestLeakCheck(t)
	d := NewDialer(Settings{AttemptDelay: 10 * time.Millisecond}, &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	hook := newDialTestHook(d, "::1", "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	_, err := d.DialContext(ctx, "tcp", "db.example:5432")
	hook.assertSettled(t)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestDialPerAddressDeadline(t *testing.T) {
	dialTestLeakCheck(t)
	const timeout = 100 * time.Millisecond
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	d := NewDialer(Settings{ConnectTimeout: timeout, AttemptDelay: time.Hour},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	hook := newDialTestHook(d, "::1")

	start := time.Now()
	conn, err := d.DialContext(context.Background(), "tcp", "db.example:"+port)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if elapsed < timeout || elapsed > timeout+300*time.Millisecond {
		t.Errorf("connected after %v, want just over the %v connect timeout of the first address", elapsed, timeout)
	}
	if len(hook.ended) != 1 || !errors.Is(hook.ended[0], context.DeadlineExceeded) {
		t.Errorf("first attempt ended with %v, want its deadline", hook.ended)
	}
}

func TestDialEachAddressHasItsOwnDeadline(t *testing.T) {
	dialTestLeakCheck(t)
	const timeout, delay = 150 * time.Millisecond, 50 * time.Millisecond
	d := NewDialer(Settings{ConnectTimeout: timeout, AttemptDelay: delay},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	hook := newDialTestHook(d, "::1", "127.0.0.1")

	start := time.Now()
	_, err := d.DialContext(context.Background(), "tcp", "db.example:5432")
	elapsed := time.Since(start)
	hook.assertSettled(t)

	// The second attempt starts delay after the first and times out
	// timeout after its own start.
	if min := delay + timeout; elapsed < min || elapsed > min+300*time.Millisecond {
		t.Errorf("failed after %v, want about %v", elapsed, min)
	}
	for addr, left := range hook.deadline {
		if left > timeout || left < timeout-50*time.Millisecond {
			t.Errorf("%s started with %v to its deadline, want %v", addr, left, timeout)
		}
	}
	var de *DialError
	if !errors.As(err, &de) || len(de.Attempts) != 2 {
		t.Fatalf("err = %v, want a DialError with 2 attempts", err)
	}
	for _, target := range []error{context.DeadlineExceeded, os.ErrDeadlineExceeded} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(err, %v) = false", target)
		}
	}
	var ne net.Error
	if !errors.As(de.Attempts[0].Err, &ne) || !ne.Timeout() {
		t.Errorf("attempt error %v is not a net.Error timeout", de.Attempts[0].Err)
	}
	want := "dial db.example:5432: [::1]:5432: i/o timeout after 150ms; 127.0.0.1:5432: i/o timeout after 150ms"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
}

func TestDialNoGoroutineLeak(t *testing.T) {
	dialTestLeakCheck(t)
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	refused := testkit.RefusedPort(t)
	d := NewDialer(Settings{ConnectTimeout: 20 * time.Millisecond, AttemptDelay: 5 * time.Millisecond},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1", "::2", "127.0.0.2")})
	hook := newDialTestHook(d, "::1", "::2", "127.0.0.2")
	for range 10 {
		if c, err := d.DialContext(context.Background(), "tcp", "db.example:"+port); err == nil {
			c.Close()
		} else {
			t.Fatal(err)
		}
		d.DialContext(context.Background(), "tcp", "db.example:"+refused)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Millisecond)
		d.DialContext(ctx, "tcp", "db.example:"+refused)
		cancel()
	}
	hook.assertSettled(t)
}

func BenchmarkDialLoopback(b *testing.B) {
	port := testkit.Listener(b, "tcp", "127.0.0.1:0")
	addr := "127.0.0.1:" + port
	run := func(b *testing.B, dial func(ctx context.Context, network, address string) (net.Conn, error)) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			c, err := dial(ctx, "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	}
	b.Run("pgfast", func(b *testing.B) {
		d := NewDialer(Settings{Keepalives: true, KeepalivesIdle: 10 * time.Second,
			KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3, TCPUserTimeout: 25 * time.Second}, nil)
		run(b, d.DialContext)
	})
	b.Run("pgfast-resolved", func(b *testing.B) {
		d := NewDialer(Settings{Keepalives: true}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")})
		run(b, func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, "db.example:"+port)
		})
	})
	b.Run("net.Dialer", func(b *testing.B) {
		d := &net.Dialer{}
		run(b, d.DialContext)
	})
}

func TestDialFallsBackFromHangingAddress(t *testing.T) {
	dialTestLeakCheck(t)
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	d := NewDialer(Settings{ConnectTimeout: 10 * time.Second}, &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	hook := newDialTestHook(d, "::1")

	start := time.Now()
	conn, err := d.DialContext(context.Background(), "tcp", "db.example:"+port)
	elapsed := time.Since(start)
	hook.assertSettled(t)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != "127.0.0.1:"+port {
		t.Errorf("connected to %s, want 127.0.0.1:%s", got, port)
	}
	if elapsed < defaultAttemptDelay || elapsed > 750*time.Millisecond {
		t.Errorf("connected after %v, want just over the %v attempt delay", elapsed, defaultAttemptDelay)
	}
	if want := []string{"[::1]:" + port, "127.0.0.1:" + port}; !slices.Equal(hook.calls(), want) {
		t.Errorf("attempt order = %v, want %v", hook.calls(), want)
	}
	if len(hook.ended) != 1 || !errors.Is(hook.ended[0], context.Canceled) {
		t.Errorf("hanging attempt ended with %v, want it cancelled", hook.ended)
	}
}

func TestDialFallsBackAtOnceWhenAddressRefuses(t *testing.T) {
	dialTestNeedIPv6(t)
	dialTestLeakCheck(t)
	port := testkit.Listener(t, "tcp", "127.0.0.1:0") // nothing on [::1]:port
	d := NewDialer(Settings{AttemptDelay: 10 * time.Second}, &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})

	start := time.Now()
	conn, err := d.DialContext(context.Background(), "tcp", "db.example:"+port)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != "127.0.0.1:"+port {
		t.Errorf("connected to %s", got)
	}
	if elapsed > 500*time.Millisecond {
		t.Errorf("took %v: a refused attempt must start the next one at once", elapsed)
	}
}

func TestDialAllRefused(t *testing.T) {
	dialTestNeedIPv6(t)
	dialTestLeakCheck(t)
	port := testkit.RefusedPort(t)
	d := NewDialer(Settings{}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1", "::1")})

	_, err := d.DialContext(context.Background(), "tcp", "db.example:"+port)
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v (%T), want *DialError", err, err)
	}
	if de.Host != "db.example" || de.Port != port {
		t.Errorf("Host, Port = %q, %q", de.Host, de.Port)
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:" + port),
		netip.MustParseAddrPort("[::1]:" + port),
	}
	if len(de.Attempts) != len(want) {
		t.Fatalf("Attempts = %v", de.Attempts)
	}
	for i, a := range de.Attempts {
		if a.Addr != want[i].String() || !errors.Is(a.Err, syscall.ECONNREFUSED) {
			t.Errorf("Attempts[%d] = %v, %v; want %v refused", i, a.Addr, a.Err, want[i])
		}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Error("errors.Is(err, ECONNREFUSED) = false")
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Error("errors.As(err, *net.OpError) = false")
	}
	wantMsg := "dial db.example:" + port + ": 127.0.0.1:" + port + ": connection refused; [::1]:" + port + ": connection refused"
	if err.Error() != wantMsg {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), wantMsg)
	}
}

// dialTestConn is a net.Conn that records whether it was closed.
type dialTestConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *dialTestConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func TestDialClosesLoserThatConnects(t *testing.T) {
	dialTestLeakCheck(t)
	d := NewDialer(Settings{AttemptDelay: 20 * time.Millisecond},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	var loser, winner *dialTestConn
	var running atomic.Int32
	d.dialAddr = func(ctx context.Context, _, addr string) (net.Conn, error) {
		running.Add(1)
		defer running.Add(-1)
		a, b := net.Pipe()
		b.Close()
		c := &dialTestConn{Conn: a}
		if strings.HasPrefix(addr, "[::1]") {
			loser = c
			<-ctx.Done() // connects anyway, ignoring the cancellation
		} else {
			winner = c
		}
		return c, nil
	}
	conn, err := d.DialContext(context.Background(), "tcp", "db.example:5432")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if running.Load() != 0 {
		t.Error("an attempt was still running when DialContext returned")
	}
	if conn != winner || winner.closed.Load() {
		t.Error("DialContext did not return the open winning connection")
	}
	if loser == nil || !loser.closed.Load() {
		t.Error("the losing connection was not closed")
	}
}

// TestDialSlowAddressTakesSecondPlace: an address whose attempt lost a race
// after waiting longer than the attempt delay (::1 blackholed) is tried
// second next time, so the next connection does not pay the attempt delay
// again (a pgxpool's first connection after the connector's probe did: 0.51 s
// instead of 0.26 s with localhost's ::1 blackholed). Both are still tried.
func TestDialSlowAddressTakesSecondPlace(t *testing.T) {
	dialTestNeedIPv6(t)
	p := testkit.Listener(t, "tcp", "127.0.0.1:0")
	testkit.Listener(t, "tcp6", net.JoinHostPort("::1", p))
	r := &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")}
	d := NewDialer(Settings{ConnectTimeout: 5 * time.Second, AttemptDelay: 30 * time.Millisecond}, r)
	d.book = NewBook(nil)
	hook := newDialTestHook(d, "::1")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 2 {
		nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort("localhost", p))
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		nc.Close()
	}
	hook.assertSettled(t)
	want := []string{"[::1]:" + p, "127.0.0.1:" + p, "127.0.0.1:" + p}
	if got := hook.calls(); !slices.Equal(got, want) {
		t.Errorf("attempts %v, want %v (::1 second after it lost a race)", got, want)
	}

	// The race still tries it: with IPv4 refusing, ::1 is dialled.
	hook.hang = map[string]bool{"127.0.0.1": true}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort("localhost", p))
	if err != nil {
		t.Fatalf("dial with 127.0.0.1 hanging: %v", err)
	}
	if got := trackedOf(nc).addr.Addr().String(); got != "::1" {
		t.Errorf("landed on %s, want ::1", got)
	}
	nc.Close()
}

// skipTestDialer is a dialer with an address book on a private view (whose
// pulse the test controls) whose only address, 127.0.0.1:port, has one
// tracked socket, so that it can be evicted.
func skipTestDialer(t *testing.T) (*Dialer, netip.AddrPort, net.Conn) {
	t.Helper()
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	d := NewDialer(Settings{ConnectTimeout: 2 * time.Second}, nil)
	v := NewView()
	v.pulseDial = func(ctx context.Context, _ netip.AddrPort) (bool, error) {
		<-ctx.Done() // silent until the test says otherwise
		return false, ctx.Err()
	}
	b := NewBook(nil)
	b.SetView(v)
	d.SetBook(b)
	t.Cleanup(func() { b.Close(); v.Wait() })
	nc, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return d, netip.MustParseAddrPort("127.0.0.1:" + port), nc
}

// TestDialSkipsAddressJustEvictedAsUnreachable: after an eviction on
// evidence that the host is unreachable, a dial to the address fails at once
// (a cancel request for an evicted connection, pgxpool's slot held until it
// returns), the connector's own attempts too, with no expiry: only the
// view's pulse ends the skip.
func TestDialSkipsAddressJustEvictedAsUnreachable(t *testing.T) {
	d, addr, nc := skipTestDialer(t)
	tc := trackedOf(nc)
	if tc == nil {
		t.Fatal("the dialled socket is not tracked")
	}
	cause := errors.New("no ACK for 10s")
	if !d.book.evict(addr, tc.gen, cause, evictDead) {
		t.Fatal("evict returned false")
	}

	for _, ctx := range []context.Context{context.Background(), NoSkip(context.Background())} {
		start := time.Now()
		_, err := d.DialContext(ctx, "tcp", addr.String())
		var de *DialError
		var ue *unreachableError
		var op *net.OpError
		if !errors.As(err, &de) || !errors.As(err, &ue) || !errors.As(err, &op) || !errors.Is(err, cause) {
			t.Fatalf("dial after eviction: %v (%T), want a *DialError around a *net.OpError around the skip and its cause", err, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("skipped dial took %v", took)
		}
		if !strings.Contains(err.Error(), addr.String()) || !strings.Contains(err.Error(), "evicted as unreachable") {
			t.Errorf("error text %q names neither the address nor the reason", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("skip is not a net.Error timeout: %v", err)
		}
	}

	// The pulse answering ends the skip.
	srv := d.book.addrs[addr].srv
	d.book.view.alive(srv)
	c2, err := d.DialContext(context.Background(), "tcp", addr.String())
	if err != nil {
		t.Fatalf("dial after the pulse saw the address alive: %v", err)
	}
	c2.Close()
}

// TestDialSkipOnlyForUnreachable: evictions that say nothing about the host
// (a stale socket found at checkout, a role change, a moved DNS name) skip
// nothing.
func TestDialSkipOnlyForUnreachable(t *testing.T) {
	for _, how := range []eviction{evictStale, evictRole, evictMoved} {
		d, addr, nc := skipTestDialer(t)
		d.book.evict(addr, trackedOf(nc).gen, errors.New("x"), how)
		c, err := d.DialContext(context.Background(), "tcp", addr.String())
		if err != nil {
			t.Fatalf("eviction %+v: dial: %v", how, err)
		}
		c.Close()
	}
}

// TestDialSkipKeepsOtherAddresses: a host with two addresses, one just
// evicted as unreachable, dials the other.
func TestDialSkipKeepsOtherAddresses(t *testing.T) {
	dialTestNeedIPv6(t)
	p := testkit.Listener(t, "tcp", "127.0.0.1:0")
	p6 := testkit.Listener(t, "tcp6", net.JoinHostPort("::1", p))
	r := &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")}
	d := NewDialer(Settings{ConnectTimeout: 2 * time.Second}, r)
	v := NewView()
	v.pulseDial = func(ctx context.Context, _ netip.AddrPort) (bool, error) { <-ctx.Done(); return false, ctx.Err() }
	d.SetBook(NewBook(nil))
	d.book.SetView(v)
	defer func() { d.book.Close(); v.Wait() }()
	six := netip.MustParseAddrPort("[::1]:" + p6)
	nc, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("db.test", p))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := trackedOf(nc).addr; got != six {
		t.Fatalf("first dial landed on %v, want %v", got, six)
	}
	d.book.evict(six, trackedOf(nc).gen, errors.New("silent"), evictDead)
	c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("db.test", p))
	if err != nil {
		t.Fatalf("dial with one address skipped: %v", err)
	}
	defer c.Close()
	if got := trackedOf(c).addr; got.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("landed on %v, want 127.0.0.1", got)
	}
}

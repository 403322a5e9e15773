package pgfast

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// dialTestResolver is a Resolver answering with fixed addresses and
// counting its calls.
type dialTestResolver struct {
	addrs []netip.Addr
	err   error

	mu       sync.Mutex
	calls    int
	networks []string
}

func (r *dialTestResolver) LookupNetIP(_ context.Context, network, _ string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.networks = append(r.networks, network)
	return slices.Clone(r.addrs), r.err
}

func (r *dialTestResolver) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// dialTestAddrs parses IP addresses for a dialTestResolver.
func dialTestAddrs(ips ...string) []netip.Addr {
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = netip.MustParseAddr(ip)
	}
	return out
}

// dialTestListener listens on addr (loopback only), accepting and closing
// connections until the test ends. It returns the listener's port.
func dialTestListener(t testing.TB, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	if network == "unix" {
		return ""
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// dialTestRefusedPort returns a loopback port nothing listens on.
func dialTestRefusedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

// dialTestNeedIPv6 skips the test when ::1 is not usable.
func dialTestNeedIPv6(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
}

// dialTestLeakCheck fails the test if goroutines it started outlive it.
// Call it first so that its check runs after every other cleanup.
func dialTestLeakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// dialTestHook wraps a dialer's real dialAddr: addresses in hang block
// until their context ends; it tracks how many calls are still running
// and the context error each hanging call saw.
type dialTestHook struct {
	real    func(ctx context.Context, network, addr string) (net.Conn, error)
	hang    map[string]bool // host part of addr
	running atomic.Int32

	mu       sync.Mutex
	order    []string
	ended    []error
	deadline map[string]time.Duration // deadline minus call time, per addr
}

func newDialTestHook(d *dialer, hang ...string) *dialTestHook {
	h := &dialTestHook{real: d.dialAddr, hang: map[string]bool{}, deadline: map[string]time.Duration{}}
	for _, a := range hang {
		h.hang[a] = true
	}
	d.dialAddr = h.dial
	return h
}

func (h *dialTestHook) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	h.running.Add(1)
	defer h.running.Add(-1)
	host, _, _ := net.SplitHostPort(addr)
	h.mu.Lock()
	h.order = append(h.order, addr)
	if dl, ok := ctx.Deadline(); ok {
		h.deadline[addr] = time.Until(dl)
	}
	h.mu.Unlock()
	if !h.hang[host] {
		if host != "127.0.0.1" && host != "::1" {
			return nil, errors.New("test dials only 127.0.0.1 and ::1, not " + host)
		}
		return h.real(ctx, network, addr)
	}
	<-ctx.Done()
	h.mu.Lock()
	h.ended = append(h.ended, ctx.Err())
	h.mu.Unlock()
	return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
}

func (h *dialTestHook) calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.order)
}

// assertSettled checks that no dial attempt is still running.
func (h *dialTestHook) assertSettled(t *testing.T) {
	t.Helper()
	if n := h.running.Load(); n != 0 {
		t.Errorf("%d dial attempts still running after DialContext returned", n)
	}
}

func TestInterleaveFamilies(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"empty", nil, nil},
		{"one", []string{"::1"}, []string{"::1"}},
		{"v6 first", []string{"::1", "127.0.0.1"}, []string{"::1", "127.0.0.1"}},
		{"v4 first", []string{"127.0.0.1", "::1"}, []string{"127.0.0.1", "::1"}},
		{"grouped v6 first",
			[]string{"2001:db8::1", "2001:db8::2", "2001:db8::3", "192.0.2.1", "192.0.2.2"},
			[]string{"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "2001:db8::3"}},
		{"grouped v4 first",
			[]string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"},
			[]string{"192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.3"}},
		{"mixed keeps order within family",
			[]string{"192.0.2.2", "2001:db8::2", "192.0.2.1", "2001:db8::1"},
			[]string{"192.0.2.2", "2001:db8::2", "192.0.2.1", "2001:db8::1"}},
		{"single family untouched",
			[]string{"192.0.2.3", "192.0.2.1", "192.0.2.2"},
			[]string{"192.0.2.3", "192.0.2.1", "192.0.2.2"}},
		{"mapped counts as v4",
			[]string{"::ffff:192.0.2.1", "192.0.2.2", "2001:db8::1"},
			[]string{"::ffff:192.0.2.1", "2001:db8::1", "192.0.2.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := interleaveFamilies(dialTestAddrs(tt.in...))
			if want := dialTestAddrs(tt.want...); !slices.Equal(got, want) {
				t.Errorf("interleaveFamilies(%v) = %v, want %v", tt.in, got, want)
			}
		})
	}
}

func TestNormalizeResolved(t *testing.T) {
	in := dialTestAddrs("::ffff:192.0.2.1", "2001:db8::1", "192.0.2.1", "2001:db8::1", "192.0.2.2")
	in = append(in, netip.Addr{})
	tests := []struct {
		network string
		want    []string
	}{
		{"tcp", []string{"192.0.2.1", "2001:db8::1", "192.0.2.2"}},
		{"tcp4", []string{"192.0.2.1", "192.0.2.2"}},
		{"tcp6", []string{"2001:db8::1"}},
	}
	for _, tt := range tests {
		got := normalizeResolved(slices.Clone(in), tt.network)
		if want := dialTestAddrs(tt.want...); !slices.Equal(got, want) {
			t.Errorf("normalizeResolved(%s) = %v, want %v", tt.network, got, want)
		}
	}
}

func TestDialIPLiteral(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			if host == "::1" {
				dialTestNeedIPv6(t)
			}
			port := dialTestListener(t, "tcp", net.JoinHostPort(host, "0"))
			r := &dialTestResolver{err: errors.New("resolver must not be called")}
			d := newDialer(dialSettings{ConnectTimeout: time.Second}, r)
			hook := newDialTestHook(d)
			conn, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.RemoteAddr().String(); got != net.JoinHostPort(host, port) {
				t.Errorf("connected to %s", got)
			}
			if r.callCount() != 0 {
				t.Errorf("resolver called %d times for an IP literal", r.callCount())
			}
			if n := len(hook.calls()); n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
		})
	}
}

func TestDialResolvesOnEveryDial(t *testing.T) {
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	r := &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")}
	d := newDialer(dialSettings{}, r)
	for i := range 3 {
		conn, err := d.DialContext(context.Background(), "tcp", "db.example:"+port)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if got := r.callCount(); got != i+1 {
			t.Fatalf("after %d dials the resolver was called %d times", i+1, got)
		}
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		d.DialContext(context.Background(), network, "db.example:"+port)
	}
	if want := []string{"ip", "ip", "ip", "ip4", "ip6"}; !slices.Equal(r.networks, want) {
		t.Errorf("resolver networks = %v, want %v", r.networks, want)
	}
}

func TestDialFallsBackFromHangingAddress(t *testing.T) {
	dialTestLeakCheck(t)
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	d := newDialer(dialSettings{ConnectTimeout: 10 * time.Second}, &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
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
	port := dialTestListener(t, "tcp", "127.0.0.1:0") // nothing on [::1]:port
	d := newDialer(dialSettings{AttemptDelay: 10 * time.Second}, &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})

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
	port := dialTestRefusedPort(t)
	d := newDialer(dialSettings{}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1", "::1")})

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

func TestDialContextCancelStopsEveryAttempt(t *testing.T) {
	dialTestLeakCheck(t)
	r := &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1", "::2")}
	d := newDialer(dialSettings{AttemptDelay: 10 * time.Millisecond}, r)
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
	d := newDialer(dialSettings{}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")})
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
	d := newDialer(dialSettings{AttemptDelay: 10 * time.Millisecond}, &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
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
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	d := newDialer(dialSettings{ConnectTimeout: timeout, AttemptDelay: time.Hour},
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
	d := newDialer(dialSettings{ConnectTimeout: timeout, AttemptDelay: delay},
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
	d := newDialer(dialSettings{AttemptDelay: 20 * time.Millisecond},
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

func TestDialResolveError(t *testing.T) {
	dnsErr := &net.DNSError{Err: "no such host", Name: "db.example", IsNotFound: true}
	d := newDialer(dialSettings{}, &dialTestResolver{err: dnsErr})
	_, err := d.DialContext(context.Background(), "tcp", "db.example:5432")
	if !errors.Is(err, dnsErr) || !strings.Contains(err.Error(), "db.example") {
		t.Errorf("err = %v, want it to wrap the resolver error and name the host", err)
	}

	d = newDialer(dialSettings{}, &dialTestResolver{addrs: dialTestAddrs("::1")})
	_, err = d.DialContext(context.Background(), "tcp4", "db.example:5432")
	var got *net.DNSError
	if !errors.As(err, &got) || !got.IsNotFound || !strings.Contains(err.Error(), "db.example") {
		t.Errorf("tcp4 with only IPv6 answers: err = %v, want a not-found DNSError", err)
	}
}

func TestDialBadArguments(t *testing.T) {
	d := newDialer(dialSettings{}, &dialTestResolver{err: errors.New("not called")})
	for _, tt := range []struct{ network, address string }{
		{"udp", "127.0.0.1:5432"},
		{"tcp", "127.0.0.1"},
		{"tcp", "127.0.0.1:postgres"},
		{"tcp", "127.0.0.1:70000"},
	} {
		if c, err := d.DialContext(context.Background(), tt.network, tt.address); err == nil {
			c.Close()
			t.Errorf("DialContext(%q, %q) succeeded", tt.network, tt.address)
		}
	}
}

func TestDialUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".s.PGSQL.5432")
	dialTestListener(t, "unix", path)
	// TCP options must not be applied to a unix socket.
	s := dialSettings{Keepalives: true, KeepalivesIdle: 10 * time.Second, TCPUserTimeout: time.Second, ConnectTimeout: time.Second}
	d := newDialer(s, &dialTestResolver{err: errors.New("not called")})
	conn, err := d.DialContext(context.Background(), "unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	_, err = d.DialContext(context.Background(), "unix", path+".missing")
	if err == nil || !strings.Contains(err.Error(), path+".missing") {
		t.Errorf("err = %v, want it to name the path", err)
	}
}

func TestDialAndDialTimeout(t *testing.T) {
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	d := newDialer(dialSettings{}, nil)
	for name, dial := range map[string]func() (net.Conn, error){
		"Dial":        func() (net.Conn, error) { return d.Dial("tcp", "127.0.0.1:"+port) },
		"DialTimeout": func() (net.Conn, error) { return d.DialTimeout("tcp", "127.0.0.1:"+port, time.Second) },
	} {
		conn, err := dial()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		conn.Close()
	}

	hook := newDialTestHook(d, "127.0.0.1")
	start := time.Now()
	_, err := d.DialTimeout("tcp", "127.0.0.1:"+port, 50*time.Millisecond)
	hook.assertSettled(t)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DialTimeout err = %v, want DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
		t.Errorf("DialTimeout(50ms) took %v", elapsed)
	}
}

func TestDialNoGoroutineLeak(t *testing.T) {
	dialTestLeakCheck(t)
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	refused := dialTestRefusedPort(t)
	d := newDialer(dialSettings{ConnectTimeout: 20 * time.Millisecond, AttemptDelay: 5 * time.Millisecond},
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
	port := dialTestListener(b, "tcp", "127.0.0.1:0")
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
		d := newDialer(dialSettings{Keepalives: true, KeepalivesIdle: 10 * time.Second,
			KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3, TCPUserTimeout: 25 * time.Second}, nil)
		run(b, d.DialContext)
	})
	b.Run("pgfast-resolved", func(b *testing.B) {
		d := newDialer(dialSettings{Keepalives: true}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")})
		run(b, func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, "db.example:"+port)
		})
	})
	b.Run("net.Dialer", func(b *testing.B) {
		d := &net.Dialer{}
		run(b, d.DialContext)
	})
}

package pgfast

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

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

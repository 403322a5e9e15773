//go:build linux

package netx

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

// dialTestSocketOptions dials a 127.0.0.1 listener with s and reads the
// options back from the connection.
func dialTestSocketOptions(t *testing.T, s Settings) SocketOptions {
	t.Helper()
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	conn, err := NewDialer(s, nil).DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := ReadSocketOptions(conn)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestReadSocketOptionsReturnsWhatWasSet(t *testing.T) {
	tests := []struct {
		name string
		set  Settings
		want SocketOptions
	}{
		{
			name: "libpq-like",
			set:  Settings{Keepalives: true, KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3, TCPUserTimeout: 25 * time.Second},
			want: SocketOptions{Keepalive: true, KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3, TCPUserTimeout: 25 * time.Second},
		},
		{
			name: "minimal",
			set:  Settings{Keepalives: true, KeepalivesIdle: time.Second, KeepalivesInterval: time.Second, KeepalivesCount: 1, TCPUserTimeout: time.Millisecond},
			want: SocketOptions{Keepalive: true, KeepalivesIdle: time.Second, KeepalivesInterval: time.Second, KeepalivesCount: 1, TCPUserTimeout: time.Millisecond},
		},
		{
			name: "kernel maxima",
			set:  Settings{Keepalives: true, KeepalivesIdle: 32767 * time.Second, KeepalivesInterval: 32767 * time.Second, KeepalivesCount: 127, TCPUserTimeout: 24 * time.Hour},
			want: SocketOptions{Keepalive: true, KeepalivesIdle: 32767 * time.Second, KeepalivesInterval: 32767 * time.Second, KeepalivesCount: 127, TCPUserTimeout: 24 * time.Hour},
		},
		{
			name: "sub-units round up",
			set:  Settings{Keepalives: true, KeepalivesIdle: 1500 * time.Millisecond, KeepalivesInterval: 300 * time.Millisecond, KeepalivesCount: 4, TCPUserTimeout: 1500 * time.Microsecond},
			want: SocketOptions{Keepalive: true, KeepalivesIdle: 2 * time.Second, KeepalivesInterval: time.Second, KeepalivesCount: 4, TCPUserTimeout: 2 * time.Millisecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dialTestSocketOptions(t, tt.set); got != tt.want {
				t.Errorf("read back %+v\nwant         %+v", got, tt.want)
			}
		})
	}
}

func TestReadSocketOptionsZeroMeansOSDefault(t *testing.T) {
	want := SocketOptions{
		Keepalive:          true,
		KeepalivesIdle:     time.Duration(testkit.Sysctl(t, "tcp_keepalive_time")) * time.Second,
		KeepalivesInterval: time.Duration(testkit.Sysctl(t, "tcp_keepalive_intvl")) * time.Second,
		KeepalivesCount:    testkit.Sysctl(t, "tcp_keepalive_probes"),
	}
	if got := dialTestSocketOptions(t, Settings{Keepalives: true}); got != want {
		t.Errorf("read back %+v\nwant         %+v (Go's 15s keep-alive defaults must not apply)", got, want)
	}
}

func TestReadSocketOptionsKeepalivesOff(t *testing.T) {
	got := dialTestSocketOptions(t, Settings{Keepalives: false, KeepalivesIdle: 10 * time.Second, TCPUserTimeout: 25 * time.Second})
	if got.Keepalive {
		t.Error("SO_KEEPALIVE is on, want off")
	}
	if got.KeepalivesIdle == 10*time.Second {
		t.Error("TCP_KEEPIDLE was set although keep-alives are off")
	}
	if got.TCPUserTimeout != 25*time.Second {
		t.Errorf("TCP_USER_TIMEOUT = %v, want 25s (independent of keep-alives)", got.TCPUserTimeout)
	}
}

func TestReadSocketOptionsUnwrapsNetConn(t *testing.T) {
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	set := Settings{Keepalives: true, KeepalivesIdle: 7 * time.Second, KeepalivesCount: 2}
	conn, err := NewDialer(set, nil).DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tlsConn := tls.Client(conn, &tls.Config{ServerName: "db.example"}) // no handshake needed
	got, err := ReadSocketOptions(tlsConn)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Keepalive || got.KeepalivesIdle != 7*time.Second || got.KeepalivesCount != 2 {
		t.Errorf("read back %+v through *tls.Conn", got)
	}
}

func TestReadSocketOptionsWithoutTCPSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := ReadSocketOptions(a); err == nil {
		t.Error("readSocketOptions(net.Pipe) succeeded")
	}
}

func TestSetsockoptFailureIsReturned(t *testing.T) {
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	d := NewDialer(Settings{Keepalives: true, KeepalivesCount: 1000}, nil) // TCP_KEEPCNT max is 127
	conn, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	if err == nil {
		conn.Close()
		t.Fatal("dial succeeded with an invalid TCP_KEEPCNT")
	}
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "TCP_KEEPCNT") {
		t.Errorf("err = %v, want EINVAL naming TCP_KEEPCNT", err)
	}
	var de *DialError
	if !errors.As(err, &de) {
		t.Errorf("err = %T, want *DialError", err)
	}
}

func TestConnectTimeoutOnBlackhole(t *testing.T) {
	dialTestLeakCheck(t)
	addr := testkit.Blackhole(t)
	d := NewDialer(Settings{ConnectTimeout: 100 * time.Millisecond}, nil)
	start := time.Now()
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	elapsed := time.Since(start)
	if err == nil {
		conn.Close()
		t.Skip("the kernel accepted a connection beyond the listen backlog")
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "i/o timeout after 100ms") {
		t.Errorf("err = %v, want the per-address timeout", err)
	}
	if elapsed < 100*time.Millisecond || elapsed > 500*time.Millisecond {
		t.Errorf("timed out after %v, want about 100ms", elapsed)
	}
}

func TestDialRacesPastBlackhole(t *testing.T) {
	dialTestNeedIPv6(t)
	dialTestLeakCheck(t)
	blackhole := testkit.Blackhole(t)
	_, port, _ := net.SplitHostPort(blackhole)
	testkit.Listener(t, "tcp", "[::1]:"+port)
	d := NewDialer(Settings{ConnectTimeout: 10 * time.Second}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1", "::1")})

	start := time.Now()
	conn, err := d.DialContext(context.Background(), "tcp", "db.example:"+port)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != "[::1]:"+port {
		t.Errorf("connected to %s, want [::1]:%s", got, port)
	}
	if elapsed > time.Second {
		t.Errorf("connected after %v, want well under 1s", elapsed)
	}
}

func TestTCPUserTimeoutBoundsConnect(t *testing.T) {
	addr := testkit.Blackhole(t)
	// No connect timeout: without TCP_USER_TIMEOUT this would hang for
	// the kernel's SYN retries (over a minute).
	d := NewDialer(Settings{TCPUserTimeout: 300 * time.Millisecond}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", addr)
	elapsed := time.Since(start)
	if err == nil {
		conn.Close()
		t.Skip("the kernel accepted a connection beyond the listen backlog")
	}
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("err = %v, want ETIMEDOUT from TCP_USER_TIMEOUT", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("connect gave up after %v; TCP_USER_TIMEOUT did not bound the SYN phase", elapsed)
	}
}

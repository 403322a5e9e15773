package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

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
			port := testkit.Listener(t, "tcp", net.JoinHostPort(host, "0"))
			r := &dialTestResolver{err: errors.New("resolver must not be called")}
			d := NewDialer(Settings{ConnectTimeout: time.Second}, r)
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
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	r := &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")}
	d := NewDialer(Settings{}, r)
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

func TestDialResolveError(t *testing.T) {
	dnsErr := &net.DNSError{Err: "no such host", Name: "db.example", IsNotFound: true}
	d := NewDialer(Settings{}, &dialTestResolver{err: dnsErr})
	_, err := d.DialContext(context.Background(), "tcp", "db.example:5432")
	if !errors.Is(err, dnsErr) || !strings.Contains(err.Error(), "db.example") {
		t.Errorf("err = %v, want it to wrap the resolver error and name the host", err)
	}

	d = NewDialer(Settings{}, &dialTestResolver{addrs: dialTestAddrs("::1")})
	_, err = d.DialContext(context.Background(), "tcp4", "db.example:5432")
	var got *net.DNSError
	if !errors.As(err, &got) || !got.IsNotFound || !strings.Contains(err.Error(), "db.example") {
		t.Errorf("tcp4 with only IPv6 answers: err = %v, want a not-found DNSError", err)
	}
}

func TestDialBadArguments(t *testing.T) {
	d := NewDialer(Settings{}, &dialTestResolver{err: errors.New("not called")})
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
	testkit.Listener(t, "unix", path)
	// TCP options must not be applied to a unix socket.
	s := Settings{Keepalives: true, KeepalivesIdle: 10 * time.Second, TCPUserTimeout: time.Second, ConnectTimeout: time.Second}
	d := NewDialer(s, &dialTestResolver{err: errors.New("not called")})
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
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	d := NewDialer(Settings{}, nil)
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

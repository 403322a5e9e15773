package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/testkit"
)

// TestConnectTimeoutThatOverflowsIsRefused: both backends multiply
// connect_timeout's seconds into a time.Duration without an overflow check
// (18446744074 s becomes 290 ms, 2^55+5 s becomes 5 s). pgfast refuses every
// value libpq would (libpq reads an int: at most 2147483647) with a
// *ConfigError naming connect_timeout, on every entry point, whether the
// value comes from the DSN (either form) or from PGCONNECT_TIMEOUT.
func TestConnectTimeoutThatOverflowsIsRefused(t *testing.T) {
	values := []string{
		"2147483648",          // libpq's int overflows
		"9223372037",          // the first whole second past time.Duration's range
		"18446744074",         // wraps to 290ms
		"36028797018963973",   // 2^55+5: wraps to exactly 5s
		"36028797018963968",   // 2^55: wraps to 0, i.e. "unset"
		"9223372036854775807", // int64's max
	}
	for _, v := range values {
		dsns := map[string]string{
			"kv":  "host=127.0.0.1 port=1 user=u sslmode=disable connect_timeout=" + v,
			"url": "postgres://u@127.0.0.1:1/d?sslmode=disable&connect_timeout=" + v,
		}
		for form, dsn := range dsns {
			for _, b := range backends {
				t.Run(b.name+"/"+form+"/"+v, func(t *testing.T) {
					_, _, err := parseDSN(b.backend, dsn)
					wantConfigKey(t, err, "connect_timeout")
				})
			}
			t.Run("pool/"+form+"/"+v, func(t *testing.T) {
				pool, err := NewPool(context.Background(), dsn)
				if err == nil {
					pool.Close()
				}
				wantConfigKey(t, err, "connect_timeout")
				pc, err := pgxpool.ParseConfig(dsn)
				if err != nil {
					t.Fatalf("pgxpool.ParseConfig: %v", err)
				}
				pool, err = NewPoolWithConfig(context.Background(), pc)
				if err == nil {
					pool.Close()
				}
				wantConfigKey(t, err, "connect_timeout")
			})
		}
	}
	// A *pgx.ConnConfig from pgx.ParseConfig carries the wrapped value; the
	// application may also set any Duration up to libpq's maximum.
	t.Run("ConnConfig", func(t *testing.T) {
		cc, err := pgx.ParseConfig("host=127.0.0.1 port=1 user=u sslmode=disable connect_timeout=18446744074")
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewConnectorFromConfig(cc)
		wantConfigKey(t, err, "connect_timeout")
		for d, ok := range map[time.Duration]bool{1500 * time.Millisecond: true, maxConnectTimeout: true, maxConnectTimeout + 1: false, -time.Second: false} {
			cc, _ := pgx.ParseConfig("host=127.0.0.1 port=1 user=u sslmode=disable connect_timeout=5")
			cc.ConnectTimeout = d
			c, err := NewConnectorFromConfig(cc)
			if ok {
				if err != nil {
					t.Fatalf("ConnectTimeout %v: %v", d, err)
				}
				if got := c.Config().ConnectTimeout; got != d {
					t.Errorf("ConnectTimeout %v read back as %v", d, got)
				}
				c.Close()
				continue
			}
			wantConfigKey(t, err, "connect_timeout")
		}
	})
	t.Run("PGCONNECT_TIMEOUT", func(t *testing.T) {
		t.Setenv("PGCONNECT_TIMEOUT", "18446744074")
		for _, b := range backends {
			_, _, err := parseDSN(b.backend, "host=127.0.0.1 port=1 user=u sslmode=disable")
			wantConfigKey(t, err, "connect_timeout")
		}
	})
	// libpq's largest value is accepted, as libpq accepts it.
	for _, b := range backends {
		_, cfg, err := parseDSN(b.backend, "host=127.0.0.1 port=1 sslmode=disable connect_timeout=2147483647")
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		if cfg.ConnectTimeout != 2147483647*time.Second {
			t.Errorf("%s: ConnectTimeout = %v", b.name, cfg.ConnectTimeout)
		}
	}
}

// wantConfigKey fails unless err is a *ConfigError naming key.
func wantConfigKey(t *testing.T, err error, key string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %T %v, want a *ConfigError naming %s", err, err, key)
	}
	if ce.Key != key {
		t.Fatalf("Key = %q, want %q (%v)", ce.Key, key, err)
	}
}

// TestRoleVerificationBudgetSaturates: with connect_timeout=2147483647 and
// four hosts, connect_timeout × (hosts+1) overflowed and went negative, so
// the role verification's connection started with its context already
// ended, failed at once and evicted a healthy primary's address. The
// budget now saturates: the verification gets a live context.
func TestRoleVerificationBudgetSaturates(t *testing.T) {
	fb := &fakeBackend{}
	type seen struct {
		err  error
		left time.Duration
	}
	got := make(chan seen, 1)
	fb.set(func(ctx context.Context) error {
		d, _ := ctx.Deadline()
		select {
		case got <- seen{ctx.Err(), time.Until(d)}:
		default:
		}
		return errors.New("fake: no server")
	})
	const dsn = "host=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4 port=1 user=u sslmode=disable connect_timeout=2147483647"
	c, err := newConnector(dsn, options{noBackground: true, testBackend: func(core) driver.Connector { return fb }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	addr := netip.MustParseAddrPort("127.0.0.1:1")
	a, b := net.Pipe()
	defer b.Close()
	nc := c.book.Track(addr, a)
	defer nc.Close()
	c.verifyRole(nc, ErrWrongRole)

	select {
	case s := <-got:
		if s.err != nil || s.left <= 0 {
			t.Fatalf("the verification's connection started with ctx.Err()=%v and %v left, want a live context", s.err, s.left)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the verification did not connect within 5s")
	}
}

// TestDriverOpenBudgetSaturates: Driver.Open bounds its one connection by
// connect_timeout × (hosts+1); with connect_timeout=2147483647 and four
// hosts that product overflowed, and Open failed at once with the
// context's deadline instead of trying the hosts.
func TestDriverOpenBudgetSaturates(t *testing.T) {
	var hosts, ports []string
	for i := 0; i < 4; i++ {
		hosts = append(hosts, "127.0.0.1")
		ports = append(ports, strconv.Itoa(freeLoopbackPort(t)))
	}
	dsn := fmt.Sprintf("host=%s port=%s user=u dbname=d sslmode=disable connect_timeout=2147483647",
		strings.Join(hosts, ","), strings.Join(ports, ","))
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			conn, err := (&Driver{backend: b.backend}).Open(dsn)
			if err == nil {
				conn.Close()
				t.Fatal("Open succeeded with no server")
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Open: %v: the deadline ended it, want the hosts' refusal", err)
			}
		})
	}
}

// TestSaturatingDurations: the budget helpers never wrap.
func TestSaturatingDurations(t *testing.T) {
	const maxD = time.Duration(1<<63 - 1)
	cases := []struct {
		d    time.Duration
		n    int
		want time.Duration
	}{
		{time.Second, 5, 5 * time.Second},
		{2147483647 * time.Second, 5, maxD},
		{maxD, 2, maxD},
		{maxD, 1, maxD},
		{0, 1 << 40, 0},
		{time.Second, 0, 0},
	}
	for _, tc := range cases {
		if got := mulDuration(tc.d, tc.n); got != tc.want {
			t.Errorf("mulDuration(%v, %d) = %v, want %v", tc.d, tc.n, got, tc.want)
		}
	}
	if got := addDuration(maxD, time.Second); got != maxD {
		t.Errorf("addDuration(max, 1s) = %v", got)
	}
	if got := addDuration(time.Second, 2*time.Second); got != 3*time.Second {
		t.Errorf("addDuration(1s, 2s) = %v", got)
	}
	cfg := &Config{ConnectTimeout: 2147483647 * time.Second, Hosts: make([]HostPort, 4)}
	if got := cfg.connectBudget(); got <= 0 {
		t.Errorf("connectBudget = %v, want > 0", got)
	}
}

// TestKeepaliveValuesTheKernelRefusesAreRefused: Linux refuses TCP_KEEPIDLE
// and TCP_KEEPINTVL above 32767 s and TCP_KEEPCNT above 127 (EINVAL on
// every dial); pgfast refuses them at sql.Open with a *ConfigError naming
// the key, on every OS (the DSN means the same everywhere).
func TestKeepaliveValuesTheKernelRefusesAreRefused(t *testing.T) {
	cases := map[string]string{
		"keepalives_count":    "200",
		"keepalives_idle":     "40000",
		"keepalives_interval": "32768",
		"tcp_user_timeout":    "2147483648",
	}
	for key, v := range cases {
		for _, b := range backends {
			t.Run(b.name+"/"+key, func(t *testing.T) {
				_, _, err := parseDSN(b.backend, "host=127.0.0.1 port=1 sslmode=disable "+key+"="+v)
				wantConfigKey(t, err, key)
			})
		}
	}
}

// TestSetsockoptRefusalIsPermanent: when the kernel refuses a socket option
// (EINVAL: a value this kernel does not accept, whatever pgfast's own
// check let through), waiting cannot fix it: the error is permanent, so
// Ready returns it at once instead of waiting out its context.
func TestSetsockoptRefusalIsPermanent(t *testing.T) {
	port := testkit.Listener(t, "tcp", "127.0.0.1:0")
	d := netx.NewDialer(netx.Settings{Keepalives: true, KeepalivesCount: 1000}, nil)
	conn, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	if err == nil {
		conn.Close()
		t.Skip("this OS accepted TCP_KEEPCNT=1000")
	}
	pe := permanent(err, nil)
	if pe == nil {
		t.Fatalf("permanent(%v) = nil, want a permanent error", err)
	}
	if !errors.Is(pe, err) || !strings.Contains(pe.Error(), "keepalives") {
		t.Errorf("permanent error %q does not wrap the dial's or name the keys to check", pe)
	}
	// One host of two refusing the option while the other is down is
	// still transient.
	if permanent(errors.Join(err, &DialError{Host: "b", Port: "1"}), nil) != nil {
		t.Error("a refused option on one host and a down host: permanent, want transient")
	}

	// End to end: the connector's own dials refuse the option.
	fb := &fakeBackend{}
	var mu sync.Mutex
	var dialed []net.Conn
	fb.set(func(ctx context.Context) error {
		nc, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+port)
		if nc != nil {
			mu.Lock()
			dialed = append(dialed, nc)
			mu.Unlock()
		}
		if err != nil {
			return fmt.Errorf("failed to connect to host=127.0.0.1: %w", err)
		}
		return nil
	})
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range dialed {
			nc.Close()
		}
	}()
	c := newFakeConnector(t, fb, options{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err = c.Ready(ctx)
	if err == nil {
		t.Fatal("Ready succeeded")
	}
	if took := time.Since(start); took > time.Second || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ready: %v after %s, want the refusal at once", err, took)
	}
	if !strings.Contains(err.Error(), "TCP_KEEPCNT") {
		t.Errorf("Ready: %v, want the setsockopt error", err)
	}
}

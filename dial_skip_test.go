package pgfast

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// skipTestDialer is a dialer with an address book whose only address,
// 127.0.0.1:port, has one tracked socket, so that it can be evicted.
func skipTestDialer(t *testing.T) (*dialer, netip.AddrPort, net.Conn) {
	t.Helper()
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	d := newDialer(dialSettings{ConnectTimeout: 2 * time.Second}, nil)
	d.book = newAddrBook()
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
// returns), the connector's probes still dial it, and a success ends the skip.
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

	start := time.Now()
	_, err := d.DialContext(context.Background(), "tcp", addr.String())
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

	// The connector's own probe dials it, and its success ends the skip.
	pc, err := d.DialContext(probeContext(context.Background()), "tcp", addr.String())
	if err != nil {
		t.Fatalf("probe dial: %v", err)
	}
	pc.Close()
	c2, err := d.DialContext(context.Background(), "tcp", addr.String())
	if err != nil {
		t.Fatalf("dial after a probe saw the address alive: %v", err)
	}
	c2.Close()
}

// TestDialSkipOnlyForUnreachable: evictions that say nothing about the host
// (a stale socket found at checkout, a role change, a moved DNS name) skip
// nothing, and the skip ends after unreachableSkip.
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

	d, addr, nc := skipTestDialer(t)
	d.book.evict(addr, trackedOf(nc).gen, errors.New("x"), evictDead)
	d.book.mu.Lock()
	d.book.addrs[addr].unreachableAt = time.Now().Add(-unreachableSkip)
	d.book.mu.Unlock()
	c, err := d.DialContext(context.Background(), "tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %v after the skip window: %v", unreachableSkip, err)
	}
	c.Close()
}

// TestDialSkipKeepsOtherAddresses: a host with two addresses, one just
// evicted as unreachable, dials the other.
func TestDialSkipKeepsOtherAddresses(t *testing.T) {
	dialTestNeedIPv6(t)
	p := dialTestListener(t, "tcp", "127.0.0.1:0")
	p6 := dialTestListener(t, "tcp6", net.JoinHostPort("::1", p))
	r := &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")}
	d := newDialer(dialSettings{ConnectTimeout: 2 * time.Second}, r)
	d.book = newAddrBook()
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

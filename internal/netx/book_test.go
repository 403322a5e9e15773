package netx

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
)

// TestHostOrderBookUntilSeenAlive drives the address book as the dialer does:
// a host that failed goes last; once it connects again it is back in its
// place. Hosts are told apart by port as well as by name.
func TestHostOrderBookUntilSeenAlive(t *testing.T) {
	refused := errors.New("connection refused")
	cases := []struct {
		name  string
		hosts []hostPort
	}{
		{"distinct hosts", []hostPort{{Host: "127.0.0.2", Port: 5432}, {Host: "127.0.0.1", Port: 5432}}},
		{"same host other port", []hostPort{{Host: "127.0.0.1", Port: 5433}, {Host: "127.0.0.1", Port: 5432}}},
		{"same name other port", []hostPort{{Host: "db.test", Port: 5433}, {Host: "db.test", Port: 5432}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBook(nil)
			target := func(h hostPort) netip.AddrPort {
				ip, err := netip.ParseAddr(h.Host)
				if err != nil {
					ip = netip.MustParseAddr("127.0.0.1") // what db.test resolves to
				}
				return netip.AddrPortFrom(ip, h.Port)
			}
			dial := func(h hostPort, err error) {
				a := target(h)
				b.resolved(hostKey(h), strconv.Itoa(int(h.Port)), []netip.AddrPort{a})
				b.attemptStarted(a)
				var nc net.Conn
				if err == nil {
					client, server := net.Pipe()
					server.Close()
					nc = client
				}
				if tc := b.attemptDone(a, nc, err); tc != nil {
					tc.Close()
				}
			}
			if got := orderHosts(b, tc.hosts, false); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("fresh book: order %v, want [0 1]", got)
			}
			dial(tc.hosts[0], refused)
			dial(tc.hosts[1], nil)
			if got := orderHosts(b, tc.hosts, false); !slices.Equal(got, []int{1, 0}) {
				t.Errorf("after %s failed: order %v, want [1 0] (the failed host last)", tc.hosts[0], got)
			}
			dial(tc.hosts[1], nil) // the other host keeps answering
			if got := orderHosts(b, tc.hosts, false); !slices.Equal(got, []int{1, 0}) {
				t.Errorf("after %s answered again: order %v, want [1 0]", tc.hosts[1], got)
			}
			dial(tc.hosts[0], nil) // seen alive again
			if got := orderHosts(b, tc.hosts, false); !slices.Equal(got, []int{0, 1}) {
				t.Errorf("after %s was seen alive again: order %v, want [0 1]", tc.hosts[0], got)
			}
		})
	}
}

// TestAddrBookForgetsAddressesDNSNoLongerLists: a name that moves from
// address to address must not grow the book without bound. An address that
// left the answer is forgotten once no socket of any generation and no
// attempt refers to it; until then it stays, so its sockets' generation
// checks still hold.
func TestAddrBookForgetsAddressesDNSNoLongerLists(t *testing.T) {
	b := NewBook(nil)
	a1 := netip.MustParseAddrPort("127.0.0.2:5432")
	a2 := netip.MustParseAddrPort("127.0.0.3:5432")
	a3 := netip.MustParseAddrPort("127.0.0.4:5432")
	other := netip.MustParseAddrPort("127.0.0.2:5433") // same name, other port
	connect := func(a netip.AddrPort) net.Conn {
		b.attemptStarted(a)
		client, server := net.Pipe()
		t.Cleanup(func() { server.Close() })
		return b.attemptDone(a, client, nil)
	}
	known := func() []netip.AddrPort {
		b.mu.Lock()
		defer b.mu.Unlock()
		out := slices.Collect(maps.Keys(b.addrs))
		slices.SortFunc(out, netip.AddrPort.Compare)
		return out
	}

	b.resolved("db.test", "5433", []netip.AddrPort{other})
	b.attemptStarted(other)
	b.attemptDone(other, nil, errors.New("connection refused"))

	b.resolved("db.test", "5432", []netip.AddrPort{a1})
	tc1 := connect(a1)
	b.evict(a1, 0, errors.New("gone"), evictMoved) // its socket is now of an old generation
	b.resolved("db.test", "5432", []netip.AddrPort{a2})
	b.attemptStarted(a2)
	b.attemptDone(a2, nil, errors.New("connection refused"))
	if got, want := known(), []netip.AddrPort{a1, other, a2}; !slices.Equal(got, want) {
		t.Fatalf("with a socket still open to %s: book %v, want %v", a1, got, want)
	}

	tc1.Close()
	tc1.Close() // drivers may close twice; it counts once
	b.resolved("db.test", "5432", []netip.AddrPort{a3})
	if got, want := known(), []netip.AddrPort{other, a3}; !slices.Equal(got, want) {
		t.Fatalf("after the socket closed and the name moved on: book %v, want %v", got, want)
	}

	b.attemptStarted(a3) // an attempt in flight keeps it
	b.prune("db.test", 5432, func(netip.AddrPort) bool { return false })
	if got := known(); !slices.Contains(got, a3) {
		t.Fatalf("an address with an attempt in flight was forgotten: book %v", got)
	}
	b.attemptDone(a3, nil, context.Canceled)
	b.prune("db.test", 5432, func(netip.AddrPort) bool { return false })
	if got, want := known(), []netip.AddrPort{other}; !slices.Equal(got, want) {
		t.Fatalf("after the recheck listed none of port 5432: book %v, want %v (the other port untouched)", got, want)
	}
}

// hostPort is a DSN's host as the root package's HostPort holds it.
type hostPort struct {
	Host string
	Port uint16
	Addr string
}

func (h hostPort) String() string { return net.JoinHostPort(h.Host, strconv.Itoa(int(h.Port))) }

// hostKey and orderHosts do what the root package's do.
func hostKey(h hostPort) string {
	if h.Addr != "" {
		return h.Addr
	}
	return h.Host
}

func orderHosts(b *Book, hosts []hostPort, random bool) []int {
	return b.OrderHosts(len(hosts), func(i int) (string, uint16) { return hostKey(hosts[i]), hosts[i].Port }, random)
}

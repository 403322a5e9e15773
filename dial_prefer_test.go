package pgfast

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"
)

// TestDialSlowAddressTakesSecondPlace: an address whose attempt lost a race
// after waiting longer than the attempt delay (::1 blackholed) is tried
// second next time, so the next connection does not pay the attempt delay
// again (a pgxpool's first connection after the connector's probe did: 0.51 s
// instead of 0.26 s with localhost's ::1 blackholed). Both are still tried.
func TestDialSlowAddressTakesSecondPlace(t *testing.T) {
	dialTestNeedIPv6(t)
	p := dialTestListener(t, "tcp", "127.0.0.1:0")
	dialTestListener(t, "tcp6", net.JoinHostPort("::1", p))
	r := &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")}
	d := newDialer(dialSettings{ConnectTimeout: 5 * time.Second, AttemptDelay: 30 * time.Millisecond}, r)
	d.book = newAddrBook()
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

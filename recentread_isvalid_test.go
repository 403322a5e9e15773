package pgfast

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/pgfast/pgfast/internal/netx"
	"github.com/pgfast/pgfast/internal/testkit"
)

// TestPQIsValidSkipsCheckAfterReply: IsValid asks the core only when the
// connection read nothing since its checkout check, or pgfast doomed it.
func TestPQIsValidSkipsCheckAfterReply(t *testing.T) {
	tc, srv := trackedPair(t)
	var asked atomic.Int32
	dead := false
	core := &fakeCore{aliveFn: func(net.Conn) bool { asked.Add(1); return !dead }}
	pc := &PQConn{inner: &bareConn{}, sock: tc, core: core}

	_ = netx.Checkout(context.Background(), tc) // the checkout check
	if !pc.IsValid() || asked.Load() != 1 {
		t.Fatalf("no read since the check: IsValid must ask the core (asked %d)", asked.Load())
	}
	if _, err := srv.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	if !pc.IsValid() || asked.Load() != 1 {
		t.Fatalf("a reply read since the check: IsValid asked the core (asked %d)", asked.Load())
	}
	netx.Doom(tc)
	dead = true
	if pc.IsValid() || asked.Load() != 2 {
		t.Fatalf("doomed: IsValid must ask the core and report false (asked %d)", asked.Load())
	}
}

// trackedPair returns a loopback TCP connection wrapped as pgfast's socket,
// and its server end.
func trackedPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	c, s := testkit.LoopbackPair(t)
	tc := netx.NewTestSocket(c)
	t.Cleanup(func() { tc.Close(); s.Close() })
	return tc, s
}

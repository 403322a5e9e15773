package netx

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

// TestReadRecencyRule: a check skips only when the socket read something
// after a check made less than recentReadWindow ago.
func TestReadRecencyRule(t *testing.T) {
	const w = int64(recentReadWindow)
	var r readRecency
	now := int64(time.Hour) // any positive monoNow reading
	if r.fresh(now) {
		t.Fatal("fresh without any read")
	}
	r.reads.Add(1)
	if now += w / 10; !r.fresh(now) {
		t.Fatal("not fresh right after a read that followed a check")
	}
	// No read since: still fresh while the read is recent (the next
	// checkout after IsValid), not once the window has passed.
	if now += w / 2; !r.fresh(now) {
		t.Fatal("not fresh: the read is still recent")
	}
	if now += w; r.fresh(now) {
		t.Fatal("fresh although the last read is older than the window")
	}
	// A read after a check made longer ago than the window: its age is
	// unknown, so the check peeks.
	now += 2 * w
	r.reads.Add(1)
	if now += w / 10; r.fresh(now) {
		t.Fatal("fresh although the check before the read is older than the window")
	}
	// Steady use: a read between every two checks, each w/2 apart.
	for i := 0; i < 4; i++ {
		r.reads.Add(1)
		if now += w / 2; !r.fresh(now) {
			t.Fatalf("steady use, check %d: not fresh", i)
		}
	}
}

// trackedPair returns pgfast's tracked socket on the client end of a
// loopback TCP connection, and the server end.
func trackedPair(t *testing.T) (*trackedConn, net.Conn) {
	t.Helper()
	c, s := testkit.LoopbackPair(t)
	book := NewBook(nil)
	addr := netip.MustParseAddrPort(c.RemoteAddr().String())
	book.attemptStarted(addr)
	tc := book.attemptDone(addr, c, nil).(*trackedConn)
	t.Cleanup(func() { tc.Close(); s.Close() })
	return tc, s
}

// reply has the server send one byte and the client read it.
func reply(t *testing.T, tc *trackedConn, s net.Conn) {
	t.Helper()
	if _, err := s.Write([]byte("Z")); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetReadDeadline(time.Time{})
}

// TestCheckoutSkipsPeekOnlyWhileInUse: on a real socket, a checkout right
// after a reply skips the system call; a socket whose last reply is older
// than the window, and one pgfast doomed or shut down, get the full check.
func TestCheckoutSkipsPeekOnlyWhileInUse(t *testing.T) {
	ctx := context.Background()
	t.Run("dead socket idle past the window is caught", func(t *testing.T) {
		tc, s := trackedPair(t)
		_ = Checkout(ctx, tc)
		reply(t, tc, s)
		s.Close()
		time.Sleep(20 * time.Millisecond) // let loopback deliver; > window
		if err := Checkout(ctx, tc); !errors.Is(err, driver.ErrBadConn) {
			t.Fatalf("checkout after the server closed: %v, want driver.ErrBadConn", err)
		}
		if Alive(tc) {
			t.Fatal("alive after the server closed")
		}
	})
	t.Run("in use skips the peek", func(t *testing.T) {
		tc, s := trackedPair(t)
		_ = Checkout(ctx, tc)
		reply(t, tc, s)
		// A pending ErrorResponse would fail a full check: passing shows
		// that none was made.
		if _, err := s.Write([]byte("E")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		// As if the reply were this recent; a few tries, in case this
		// goroutine is descheduled for longer than the window.
		var err error
		for try := 0; try < 5; try++ {
			tc.recent.reads.Add(1)
			tc.recent.checkedAt.Store(monoNow())
			if err = Checkout(ctx, tc); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("checkout right after a reply: %v (a system call was made)", err)
		}
	})
	t.Run("doomed and shut down sockets are always checked", func(t *testing.T) {
		for _, mark := range []func(*trackedConn){
			func(tc *trackedConn) { tc.doomed.Store(true) },
			func(tc *trackedConn) { tc.shutdown() },
		} {
			tc, s := trackedPair(t)
			_ = Checkout(ctx, tc)
			reply(t, tc, s)
			mark(tc)
			tc.recent.checkedAt.Store(monoNow())
			if err := Checkout(ctx, tc); !errors.Is(err, driver.ErrBadConn) {
				t.Fatalf("checkout of a doomed or shut down socket: %v, want driver.ErrBadConn", err)
			}
		}
	})
	t.Run("sweep always peeks", func(t *testing.T) {
		tc, s := trackedPair(t)
		_ = Checkout(ctx, tc)
		reply(t, tc, s)
		s.Close()
		time.Sleep(20 * time.Millisecond)
		tc.recent.checkedAt.Store(monoNow())
		tc.book.sweep(tc.addr, nil)
		if !tc.evicted.Load() {
			t.Fatal("the sweep left a socket its server closed")
		}
	})
}

// TestReadSinceCheckRule: pgfast-pq's IsValid skips pgfast's check only for
// pgfast's socket, not doomed, shut down or closed, that read from its server
// since its previous check; it leaves the check's record alone, so that the
// next checkout still dates that read from the check before it.
func TestReadSinceCheckRule(t *testing.T) {
	tc, srv := trackedPair(t)
	reply := func() {
		t.Helper()
		if _, err := srv.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := tc.Read(b[:]); err != nil {
			t.Fatal(err)
		}
	}
	if ReadSinceCheck(&net.TCPConn{}) {
		t.Fatal("a socket pgfast did not make counts as read since its check")
	}
	const w = int64(recentReadWindow)
	now := int64(time.Hour)
	tc.recent.fresh(now) // the checkout check (ResetSession)
	if ReadSinceCheck(tc) {
		t.Fatal("read since check, with no read")
	}
	reply()
	for i := 0; i < 2; i++ { // twice: it records nothing
		if !ReadSinceCheck(tc) {
			t.Fatalf("call %d: a reply read since the check does not count", i+1)
		}
	}
	// A long query: the next checkout, long after the check that preceded
	// the reply, peeks (the reply's age is only known to be below that).
	if tc.recent.fresh(now + 10*w) {
		t.Fatal("the next checkout took a reply read after an old check as recent")
	}
	// A short one: the next checkout skips.
	now += 20 * w
	tc.recent.fresh(now)
	reply()
	if !ReadSinceCheck(tc) {
		t.Fatal("a reply read since the check does not count")
	}
	if !tc.recent.fresh(now + w/10) {
		t.Fatal("the next checkout, right after a reply, did not skip")
	}
	reply()
	tc.doomed.Store(true)
	if ReadSinceCheck(tc) {
		t.Fatal("a doomed socket skipped the check")
	}
	tc.doomed.Store(false)
	tc.evicted.Store(true)
	if ReadSinceCheck(tc) {
		t.Fatal("a socket pgfast shut down skipped the check")
	}
}

// TestAnsweredSinceRule: answered I/O counts from the first checkout after
// the connector's failure count moved (the start of a Down): that checkout
// only marks the reads; a later one that finds more reads is the proof,
// while the count stays put; reads from before the count moves again (a new
// Down) do not count.
func TestAnsweredSinceRule(t *testing.T) {
	var r readRecency
	const down1, down2 = 1, 2
	r.reads.Add(3) // the tail of replies from before the Down
	if r.answeredSince(down1) {
		t.Fatal("the first checkout after Down proved the server: it only marks the reads")
	}
	if r.answeredSince(down1) {
		t.Fatal("a checkout with no read since the mark proved the server")
	}
	r.reads.Add(1) // the server answered a request sent after the mark
	if !r.answeredSince(down1) {
		t.Fatal("a read since the mark, within the same Down, did not count")
	}
	if !r.answeredSince(down1) {
		t.Fatal("a later checkout in the same Down lost the answered read")
	}
	if r.answeredSince(down2) {
		t.Fatal("answered I/O from before a new Down counted")
	}
}

package pgfast

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

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
	if readSinceCheck(&net.TCPConn{}) {
		t.Fatal("a socket pgfast did not make counts as read since its check")
	}
	const w = int64(recentReadWindow)
	now := int64(time.Hour)
	tc.recent.fresh(now) // the checkout check (ResetSession)
	if readSinceCheck(tc) {
		t.Fatal("read since check, with no read")
	}
	reply()
	for i := 0; i < 2; i++ { // twice: it records nothing
		if !readSinceCheck(tc) {
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
	if !readSinceCheck(tc) {
		t.Fatal("a reply read since the check does not count")
	}
	if !tc.recent.fresh(now + w/10) {
		t.Fatal("the next checkout, right after a reply, did not skip")
	}
	reply()
	tc.doomed.Store(true)
	if readSinceCheck(tc) {
		t.Fatal("a doomed socket skipped the check")
	}
	tc.doomed.Store(false)
	tc.evicted.Store(true)
	if readSinceCheck(tc) {
		t.Fatal("a socket pgfast shut down skipped the check")
	}
}

// TestPQIsValidSkipsCheckAfterReply: IsValid asks the core only when the
// connection read nothing since its checkout check, or pgfast doomed it.
func TestPQIsValidSkipsCheckAfterReply(t *testing.T) {
	tc, srv := trackedPair(t)
	var asked atomic.Int32
	dead := false
	core := &fakeCore{aliveFn: func(net.Conn) bool { asked.Add(1); return !dead }}
	pc := &PQConn{inner: &bareConn{}, sock: tc, core: core}

	tc.recent.fresh(monoNow()) // the checkout check
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
	tc.doomed.Store(true)
	dead = true
	if pc.IsValid() || asked.Load() != 2 {
		t.Fatalf("doomed: IsValid must ask the core and report false (asked %d)", asked.Load())
	}
}

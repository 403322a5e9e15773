package pgfast

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestCloseReturnsWhenTheBackendIgnoresItsContext: a backend stuck in a
// connection attempt that ignores ctx (lib/pq's prefer-standby loop with
// every host down) does not keep Close from returning; the attempt's
// connection, when it finally arrives, is closed.
func TestCloseReturnsWhenTheBackendIgnoresItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		fb := &fakeBackend{}
		fb.set(func(context.Context) error { <-release; return nil })
		c := newFakeConnector(t, fb, options{})
		time.Sleep(5 * time.Second) // the first attempt is stuck
		start := time.Now()
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(time.Minute):
			close(release)
			<-closed
			t.Fatal("Close did not return within a minute")
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Close took %s", took)
		}
		close(release) // the stuck attempts finish now
		synctest.Wait()
		if n := fb.open(); n != 0 {
			t.Errorf("%d connections of abandoned attempts left open", n)
		}
	})
}

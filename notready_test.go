package pgfast

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// TestNotReadyMessagesTellTheRealProgress: the message says an attempt is in
// flight, and for how long, instead of "no connection attempt has finished
// yet" or "no answer yet after 0s".
func TestNotReadyMessagesTellTheRealProgress(t *testing.T) {
	release := make(chan struct{})
	fb := &fakeBackend{}
	fb.set(func(ctx context.Context) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return netDown
	})
	c := newFakeConnector(t, fb, options{})
	defer c.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Ready(ctx)
	msg := err.Error()
	if !strings.Contains(msg, "in flight after") || strings.Contains(msg, "finished yet") {
		t.Errorf("Ready while the first attempt is in flight: %q", msg)
	}

	refused := &DialError{Host: "db", Port: "5432", Attempts: []AddrStats{{Status: "failed", Err: syscall.ECONNREFUSED}}}
	addrs := describeProgress([]AddrStats{{Addr: "127.0.0.1:5432", Status: "pending", Err: &netx.PendingError{Since: 0, Last: refused}}})
	line := (&NotReadyError{State: StateDown, Addrs: addrs, Cause: refused}).Error()
	t.Log(msg)
	t.Log(line)
	if strings.Contains(line, " 0s") || !strings.Contains(line, "refused") || !strings.Contains(line, "retrying") {
		t.Errorf("an address retried just now: %q", line)
	}
	if !errors.Is(err, ErrNotReady) {
		t.Errorf("%v is not ErrNotReady", err)
	}
}

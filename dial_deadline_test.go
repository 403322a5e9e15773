package pgfast

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDialContextCancelStopsEveryAttempt(t *testing.T) {
	dialTestLeakCheck(t)
	r := &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1", "::2")}
	d := newDialer(dialSettings{AttemptDelay: 10 * time.Millisecond}, r)
	hook := newDialTestHook(d, "::1", "127.0.0.1", "::2")

	ctx, cancel := context.WithCancel(context.Background())
	var canceledAt time.Time
	timer := time.AfterFunc(50*time.Millisecond, func() {
		canceledAt = time.Now()
		cancel()
	})
	defer timer.Stop()
	_, err := d.DialContext(ctx, "tcp", "db.example:5432")
	returned := time.Now()
	hook.assertSettled(t)

	if lag := returned.Sub(canceledAt); canceledAt.IsZero() || lag > 50*time.Millisecond {
		t.Errorf("returned %v after cancellation, want < 50ms", lag)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "db.example:5432") {
		t.Errorf("err = %q, want it to name the host", err)
	}
	if n := len(hook.calls()); n != 3 {
		t.Errorf("%d attempts started, want 3", n)
	}
	if len(hook.ended) != 3 {
		t.Errorf("%d attempts saw cancellation, want 3", len(hook.ended))
	}
}

func TestDialContextCancelCause(t *testing.T) {
	d := newDialer(dialSettings{}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")})
	newDialTestHook(d, "127.0.0.1")
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	_, err := d.DialContext(ctx, "tcp", "db.example:5432")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Errorf("err = %v, want context.Canceled and the cause", err)
	}
}

func TestDialContextDeadline(t *testing.T) {
	dialTestLeakCheck(t)
	d := newDialer(dialSettings{AttemptDelay: 10 * time.Millisecond}, &dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	hook := newDialTestHook(d, "::1", "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	_, err := d.DialContext(ctx, "tcp", "db.example:5432")
	hook.assertSettled(t)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestDialPerAddressDeadline(t *testing.T) {
	dialTestLeakCheck(t)
	const timeout = 100 * time.Millisecond
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	d := newDialer(dialSettings{ConnectTimeout: timeout, AttemptDelay: time.Hour},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	hook := newDialTestHook(d, "::1")

	start := time.Now()
	conn, err := d.DialContext(context.Background(), "tcp", "db.example:"+port)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if elapsed < timeout || elapsed > timeout+300*time.Millisecond {
		t.Errorf("connected after %v, want just over the %v connect timeout of the first address", elapsed, timeout)
	}
	if len(hook.ended) != 1 || !errors.Is(hook.ended[0], context.DeadlineExceeded) {
		t.Errorf("first attempt ended with %v, want its deadline", hook.ended)
	}
}

func TestDialEachAddressHasItsOwnDeadline(t *testing.T) {
	dialTestLeakCheck(t)
	const timeout, delay = 150 * time.Millisecond, 50 * time.Millisecond
	d := newDialer(dialSettings{ConnectTimeout: timeout, AttemptDelay: delay},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1")})
	hook := newDialTestHook(d, "::1", "127.0.0.1")

	start := time.Now()
	_, err := d.DialContext(context.Background(), "tcp", "db.example:5432")
	elapsed := time.Since(start)
	hook.assertSettled(t)

	// The second attempt starts delay after the first and times out
	// timeout after its own start.
	if min := delay + timeout; elapsed < min || elapsed > min+300*time.Millisecond {
		t.Errorf("failed after %v, want about %v", elapsed, min)
	}
	for addr, left := range hook.deadline {
		if left > timeout || left < timeout-50*time.Millisecond {
			t.Errorf("%s started with %v to its deadline, want %v", addr, left, timeout)
		}
	}
	var de *DialError
	if !errors.As(err, &de) || len(de.Attempts) != 2 {
		t.Fatalf("err = %v, want a DialError with 2 attempts", err)
	}
	for _, target := range []error{context.DeadlineExceeded, os.ErrDeadlineExceeded} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(err, %v) = false", target)
		}
	}
	var ne net.Error
	if !errors.As(de.Attempts[0].Err, &ne) || !ne.Timeout() {
		t.Errorf("attempt error %v is not a net.Error timeout", de.Attempts[0].Err)
	}
	want := "dial db.example:5432: [::1]:5432: i/o timeout after 150ms; 127.0.0.1:5432: i/o timeout after 150ms"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
}

func TestDialNoGoroutineLeak(t *testing.T) {
	dialTestLeakCheck(t)
	port := dialTestListener(t, "tcp", "127.0.0.1:0")
	refused := dialTestRefusedPort(t)
	d := newDialer(dialSettings{ConnectTimeout: 20 * time.Millisecond, AttemptDelay: 5 * time.Millisecond},
		&dialTestResolver{addrs: dialTestAddrs("::1", "127.0.0.1", "::2", "127.0.0.2")})
	hook := newDialTestHook(d, "::1", "::2", "127.0.0.2")
	for range 10 {
		if c, err := d.DialContext(context.Background(), "tcp", "db.example:"+port); err == nil {
			c.Close()
		} else {
			t.Fatal(err)
		}
		d.DialContext(context.Background(), "tcp", "db.example:"+refused)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Millisecond)
		d.DialContext(ctx, "tcp", "db.example:"+refused)
		cancel()
	}
	hook.assertSettled(t)
}

func BenchmarkDialLoopback(b *testing.B) {
	port := dialTestListener(b, "tcp", "127.0.0.1:0")
	addr := "127.0.0.1:" + port
	run := func(b *testing.B, dial func(ctx context.Context, network, address string) (net.Conn, error)) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			c, err := dial(ctx, "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	}
	b.Run("pgfast", func(b *testing.B) {
		d := newDialer(dialSettings{Keepalives: true, KeepalivesIdle: 10 * time.Second,
			KeepalivesInterval: 5 * time.Second, KeepalivesCount: 3, TCPUserTimeout: 25 * time.Second}, nil)
		run(b, d.DialContext)
	})
	b.Run("pgfast-resolved", func(b *testing.B) {
		d := newDialer(dialSettings{Keepalives: true}, &dialTestResolver{addrs: dialTestAddrs("127.0.0.1")})
		run(b, func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, "db.example:"+port)
		})
	})
	b.Run("net.Dialer", func(b *testing.B) {
		d := &net.Dialer{}
		run(b, d.DialContext)
	})
}

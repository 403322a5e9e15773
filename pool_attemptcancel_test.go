package pgfast

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfast/pgfast/internal/pgtest"
)

// slowFirstDial makes the first dial wait (its SYN "lost") for hold, or
// until its context ends; every other dial goes at once. dialled counts
// dials that reached the server.
type slowFirstDial struct {
	hold    time.Duration
	calls   atomic.Int32
	dialled atomic.Int32
}

func (s *slowFirstDial) wrap(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if s.calls.Add(1) == 1 {
			t := time.NewTimer(s.hold)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		nc, err := dial(ctx, network, addr)
		if err == nil {
			s.dialled.Add(1)
		}
		return nc, err
	}
}

// TestPoolAttemptCancelReachesConnect: a pool's first login whose SYN goes
// unanswered past attemptOverlap makes the loop start a second beside it;
// once one succeeds, the other is cancelled. A pool attempt is the pool's
// Acquire, and pgxpool connects with a context of its own (puddle keeps
// only the Acquire's values), so the cancel used to stop only the Acquire
// while its login went on: two sessions for one tenant where raw pgxpool,
// with the same lost SYN, opens one (the 1.3–1.5 logins per tenant of
// TestScaleCounts' NewPool row). Counted against raw pgxpool in the same
// test.
func TestPoolAttemptCancelReachesConnect(t *testing.T) {
	srv := server(t)
	dsn := withKV(srv.DSN(pgtest.TrustUser), "host=127.0.0.1", "connect_timeout=10")
	const hold = attemptOverlap + 1500*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Raw pgxpool: one session, however long its first SYN took.
	rawDial := &slowFirstDial{hold: hold}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pc.ConnConfig.DialFunc = rawDial.wrap((&net.Dialer{}).DialContext)
	raw, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Ping(ctx); err != nil {
		t.Fatalf("raw Ping: %v", err)
	}

	fastDial := &slowFirstDial{hold: hold}
	p := newPoolT(t, dsn, func(o *options) {
		o.testDial = func(d dialFunc) dialFunc { return fastDial.wrap(d) }
	})
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("NewPool Ping: %v", err)
	}
	// Past the held dial's end, and the login it would make.
	time.Sleep(hold + time.Second)
	c := PoolConnector(p)
	if c.State() != StateReady {
		t.Fatalf("state %v, want ready", c.State())
	}
	if fastDial.calls.Load() < 2 {
		t.Fatalf("the loop started %d attempt(s) beside a login without a handshake for %v, want 2", fastDial.calls.Load(), hold)
	}
	if got, want := p.Stat().TotalConns(), raw.Stat().TotalConns(); got > want {
		t.Errorf("NewPool holds %d sessions after one Ping, raw pgxpool %d: the cancelled attempt's login went on", got, want)
	}
	if got, want := fastDial.dialled.Load(), rawDial.dialled.Load(); got > want {
		t.Errorf("NewPool reached the server %d times, raw pgxpool %d", got, want)
	}
}

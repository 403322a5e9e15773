package pgfast

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pgfast/pgfast/internal/testkit"
)

// ---------------------------------------------------------------------------
// Helpers.

// foStates records the connector's state changes with their times.
type foStates struct {
	mu     sync.Mutex
	events []foStateEvent
}

type foStateEvent struct {
	st  State
	at  time.Time
	err error
}

func (s *foStates) record(st State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, foStateEvent{st, time.Now(), err})
}

// after returns how long after since the connector first entered st.
func (s *foStates) after(st State, since time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.st == st && !e.at.Before(since) {
			return e.at.Sub(since), true
		}
	}
	return 0, false
}

// foDur formats a measured duration, or "none" when there is none.
func foDur(d time.Duration, ok bool) string {
	if !ok {
		return "none"
	}
	return d.Round(time.Millisecond).String()
}

// foStartLoad starts the failover scenarios' workload (testkit.Load) with
// their hang limit, counting ErrNotReady as "not-ready".
func foStartLoad(db feDB, n int, insert string) *testkit.Load {
	return foStartLoadHang(db, n, insert, foHangLimit)
}

// foStartLoadHang is foStartLoad with another hang limit.
func foStartLoadHang(db feDB, n int, insert string, hang time.Duration) *testkit.Load {
	return testkit.StartLoadOn(db, n, insert, testkit.LoadOptions{
		HangLimit: hang,
		NotReady:  func(err error) bool { return errors.Is(err, ErrNotReady) },
	})
}

// foStartRawLoad is the same workload on a raw baseline, each call bounded
// by hang (a raw driver may otherwise block for the kernel's TCP timeouts).
func foStartRawLoad(db feDB, n int, insert string, hang time.Duration) *testkit.Load {
	return testkit.StartLoadOn(db, n, insert, testkit.LoadOptions{HangLimit: hang, CallTimeout: hang})
}

// foLookupHost is pgx's LookupFunc on the suite's resolver (it reads the
// hosts file on every lookup), for the raw baseline of failover-dns.
func foLookupHost(r *testkit.HostsResolver) func(ctx context.Context, host string) ([]string, error) {
	return func(ctx context.Context, host string) ([]string, error) {
		addrs, err := r.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(addrs))
		for i, a := range addrs {
			out[i] = a.String()
		}
		return out, nil
	}
}

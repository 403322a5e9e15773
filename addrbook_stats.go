package pgfast

import (
	"slices"
	"time"
)

// stats lists every address, in address order.
func (b *addrBook) stats() []AddrStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]AddrStats, 0, len(b.addrs))
	for addr, e := range b.addrs {
		st := "up"
		switch {
		case e.pending > 0 && len(e.conns) == 0 && e.err == nil:
			st = "pending"
		case e.bad && e.gen > 0 && len(e.conns) == 0:
			st = "evicted"
		case e.err != nil:
			st = "failed"
		}
		out = append(out, AddrStats{Addr: addr.String(), Host: e.host, Generation: e.gen, Status: st,
			OpenConns: len(e.conns), Err: e.err, Since: e.since})
	}
	slices.SortFunc(out, func(x, y AddrStats) int { return compareStrings(x.Addr, y.Addr) })
	return out
}

// progress describes each address's latest outcome for an error message,
// including attempts still in flight.
func (b *addrBook) progress(now time.Time) []AddrStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []AddrStats
	for addr, e := range b.addrs {
		switch {
		case e.pending > 0:
			out = append(out, AddrStats{Addr: addr.String(), Status: "pending", Err: &pendingError{since: now.Sub(e.since), last: e.err}})
		case e.err != nil:
			out = append(out, AddrStats{Addr: addr.String(), Status: "failed", Err: e.err})
		}
	}
	slices.SortFunc(out, func(x, y AddrStats) int { return compareStrings(x.Addr, y.Addr) })
	return out
}

func compareStrings(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// pendingError stands for an attempt that has not answered yet.
type pendingError struct {
	since time.Duration
	last  error
}

func (e *pendingError) Error() string {
	s := "no answer yet after " + e.since.Round(time.Millisecond).String()
	if e.last != nil {
		s += " (before: " + e.last.Error() + ")"
	}
	return s
}

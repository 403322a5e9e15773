package pgfast

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Helpers.

// foHostsResolver resolves names from /etc/hosts (inside the namespace, the
// file netfault.SetHosts rewrites), reading it on every call: Go's own
// resolver caches /etc/hosts for up to 5 s, which would hide a repointing.
type foHostsResolver struct {
	lookups atomic.Int64
}

func (r *foHostsResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	// SetHosts rewrites the file in place: a reader may catch it empty.
	for attempt := 0; ; attempt++ {
		addrs, err := foParseHosts("/etc/hosts", network, host)
		if err != nil || len(addrs) > 0 || attempt == 3 {
			if err == nil && len(addrs) == 0 {
				err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			return addrs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// foParseHosts returns host's addresses in a hosts(5) file, in file order,
// limited to network's family ("ip", "ip4", "ip6").
func foParseHosts(path, network, host string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		switch {
		case network == "ip4" && !addr.Unmap().Is4(), network == "ip6" && !addr.Is6():
			continue
		}
		for _, name := range fields[1:] {
			if strings.EqualFold(name, host) {
				out = append(out, addr)
				break
			}
		}
	}
	return out, nil
}

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

// foLogger sends the connector's log to the test's log until the test ends.
func foLogger(t *testing.T) *slog.Logger {
	w := &foLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type foLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *foLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// foSQLState returns err's SQLSTATE (both backends' error types have one).
func foSQLState(err error) string {
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return coded.SQLState()
	}
	return ""
}

// foShort is err's message, cut to a log-friendly length.
func foShort(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// foWaitFor polls cond every 5 ms until it holds or limit passes.
func foWaitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// foWaitGroup waits for wg within limit.
func foWaitGroup(wg *sync.WaitGroup, limit time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

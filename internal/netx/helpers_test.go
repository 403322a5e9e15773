package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// dialTestResolver is a Resolver answering with fixed addresses and
// counting its calls.
type dialTestResolver struct {
	addrs []netip.Addr
	err   error

	mu       sync.Mutex
	calls    int
	networks []string
}

func (r *dialTestResolver) LookupNetIP(_ context.Context, network, _ string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.networks = append(r.networks, network)
	return slices.Clone(r.addrs), r.err
}

func (r *dialTestResolver) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// dialTestAddrs parses IP addresses for a dialTestResolver.
func dialTestAddrs(ips ...string) []netip.Addr {
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = netip.MustParseAddr(ip)
	}
	return out
}

// dialTestNeedIPv6 skips the test when ::1 is not usable.
func dialTestNeedIPv6(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
}

// dialTestLeakCheck fails the test if goroutines it started outlive it.
// Call it first so that its check runs after every other cleanup.
func dialTestLeakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// dialTestHook wraps a dialer's real dialAddr: addresses in hang block
// until their context ends; it tracks how many calls are still running
// and the context error each hanging call saw.
type dialTestHook struct {
	real    func(ctx context.Context, network, addr string) (net.Conn, error)
	hang    map[string]bool // host part of addr
	running atomic.Int32

	mu       sync.Mutex
	order    []string
	ended    []error
	deadline map[string]time.Duration // deadline minus call time, per addr
}

func newDialTestHook(d *Dialer, hang ...string) *dialTestHook {
	h := &dialTestHook{real: d.dialAddr, hang: map[string]bool{}, deadline: map[string]time.Duration{}}
	for _, a := range hang {
		h.hang[a] = true
	}
	d.dialAddr = h.dial
	return h
}

func (h *dialTestHook) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	h.running.Add(1)
	defer h.running.Add(-1)
	host, _, _ := net.SplitHostPort(addr)
	h.mu.Lock()
	h.order = append(h.order, addr)
	if dl, ok := ctx.Deadline(); ok {
		h.deadline[addr] = time.Until(dl)
	}
	h.mu.Unlock()
	if !h.hang[host] {
		if host != "127.0.0.1" && host != "::1" {
			return nil, errors.New("test dials only 127.0.0.1 and ::1, not " + host)
		}
		return h.real(ctx, network, addr)
	}
	<-ctx.Done()
	h.mu.Lock()
	h.ended = append(h.ended, ctx.Err())
	h.mu.Unlock()
	return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
}

func (h *dialTestHook) calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.order)
}

// assertSettled checks that no dial attempt is still running.
func (h *dialTestHook) assertSettled(t *testing.T) {
	t.Helper()
	if n := h.running.Load(); n != 0 {
		t.Errorf("%d dial attempts still running after DialContext returned", n)
	}
}

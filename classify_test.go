package pgfast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// sampleOf returns a TCP_INFO reader that always answers s.
func sampleOf(s tcpSample) func() (tcpSample, bool) {
	return func() (tcpSample, bool) { return s, true }
}

// TestClassifyEvidence: each error of item 1 of issue 10 gets its level, with
// and without a TCP_INFO snapshot, and the same event twice (or seen by
// another goroutine, wrapped differently) gets the same verdict.
func TestClassifyEvidence(t *testing.T) {
	const window = 10 * time.Second
	opErr := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	ackedRecently := sampleOf(tcpSample{lastAck: 2 * time.Second, lastDataRecv: 40 * time.Second, probes: 1})
	silent := sampleOf(tcpSample{lastAck: 25 * time.Second, lastDataRecv: 25 * time.Second, probes: 3})
	for _, tc := range []struct {
		name string
		err  error
		info func() (tcpSample, bool)
		want verdict
	}{
		{"RST (terminated backend)", opErr("read", syscall.ECONNRESET), nil, connLevel},
		{"EPIPE", opErr("write", syscall.EPIPE), nil, connLevel},
		{"ECONNABORTED", opErr("read", syscall.ECONNABORTED), nil, connLevel},
		{"EOF", io.EOF, nil, connLevel},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), nil, connLevel},
		{"server closing (ErrorResponse waiting)", errServerClosing, nil, connLevel},
		{"ETIMEDOUT, peer ACKed 2s ago (zero-window stall ended by tcp_user_timeout)", opErr("write", syscall.ETIMEDOUT), ackedRecently, connLevel},
		{"ETIMEDOUT, peer silent 25s", opErr("read", syscall.ETIMEDOUT), silent, hostLevel},
		{"ETIMEDOUT, zero window, last probe answer long ago (the abort of a stall)", opErr("write", syscall.ETIMEDOUT),
			sampleOf(tcpSample{lastAck: 25 * time.Second, lastDataRecv: 25 * time.Second, zeroWindow: true}), connLevel},
		{"ETIMEDOUT, no TCP_INFO", opErr("read", syscall.ETIMEDOUT), nil, hostLevel},
		{"ETIMEDOUT, TCP_INFO unreadable", opErr("read", syscall.ETIMEDOUT), func() (tcpSample, bool) { return tcpSample{}, false }, hostLevel},
		{"EHOSTUNREACH", opErr("read", syscall.EHOSTUNREACH), nil, hostLevel},
		{"ENETUNREACH", opErr("write", syscall.ENETUNREACH), nil, hostLevel},
		{"peer silent (watcher)", &peerSilentError{silent: 11 * time.Second, window: window}, nil, hostLevel},
		{"a deadline the driver set for a context", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, nil, noEvidence},
		{"closed by the driver", &net.OpError{Op: "read", Err: net.ErrClosed}, nil, noEvidence},
		{"shut down by pgfast", errConnEvicted, nil, noEvidence},
		{"nil", nil, nil, noEvidence},
	} {
		for i := range 2 {
			if got := classify(tc.err, tc.info, window); got != tc.want {
				t.Errorf("%s (run %d): %v, want %v", tc.name, i+1, got, tc.want)
			}
		}
		if tc.err != nil {
			wrapped := fmt.Errorf("another goroutine's view: %w", tc.err)
			if got := classify(wrapped, tc.info, window); got != tc.want {
				t.Errorf("%s, wrapped: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}

// TestSilenceRule: the watcher's judgement of TCP_INFO samples over time.
func TestSilenceRule(t *testing.T) {
	const window = 10 * time.Second
	t0 := time.Unix(1000, 0)
	type step struct {
		at   time.Duration // since t0
		s    tcpSample
		dead bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"idle in a query, keep-alive probe unanswered (blackhole)", []step{
			{9500 * time.Millisecond, tcpSample{lastAck: 9500 * time.Millisecond, lastDataRecv: 9500 * time.Millisecond}, false},
			{10 * time.Second, tcpSample{lastAck: 10 * time.Second, lastDataRecv: 10 * time.Second, probes: 1}, false},
			{10500 * time.Millisecond, tcpSample{lastAck: 10500 * time.Millisecond, lastDataRecv: 10500 * time.Millisecond, probes: 1}, false},
			{11 * time.Second, tcpSample{lastAck: 11 * time.Second, lastDataRecv: 11 * time.Second, probes: 1}, true},
		}},
		{"zero window, peer ACKs every probe (lock wait)", []step{
			{10 * time.Second, tcpSample{lastAck: 6 * time.Second, lastDataRecv: 30 * time.Second}, false},
			{20 * time.Second, tcpSample{lastAck: 12800 * time.Millisecond, lastDataRecv: 40 * time.Second, probes: 1}, false},
			{20500 * time.Millisecond, tcpSample{lastAck: 0, lastDataRecv: 40 * time.Second}, false},
			{45 * time.Second, tcpSample{lastAck: 25 * time.Second, lastDataRecv: 65 * time.Second, probes: 1}, false},
			{45500 * time.Millisecond, tcpSample{lastAck: 10 * time.Millisecond, lastDataRecv: 65 * time.Second}, false},
			{90 * time.Second, tcpSample{lastAck: 44 * time.Second, lastDataRecv: 110 * time.Second}, false},
		}},
		{"zero window, peer dies: probes go unanswered", []step{
			{10 * time.Second, tcpSample{lastAck: 12 * time.Second, lastDataRecv: 30 * time.Second, probes: 1}, false},
			{10500 * time.Millisecond, tcpSample{lastAck: 12500 * time.Millisecond, lastDataRecv: 30 * time.Second, probes: 1}, false},
			{11 * time.Second, tcpSample{lastAck: 13 * time.Second, lastDataRecv: 31 * time.Second, probes: 1}, true},
		}},
		{"query sent into a blackhole: data unacked", []step{
			{500 * time.Millisecond, tcpSample{lastAck: 60 * time.Second, lastDataRecv: 60 * time.Second, lastDataSent: 500 * time.Millisecond, unacked: 1}, false},
			{9500 * time.Millisecond, tcpSample{lastAck: 69 * time.Second, lastDataRecv: 69 * time.Second, lastDataSent: 9500 * time.Millisecond, unacked: 1}, false},
			{10 * time.Second, tcpSample{lastAck: 70 * time.Second, lastDataRecv: 70 * time.Second, lastDataSent: 10 * time.Second, unacked: 1}, false},
			{10500 * time.Millisecond, tcpSample{lastAck: 70500 * time.Millisecond, lastDataRecv: 70500 * time.Millisecond, lastDataSent: 200 * time.Millisecond, unacked: 1}, true},
		}},
		{"big COPY to a live server: unacked all the time, ACKs flowing", []step{
			{10 * time.Second, tcpSample{lastAck: 1 * time.Millisecond, lastDataRecv: 50 * time.Second, lastDataSent: 0, unacked: 40}, false},
			{20 * time.Second, tcpSample{lastAck: 3 * time.Millisecond, lastDataRecv: 60 * time.Second, lastDataSent: 0, unacked: 40}, false},
		}},
		{"a long-idle connection sends a query; the ACK is slow (900ms)", []step{
			{0, tcpSample{lastAck: 600 * time.Second, lastDataRecv: 600 * time.Second, lastDataSent: 0, unacked: 1}, false},
			{500 * time.Millisecond, tcpSample{lastAck: 600 * time.Second, lastDataRecv: 600 * time.Second, lastDataSent: 500 * time.Millisecond, unacked: 1}, false},
			{time.Second, tcpSample{lastAck: 100 * time.Millisecond, lastDataRecv: 100 * time.Millisecond}, false},
		}},
		{"keep-alive answered after 800ms (slow path)", []step{
			{10500 * time.Millisecond, tcpSample{lastAck: 10500 * time.Millisecond, lastDataRecv: 10500 * time.Millisecond, probes: 1}, false},
			{11 * time.Second, tcpSample{lastAck: 200 * time.Millisecond, lastDataRecv: 11 * time.Second}, false},
		}},
	} {
		var w silence
		for i, st := range tc.steps {
			now := t0.Add(st.at)
			_, dead := w.observe(now, st.s, window)
			if dead != st.dead {
				t.Errorf("%s, step %d (%v): dead=%v, want %v", tc.name, i+1, st.at, dead, st.dead)
			}
		}
	}
}

// TestCallerDeadlineDoesNotMarkAddressBad: a caller whose context ends
// during a dial (its own deadline, shorter than connect_timeout) is not the
// server's fault: the address keeps its status and its place in the order.
// The attempt's own connect_timeout still marks it bad.
func TestCallerDeadlineDoesNotMarkAddressBad(t *testing.T) {
	blackhole := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
	}
	target := netip.MustParseAddrPort("127.0.0.9:5432")

	d := newDialer(dialSettings{ConnectTimeout: 2 * time.Second}, nil)
	d.dialAddr = blackhole
	d.book = newAddrBook()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := d.DialContext(ctx, "tcp", target.String())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with a 50ms context: %v, want context.DeadlineExceeded", err)
	}
	if d.book.isBad(target) {
		t.Errorf("the caller's own deadline marked %s bad", target)
	}
	for _, a := range d.book.stats() {
		if a.Err != nil || a.Status == "failed" {
			t.Errorf("Stats after the caller's deadline: %+v, want no failure", a)
		}
	}
	if p := d.book.progress(time.Now()); len(p) != 0 {
		t.Errorf("progress after the caller's deadline: %v, want nothing (no attempt pending, no failure)", p)
	}

	d2 := newDialer(dialSettings{ConnectTimeout: 50 * time.Millisecond}, nil)
	d2.dialAddr = blackhole
	d2.book = newAddrBook()
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	_, err = d2.DialContext(ctx, "tcp", target.String())
	cancel()
	if err == nil || !d2.book.isBad(target) {
		t.Errorf("connect_timeout reached (%v): address bad=%v, want true", err, d2.book.isBad(target))
	}
}

// TestEveryErrorIsActedOn: a socket's later errors count as much as its
// first. Whether the reader's EOF or the writer's EHOSTUNREACH is seen first,
// the address is evicted (once), and a connection-level error alone never
// evicts.
func TestEveryErrorIsActedOn(t *testing.T) {
	unreachable := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EHOSTUNREACH)}
	for _, order := range [][]error{{io.EOF, unreachable}, {unreachable, io.EOF}, {io.EOF, io.EOF}} {
		b := newAddrBook()
		var evictions []error
		b.onEvict = func(_ netip.AddrPort, cause error, how eviction) {
			if !how.down {
				t.Errorf("eviction %v is not Down", how)
			}
			evictions = append(evictions, cause)
		}
		addr := netip.MustParseAddrPort("127.0.0.1:5432")
		b.attemptStarted(addr)
		client, server := net.Pipe()
		tc := b.attemptDone(addr, client, nil).(*trackedConn)
		for _, err := range order {
			tc.failed(err)
		}
		want := 1
		if order[0] == io.EOF && order[1] == io.EOF {
			want = 0
		}
		if len(evictions) != want {
			t.Errorf("errors %v: %d evictions (%v), want %d", order, len(evictions), evictions, want)
		}
		client.Close()
		server.Close()
	}
}

//go:build linux

package netx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// canPeek: Linux has recv with MSG_PEEK and MSG_DONTWAIT.
const canPeek = true

// peekState is the syscall-only liveness check: one non-blocking MSG_PEEK.
// Dead: EOF, reset, a kernel-killed socket (ETIMEDOUT pending), or a first
// unsolicited byte 'E': an idle PostgreSQL connection only gets an
// ErrorResponse when the server is about to terminate it. TLS records never
// start with 0x45, so this holds under TLS too.
func peekState(rc syscall.RawConn) (bool, error) {
	return newPeeker(rc).state()
}

// peeker runs peekState without allocating: the Control callback and its
// scratch space are made once at registration, not at every checkout.
type peeker struct {
	mu   sync.Mutex // one check at a time (a checkout and a sweep may meet)
	rc   syscall.RawConn
	recv func(fd uintptr)
	buf  [1]byte
	n    int
	err  error
}

func newPeeker(rc syscall.RawConn) *peeker {
	p := &peeker{rc: rc}
	p.recv = p.peek
	return p
}

func (p *peeker) peek(fd uintptr) {
	p.n, p.err = 0, nil
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.buf[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		p.err = errno
		return
	}
	p.n = int(n)
}

func (p *peeker) state() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cerr := p.rc.Control(p.recv); cerr != nil {
		return false, cerr // the socket is closed
	}
	switch {
	case errors.Is(p.err, unix.EAGAIN) || errors.Is(p.err, unix.EINTR):
		return true, nil // nothing to read: the normal idle state
	case p.err != nil:
		return false, p.err // ECONNRESET, ETIMEDOUT, ...
	case p.n == 0:
		return false, io.EOF
	case p.buf[0] == 'E':
		return false, errServerClosing
	}
	return true, nil
}

// tcpInfoOf reads tc's TCP_INFO; false without an fd or when closed.
func tcpInfoOf(tc *trackedConn) (tcpSample, bool) {
	if tc.peek == nil {
		return tcpSample{}, false
	}
	var (
		info *unix.TCPInfo
		err  error
	)
	if cerr := tc.peek.rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		return tcpSample{}, false
	}
	return tcpSample{
		lastAck:      time.Duration(info.Last_ack_recv) * time.Millisecond,
		lastDataRecv: time.Duration(info.Last_data_recv) * time.Millisecond,
		lastDataSent: time.Duration(info.Last_data_sent) * time.Millisecond,
		unacked:      info.Unacked,
		probes:       info.Probes,
		backoff:      info.Backoff,
		zeroWindow:   info.Snd_wnd == 0,
		rtt:          time.Duration(info.Rtt) * time.Microsecond,
		retransmits:  info.Retransmits,
		totalRetrans: info.Total_retrans,
	}, true
}

const watchesPeers = true

// configureSocketOptions applies s before connect(), so TCP_USER_TIMEOUT
// also bounds the SYN phase.
func configureSocketOptions(nd *net.Dialer, s Settings) {
	nd.ControlContext = func(_ context.Context, network, _ string, rc syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		return setSocketOptions(rc, s)
	}
}

func setSocketOptions(rc syscall.RawConn, s Settings) error {
	var sockErr error
	ctrlErr := rc.Control(func(fd uintptr) {
		sockErr = setTCPOptions(int(fd), s)
	})
	if ctrlErr != nil {
		return ctrlErr
	}
	return sockErr
}

// setTCPOptions sets SO_KEEPALIVE (explicitly off when disabled), the
// keep-alive timings asked for, and TCP_USER_TIMEOUT.
func setTCPOptions(fd int, s Settings) error {
	keepalive := 0
	if s.Keepalives {
		keepalive = 1
	}
	if err := setIntOpt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, "SO_KEEPALIVE", keepalive); err != nil {
		return err
	}
	if s.Keepalives {
		if err := setKeepaliveTimings(fd, s); err != nil {
			return err
		}
	}
	if ms := CeilUnits(s.TCPUserTimeout, time.Millisecond); ms > 0 {
		return setIntOpt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", ms)
	}
	return nil
}

// setKeepaliveTimings sets TCP_KEEPIDLE/KEEPINTVL/KEEPCNT, zero ones left alone.
func setKeepaliveTimings(fd int, s Settings) error {
	opts := []struct {
		opt   int
		name  string
		value int
	}{
		{unix.TCP_KEEPIDLE, "TCP_KEEPIDLE", CeilUnits(s.KeepalivesIdle, time.Second)},
		{unix.TCP_KEEPINTVL, "TCP_KEEPINTVL", CeilUnits(s.KeepalivesInterval, time.Second)},
		{unix.TCP_KEEPCNT, "TCP_KEEPCNT", clampInt32(s.KeepalivesCount)},
	}
	for _, o := range opts {
		if o.value <= 0 {
			continue // OS default
		}
		if err := setIntOpt(fd, unix.IPPROTO_TCP, o.opt, o.name, o.value); err != nil {
			return err
		}
	}
	return nil
}

func setIntOpt(fd, level, opt int, name string, value int) error {
	if err := unix.SetsockoptInt(fd, level, opt, value); err != nil {
		return os.NewSyscallError("setsockopt "+name, err)
	}
	return nil
}

func clampInt32(n int) int {
	return int(min(int64(n), math.MaxInt32))
}

// ReadSocketOptions reads the TCP options of the socket behind c (a
// *net.TCPConn, or a wrapper exposing NetConn, such as *tls.Conn) with
// getsockopt. Keep-alive timings are reported even when keep-alive is off.
func ReadSocketOptions(c net.Conn) (SocketOptions, error) {
	rc, err := socketConnOf(c)
	if err != nil {
		return SocketOptions{}, err
	}
	var opts SocketOptions
	var sockErr error
	ctrlErr := rc.Control(func(fd uintptr) {
		opts, sockErr = getTCPOptions(int(fd))
	})
	if ctrlErr != nil {
		return SocketOptions{}, fmt.Errorf("pgfast: reading socket options: %w", ctrlErr)
	}
	if sockErr != nil {
		return SocketOptions{}, fmt.Errorf("pgfast: reading socket options: %w", sockErr)
	}
	return opts, nil
}

func getTCPOptions(fd int) (SocketOptions, error) {
	var vals [5]int
	opts := []struct {
		level, opt int
		name       string
	}{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, "SO_KEEPALIVE"},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, "TCP_KEEPIDLE"},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, "TCP_KEEPINTVL"},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, "TCP_KEEPCNT"},
		{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT"},
	}
	for i, o := range opts {
		v, err := unix.GetsockoptInt(fd, o.level, o.opt)
		if err != nil {
			return SocketOptions{}, os.NewSyscallError("getsockopt "+o.name, err)
		}
		vals[i] = v
	}
	return SocketOptions{
		Keepalive:          vals[0] != 0,
		KeepalivesIdle:     time.Duration(vals[1]) * time.Second,
		KeepalivesInterval: time.Duration(vals[2]) * time.Second,
		KeepalivesCount:    vals[3],
		TCPUserTimeout:     time.Duration(vals[4]) * time.Millisecond,
	}, nil
}

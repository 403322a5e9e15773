//go:build linux

package pgfast

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgfast/pgfast/internal/diag"
)

// configureSocketOptions makes nd apply s to every TCP socket before
// connect(), so that TCP_USER_TIMEOUT also bounds the SYN phase.
func configureSocketOptions(nd *net.Dialer, s dialSettings) {
	nd.ControlContext = func(_ context.Context, network, _ string, rc syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		return setSocketOptions(rc, s)
	}
}

// setSocketOptions applies s to the socket behind rc.
func setSocketOptions(rc syscall.RawConn, s dialSettings) error {
	var sockErr error
	ctrlErr := rc.Control(func(fd uintptr) {
		sockErr = setTCPOptions(int(fd), s)
	})
	if ctrlErr != nil {
		return ctrlErr
	}
	return sockErr
}

// setTCPOptions sets SO_KEEPALIVE (explicitly off when keep-alives are
// disabled), the keep-alive timings s asks for, and TCP_USER_TIMEOUT.
func setTCPOptions(fd int, s dialSettings) error {
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
	if ms := ceilUnits(s.TCPUserTimeout, time.Millisecond); ms > 0 {
		return setIntOpt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", ms)
	}
	return nil
}

// setKeepaliveTimings sets TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT,
// leaving those that are zero at the OS default.
func setKeepaliveTimings(fd int, s dialSettings) error {
	opts := []struct {
		opt   int
		name  string
		value int
	}{
		{unix.TCP_KEEPIDLE, "TCP_KEEPIDLE", ceilUnits(s.KeepalivesIdle, time.Second)},
		{unix.TCP_KEEPINTVL, "TCP_KEEPINTVL", ceilUnits(s.KeepalivesInterval, time.Second)},
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

// setIntOpt sets one integer socket option, naming it in the error.
func setIntOpt(fd, level, opt int, name string, value int) error {
	if err := unix.SetsockoptInt(fd, level, opt, value); err != nil {
		return os.NewSyscallError("setsockopt "+name, err)
	}
	return nil
}

// ceilUnits returns d in whole units, rounding a partial unit up; it is 0
// for d <= 0 and at most math.MaxInt32 (the kernel rejects what it cannot
// hold rather than our conversion wrapping around).
func ceilUnits(d, unit time.Duration) int {
	if d <= 0 {
		return 0
	}
	n := d / unit
	if d%unit != 0 {
		n++
	}
	return clampInt32(int(n))
}

func clampInt32(n int) int {
	return int(min(int64(n), math.MaxInt32))
}

// readSocketOptions reads the TCP options of the socket behind c with
// getsockopt. c is a *net.TCPConn, or a connection that wraps one and
// exposes it through a NetConn() net.Conn method, such as *tls.Conn.
// The keep-alive timings are reported even when keep-alive is off; they are
// then the values the kernel would use.
func readSocketOptions(c net.Conn) (diag.SocketOptions, error) {
	rc, err := socketConnOf(c)
	if err != nil {
		return diag.SocketOptions{}, err
	}
	var opts diag.SocketOptions
	var sockErr error
	ctrlErr := rc.Control(func(fd uintptr) {
		opts, sockErr = getTCPOptions(int(fd))
	})
	if ctrlErr != nil {
		return diag.SocketOptions{}, fmt.Errorf("pgfast: reading socket options: %w", ctrlErr)
	}
	if sockErr != nil {
		return diag.SocketOptions{}, fmt.Errorf("pgfast: reading socket options: %w", sockErr)
	}
	return opts, nil
}

// getTCPOptions reads the options diag.SocketOptions holds from fd.
func getTCPOptions(fd int) (diag.SocketOptions, error) {
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
			return diag.SocketOptions{}, os.NewSyscallError("getsockopt "+o.name, err)
		}
		vals[i] = v
	}
	return diag.SocketOptions{
		Keepalive:          vals[0] != 0,
		KeepalivesIdle:     time.Duration(vals[1]) * time.Second,
		KeepalivesInterval: time.Duration(vals[2]) * time.Second,
		KeepalivesCount:    vals[3],
		TCPUserTimeout:     time.Duration(vals[4]) * time.Millisecond,
	}, nil
}

// socketConnOf finds the socket behind c, unwrapping NetConn() layers.
func socketConnOf(c net.Conn) (syscall.RawConn, error) {
	const maxDepth = 8 // guards against a NetConn that returns itself
	for range maxDepth {
		if sc, ok := c.(syscall.Conn); ok {
			return sc.SyscallConn()
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok || w.NetConn() == nil {
			break
		}
		c = w.NetConn()
	}
	return nil, fmt.Errorf("pgfast: reading socket options: %T does not expose a socket", c)
}

//go:build linux

package pgfast

import (
	"errors"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// peekState is the syscall-only liveness check: one non-blocking MSG_PEEK
// read, no network round trip. A socket is dead when the peer closed it
// (io.EOF), reset it, or the kernel killed it (keepalive or TCP_USER_TIMEOUT:
// the pending socket error, ETIMEDOUT), or when the server's first
// unsolicited byte is 'E': an idle PostgreSQL connection only receives an
// ErrorResponse when the server is about to terminate it (shutdown, admin
// command). TLS records never start with 'E' (0x45), so the check is sound
// for TLS too.
func peekState(rc syscall.RawConn) (bool, error) {
	var (
		buf  [1]byte
		n    int
		rerr error
	)
	if cerr := rc.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); cerr != nil {
		return false, cerr // the socket is closed
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EINTR):
		return true, nil // nothing to read: the normal idle state
	case rerr != nil:
		return false, rerr // ECONNRESET, ETIMEDOUT, ...
	case n == 0:
		return false, io.EOF
	case buf[0] == 'E':
		return false, errServerClosing
	}
	return true, nil
}

//go:build linux

package pgfast

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketAlive is the syscall-only liveness check: one non-blocking MSG_PEEK
// read, no network round trip. A socket is dead when the peer closed it (EOF),
// reset it, or the kernel killed it (keepalive or TCP_USER_TIMEOUT: the
// pending socket error, ETIMEDOUT), or when the server's first unsolicited
// byte is 'E': an idle PostgreSQL connection only receives an ErrorResponse
// when the server is about to terminate it (shutdown, admin command). TLS
// records never start with 'E' (0x45), so the check is sound for TLS too.
func socketAlive(rc syscall.RawConn) bool {
	var (
		buf   [1]byte
		n     int
		rerr  error
		alive bool
	)
	cerr := rc.Control(func(fd uintptr) {
		n, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	switch {
	case cerr != nil:
		alive = false // the socket is closed
	case errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EINTR):
		alive = true // nothing to read: the normal idle state
	case rerr != nil:
		alive = false // ECONNRESET, ETIMEDOUT, ...
	case n == 0:
		alive = false // EOF
	default:
		alive = buf[0] != 'E'
	}
	return alive
}

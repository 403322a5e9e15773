//go:build linux

package pgfast

import (
	"errors"
	"io"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// canPeek: Linux has recv with MSG_PEEK and MSG_DONTWAIT.
const canPeek = true

// peekState is the syscall-only liveness check: one non-blocking MSG_PEEK
// read, no network round trip. A socket is dead when the peer closed it
// (io.EOF), reset it, or the kernel killed it (keepalive or TCP_USER_TIMEOUT:
// the pending socket error, ETIMEDOUT), or when the server's first
// unsolicited byte is 'E': an idle PostgreSQL connection only receives an
// ErrorResponse when the server is about to terminate it (shutdown, admin
// command). TLS records never start with 'E' (0x45), so the check is sound
// for TLS too.
func peekState(rc syscall.RawConn) (bool, error) {
	return newPeeker(rc).state()
}

// peeker runs peekState on one socket again and again without allocating:
// the callback handed to RawConn.Control and its scratch space are made once,
// when the dialer registers the socket, instead of at every checkout.
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

// state reports whether the socket looks usable, and why not.
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

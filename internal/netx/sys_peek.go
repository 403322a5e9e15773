//go:build darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package netx

import (
	"errors"
	"io"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// canPeek: these systems have recv with MSG_PEEK and MSG_DONTWAIT.
const canPeek = true

// peekState is the syscall-only liveness check, as peekState on Linux.
func peekState(rc syscall.RawConn) (bool, error) {
	return newPeeker(rc).state()
}

// peeker is the check's per-socket state.
type peeker struct {
	mu  sync.Mutex // one check at a time (a checkout and a sweep may meet)
	rc  syscall.RawConn
	buf [1]byte
}

func newPeeker(rc syscall.RawConn) *peeker { return &peeker{rc: rc} }

func (p *peeker) state() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var (
		n   int
		err error
	)
	if cerr := p.rc.Control(func(fd uintptr) {
		n, _, err = unix.Recvfrom(int(fd), p.buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); cerr != nil {
		return false, cerr // the socket is closed
	}
	switch {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EINTR):
		return true, nil // nothing to read: the normal idle state
	case err != nil:
		return false, err // ECONNRESET, ETIMEDOUT, ...
	case n == 0:
		return false, io.EOF
	case p.buf[0] == 'E':
		return false, errServerClosing
	}
	return true, nil
}

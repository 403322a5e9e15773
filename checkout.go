package pgfast

import (
	"context"
	"crypto/tls"
	"database/sql/driver"
	"errors"
	"net"
	"syscall"
)

// errServerClosing is what the liveness check reports when an idle
// connection has an ErrorResponse waiting: the server is terminating it.
var errServerClosing = errors.New("server is closing the connection")

// rawConnOf returns the syscall.RawConn under a connection pgfast's dialer
// made, unwrapping TLS and pgfast's own wrapper.
func rawConnOf(nc net.Conn) (syscall.RawConn, bool) {
	for i := 0; i < 8; i++ {
		switch c := nc.(type) {
		case *tls.Conn:
			nc = c.NetConn()
			continue
		case *trackedConn:
			nc = c.Conn
			continue
		case syscall.Conn:
			rc, err := c.SyscallConn()
			return rc, err == nil
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
			continue
		}
		return nil, false
	}
	return nil, false
}

// trackedOf finds pgfast's wrapper under nc (TLS unwrapped).
func trackedOf(nc net.Conn) *trackedConn {
	for i := 0; i < 8 && nc != nil; i++ {
		switch c := nc.(type) {
		case *trackedConn:
			return c
		case *tls.Conn:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// writesOf returns how many Write calls on nc (a socket pgfast's dialer
// made, possibly under TLS) sent bytes so far, or 0 for another socket.
func writesOf(nc net.Conn) uint64 {
	if tc := trackedOf(nc); tc != nil {
		return tc.writes.Load()
	}
	return 0
}

// errEvicted is the liveness check's answer for a socket evicted softly.
var errEvicted = errors.New("connection evicted")

// socketState is the liveness check on nc: alive, or dead and why.
func socketState(nc net.Conn) (bool, error) {
	if nc == nil {
		return true, nil
	}
	if tc := trackedOf(nc); tc != nil {
		if tc.doomed.Load() {
			return false, errEvicted
		}
		if tc.peek == nil {
			return true, nil // no peek here (no fd, or platform.go)
		}
		return tc.peek.state()
	}
	rc, ok := rawConnOf(nc)
	if !ok {
		return true, nil
	}
	return peekState(rc)
}

// alive reports whether nc still looks usable, without any I/O on the wire
// (and without a system call while the connection is in steady use:
// recentread.go).
func alive(nc net.Conn) bool {
	if inUse(nc) {
		return true
	}
	ok, _ := socketState(nc)
	return ok
}

// checkout is run by database/sql (through the backend's ResetSession) before
// it reuses a connection: a dead socket is driver.ErrBadConn, so database/sql
// drops the connection and retries on another. A socket the kernel killed
// for a silent peer (keepalive, TCP_USER_TIMEOUT without recent ACKs) evicts
// its whole address: its siblings died the same way. A reset or EOF drops the
// connection and the siblings that are dead too. That is old evidence (the socket may have
// died while the pool sat idle through a blip that is over), so the connector
// stays Ready and the retry's fresh dial decides whether the server is down.
// A connection that read its server's reply within the last
// recentReadWindow skips the system call (recentread.go).
func checkout(_ context.Context, nc net.Conn) error {
	if inUse(nc) {
		return nil
	}
	ok, why := socketState(nc)
	if ok {
		return nil
	}
	if tc := trackedOf(nc); tc != nil && why != nil && why != errEvicted {
		switch classify(why, tc.tcpInfo, tc.window) {
		case hostLevel:
			tc.book.evict(tc.addr, tc.gen, why, evictStale)
		case connLevel:
			if tc.swept.CompareAndSwap(false, true) {
				tc.book.sweep(tc.addr, tc)
			}
		}
	}
	return driver.ErrBadConn
}

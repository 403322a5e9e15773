package pgfast

import (
	"context"
	"crypto/tls"
	"database/sql/driver"
	"net"
	"syscall"
)

// rawConnOf returns the syscall.RawConn under a connection pgfast's dialer
// made, unwrapping TLS.
func rawConnOf(nc net.Conn) (syscall.RawConn, bool) {
	for {
		switch c := nc.(type) {
		case *tls.Conn:
			nc = c.NetConn()
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
}

// alive reports whether nc still looks usable, without any I/O on the wire.
func alive(nc net.Conn) bool {
	if nc == nil {
		return true
	}
	rc, ok := rawConnOf(nc)
	if !ok {
		return true
	}
	return socketAlive(rc)
}

// checkout is run by database/sql (through the backend's ResetSession) before
// it reuses a connection: a dead socket is driver.ErrBadConn, so database/sql
// drops the connection and retries on another.
func checkout(_ context.Context, nc net.Conn) error {
	if !alive(nc) {
		return driver.ErrBadConn
	}
	return nil
}

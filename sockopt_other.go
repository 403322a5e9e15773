//go:build !linux

package pgfast

import (
	"errors"
	"net"

	"github.com/pgfast/pgfast/internal/diag"
)

// configureSocketOptions applies the portable subset of s through
// net.Dialer.KeepAliveConfig: keep-alive on or off, idle time, interval and
// probe count (a zero setting keeps the OS default). TCP_USER_TIMEOUT is
// Linux-only and is not set here. Unlike on Linux, the net package ignores
// a failure to set these options, and they are set after connect().
func configureSocketOptions(nd *net.Dialer, s dialSettings) {
	if !s.Keepalives {
		return // nd.KeepAlive < 0 and Enable false: the OS default, off
	}
	nd.KeepAliveConfig = net.KeepAliveConfig{
		Enable:   true,
		Idle:     orOSDefault(s.KeepalivesIdle),
		Interval: orOSDefault(s.KeepalivesInterval),
		Count:    orOSDefault(s.KeepalivesCount),
	}
}

// orOSDefault maps our "0 = OS default" to KeepAliveConfig's "negative =
// leave unchanged" (its zero means Go's own default of 15s or 9 probes).
func orOSDefault[T ~int | ~int64](v T) T {
	if v <= 0 {
		return -1
	}
	return v
}

// errSocketOptionsUnsupported is returned by readSocketOptions off Linux.
var errSocketOptionsUnsupported = errors.New("pgfast: reading socket options is only supported on Linux")

// readSocketOptions reads the TCP options of the socket behind c. It is
// only supported on Linux; elsewhere it always returns an error.
func readSocketOptions(c net.Conn) (diag.SocketOptions, error) {
	return diag.SocketOptions{}, errSocketOptionsUnsupported
}

//go:build !linux

package netx

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
)

// tcpInfoOf has no portable TCP_INFO to read outside Linux.
func tcpInfoOf(*trackedConn) (tcpSample, bool) { return tcpSample{}, false }

// watchesPeers: outside Linux, keep-alive alone finds a dead peer.
const watchesPeers = false

// configureSocketOptions applies s as this system allows (planSockets). A
// system too old for the user-timeout option keeps its default, as the net
// package does for keep-alive: failing every dial would be worse than the
// raw driver, which never sets it.
func configureSocketOptions(nd *net.Dialer, s Settings) {
	plan := planSockets(thisPlatform, s)
	nd.KeepAliveConfig = plan.keepAlive
	if len(plan.opts) == 0 {
		return
	}
	nd.ControlContext = func(_ context.Context, network, _ string, rc syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		return rc.Control(func(fd uintptr) {
			for _, o := range plan.opts {
				_ = setPlatformOpt(fd, o)
			}
		})
	}
}

// errSocketOptionsUnsupported is returned by readSocketOptions off Linux.
var errSocketOptionsUnsupported = errors.New("pgfast: reading socket options is only supported on Linux")

// ReadSocketOptions reads the TCP options of the socket behind c; Linux only.
func ReadSocketOptions(c net.Conn) (SocketOptions, error) {
	return SocketOptions{}, errSocketOptionsUnsupported
}

// setsockoptError names the option in a setsockopt error.
func setsockoptError(name string, err error) error {
	if err == nil {
		return nil
	}
	return os.NewSyscallError("setsockopt "+name, err)
}

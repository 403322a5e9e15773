//go:build linux

package pgfast

import (
	"time"

	"golang.org/x/sys/unix"
)

// tcpInfoOf reads the TCP_INFO of tc's socket; false when it has no file
// descriptor or is closed.
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
	}, true
}

// watchesPeers reports whether this platform has the dead-peer watcher.
const watchesPeers = true

//go:build !linux

package pgfast

// tcpInfoOf has no portable TCP_INFO to read outside Linux.
func tcpInfoOf(*trackedConn) (tcpSample, bool) { return tcpSample{}, false }

// watchesPeers reports whether this platform has the dead-peer watcher:
// outside Linux, keep-alive alone finds a dead peer.
const watchesPeers = false

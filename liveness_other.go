//go:build !linux

package pgfast

import "syscall"

// socketAlive cannot peek portably without blocking; outside Linux pgfast
// relies on the backend's own checks and reports every socket alive.
func socketAlive(syscall.RawConn) bool { return true }

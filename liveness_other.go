//go:build !linux

package pgfast

import "syscall"

// peekState cannot peek portably without blocking; outside Linux pgfast
// relies on the backend's own checks and reports every socket alive.
func peekState(syscall.RawConn) (bool, error) { return true, nil }

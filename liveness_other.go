//go:build !linux

package pgfast

import "syscall"

// peekState cannot peek portably without blocking; outside Linux pgfast
// relies on the backend's own checks and reports every socket alive.
func peekState(syscall.RawConn) (bool, error) { return true, nil }

// peeker is the Linux liveness check's per-socket state; outside Linux every
// socket is reported alive.
type peeker struct{}

func newPeeker(syscall.RawConn) *peeker { return &peeker{} }

func (*peeker) state() (bool, error) { return true, nil }

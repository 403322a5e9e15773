//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd && !solaris

package netx

import (
	"syscall"
)

// canPeek: no non-blocking peek here (Windows has no MSG_DONTWAIT), so pgx's
// ping before reusing an idle connection stays on.
const canPeek = false

// peekState reports every socket alive: there is no peek here.
func peekState(syscall.RawConn) (bool, error) { return true, nil }

// peeker is the peek's per-socket state; newPeeker returns nil here.
type peeker struct{}

func newPeeker(syscall.RawConn) *peeker { return nil }

func (*peeker) state() (bool, error) { return true, nil }

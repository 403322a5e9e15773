//go:build darwin

package netx

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setPlatformOpt sets one option of planSockets on fd.
func setPlatformOpt(fd uintptr, o sockOpt) error {
	switch o.name {
	case optUserTimeoutDarwin.Name:
		return setsockoptError(o.name, unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_RXT_CONNDROPTIME, o.value))
	}
	return fmt.Errorf("pgfast: socket option %s is not known on this system", o.name)
}

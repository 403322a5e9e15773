//go:build windows

package netx

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// setPlatformOpt sets one option of planSockets on fd.
func setPlatformOpt(fd uintptr, o sockOpt) error {
	switch o.name {
	case optUserTimeoutWindows.Name:
		return setsockoptError(o.name, windows.SetsockoptInt(windows.Handle(fd), windows.IPPROTO_TCP, windows.TCP_MAXRTMS, o.value))
	}
	return fmt.Errorf("pgfast: socket option %s is not known on this system", o.name)
}

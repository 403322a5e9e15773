//go:build !linux && !darwin && !windows

package netx

import (
	"fmt"
)

// setPlatformOpt: planSockets asks for no socket option on this system
// (platformOf gives it no user timeout).
func setPlatformOpt(_ uintptr, o sockOpt) error {
	return fmt.Errorf("pgfast: socket option %s is not known on this system", o.name)
}

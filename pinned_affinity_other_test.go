//go:build !linux

package pgfast

import "errors"

// sameAffinity: CPU affinity is read on Linux only (sched_getaffinity).
func sameAffinity(int) (same bool, self, other int, err error) {
	return false, 0, 0, errors.New("CPU affinity is only read on Linux")
}

//go:build linux

package pgfast

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the CPU time this process has used so far (every
// thread: the benchmark loop, the runtime, the drivers' goroutines), or false
// when it cannot be read. The server's CPU is not in it.
func processCPU() (time.Duration, bool) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

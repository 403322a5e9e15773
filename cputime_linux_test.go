//go:build linux

package pgfast

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time the calling OS thread has used so far, or
// false when it cannot be read. Callers lock their goroutine to the thread.
func threadCPU() (time.Duration, bool) { return rusageCPU(unix.RUSAGE_THREAD) }

// processCPU returns the CPU time this process has used so far (every
// thread: the benchmark loop, the runtime, the drivers' goroutines), or false
// when it cannot be read. The server's CPU is not in it.
func processCPU() (time.Duration, bool) { return rusageCPU(unix.RUSAGE_SELF) }

func rusageCPU(who int) (time.Duration, bool) {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

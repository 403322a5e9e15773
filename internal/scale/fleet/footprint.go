//go:build linux

package fleet

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Footprint is the process's size at one moment.
type Footprint struct {
	Goroutines int
	HeapAlloc  uint64 // bytes live after two GCs
	RSS        uint64 // VmRSS bytes; 0 when unknown
}

// TakeFootprint collects garbage twice (so HeapAlloc is the live heap) and
// reads the goroutine count, the heap and VmRSS.
func TakeFootprint() Footprint {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Footprint{Goroutines: runtime.NumGoroutine(), HeapAlloc: ms.HeapAlloc, RSS: vmRSS()}
}

// vmRSS reads VmRSS from /proc/self/status, in bytes.
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// ProcessCPU is the CPU time the process has used so far, every thread.
func ProcessCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPUShare measures the process's CPU over window, in percent of one core.
func CPUShare(window time.Duration) float64 {
	c0, t0 := ProcessCPU(), time.Now()
	time.Sleep(window)
	c1, wall := ProcessCPU(), time.Since(t0)
	return 100 * float64(c1-c0) / float64(wall)
}

// SettleGoroutines waits until the goroutine count has not changed for
// quiet, at most limit.
func SettleGoroutines(quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	last, since := runtime.NumGoroutine(), time.Now()
	for time.Now().Before(deadline) && time.Since(since) < quiet {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != last {
			last, since = n, time.Now()
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// startProfile starts a CPU profile into dir/name when dir is set; the
// returned func stops it. A failure is reported and nothing is profiled.
func startProfile(dir, name string, logf func(string, ...any)) (stop func()) {
	if dir == "" {
		return func() {}
	}
	var f *os.File
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		f, err = os.Create(filepath.Join(dir, name))
	}
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		logf("cpu profile: %v", err)
		if f != nil {
			f.Close()
		}
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

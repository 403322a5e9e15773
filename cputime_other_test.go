//go:build !linux

package pgfast

import "time"

// processCPU is not read off Linux; benchmarks then skip their CPU metric.
func processCPU() (time.Duration, bool) { return 0, false }

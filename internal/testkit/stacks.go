package testkit

import "runtime"

// Stacks returns every goroutine's stack (up to 1 MiB), for a hang report.
func Stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

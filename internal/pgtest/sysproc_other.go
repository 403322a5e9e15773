//go:build !unix

package pgtest

import (
	"os"
	"syscall"
)

// The test servers run on Linux (and other unix systems); elsewhere this
// package only has to compile, so that the tests that import it build and
// vet on every system (scripts/test's cross-vet phase). These do what the
// system allows: no process groups, no other user.

func groupLeader(*account) *syscall.SysProcAttr { return nil }

func killGroup(pid int) error { return killPID(pid) }

func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func processExists(pid int) bool {
	_, err := os.FindProcess(pid)
	return err == nil
}

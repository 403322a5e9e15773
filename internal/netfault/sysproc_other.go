//go:build !unix

package netfault

import (
	"os"
	"syscall"
)

// Network namespaces are Linux's; elsewhere this package only has to
// compile, so that the tests that import it build and vet on every system
// (scripts/test's cross-vet phase).

func groupLeader() *syscall.SysProcAttr { return nil }

func killGroup(pid int) error { return killPID(pid) }

func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

//go:build unix

package pgtest

import "syscall"

// groupLeader makes a child lead a process group of its own (so killGroup
// reaches what it starts), running as as when not nil.
func groupLeader(as *account) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if as != nil {
		a.Credential = &syscall.Credential{Uid: as.uid, Gid: as.gid, Groups: []uint32{}}
	}
	return a
}

// killGroup sends SIGKILL to the process group pid leads.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// killPID sends SIGKILL to pid.
func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// processExists reports whether a process pid exists (signal 0).
func processExists(pid int) bool { return syscall.Kill(pid, 0) == nil }

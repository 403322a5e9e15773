//go:build unix

package testdb

import "syscall"

// procAttr runs a server program in a process group of its own, as u when
// not nil.
func procAttr(u *osUser) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if u != nil {
		a.Credential = &syscall.Credential{Uid: u.Uid, Gid: u.Gid, Groups: []uint32{}}
	}
	return a
}

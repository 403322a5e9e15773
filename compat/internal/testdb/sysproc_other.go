//go:build !unix

package testdb

import "syscall"

// procAttr: the test server runs on unix systems; elsewhere this package
// only has to compile (scripts/test's cross-vet phase).
func procAttr(*osUser) *syscall.SysProcAttr { return nil }

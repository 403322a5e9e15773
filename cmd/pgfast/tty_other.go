//go:build !linux

package main

import "os"

// isTerminal reports whether f looks like a terminal (a character device;
// /dev/null passes too, which only costs a progress line nobody sees).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

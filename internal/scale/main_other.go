//go:build !linux

// Command scale is the fleet harness of issue 19; it runs on Linux only
// (it reads /proc and getrusage, and starts PostgreSQL with pgtest).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "scale: Linux only")
	os.Exit(2)
}

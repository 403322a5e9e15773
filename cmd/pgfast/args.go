package main

import (
	"flag"
	"fmt"
	"io"
)

// parseArgs parses fs's flags, which may come before or after the one
// optional DSN, and returns the DSN ("" when omitted: libpq environment
// variables apply).
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (string, error) {
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "usage: pgfast %s [flags] [DSN]; see pgfast help\n", fs.Name()) }
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) > 1 {
		fs.Usage()
		return "", fmt.Errorf("pgfast %s: want at most one DSN, got %d arguments (quote a key=value DSN)", fs.Name(), len(positional))
	}
	if len(positional) == 0 {
		return "", nil
	}
	return positional[0], nil
}

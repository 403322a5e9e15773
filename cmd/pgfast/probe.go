package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/pgfast/pgfast"
)

// runProbe runs "pgfast probe".
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	dsn, err := parseArgs(fs, args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, err)
		}
		return exitUsage
	}
	var live *liveLine
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		live = startLiveLine(f)
	}
	rep, err := pgfast.Probe(ctx, dsn, pgfast.WithProbeProgress(live.update))
	live.stop()
	var ce *pgfast.ConfigError
	if errors.As(err, &ce) {
		fmt.Fprintln(stderr, "pgfast probe:", ce)
		return exitUsage
	}
	interrupted := err != nil
	if rep == nil { // cannot happen: Probe reports every other error in rep
		fmt.Fprintln(stderr, "pgfast probe:", err)
		return exitNoServer
	}
	if *jsonOut {
		if err := writeProbeJSON(stdout, rep, interrupted); err != nil {
			fmt.Fprintln(stderr, "pgfast probe:", err)
			return exitNoServer
		}
	} else {
		writeProbeText(stdout, rep)
	}
	if interrupted {
		fmt.Fprintln(stderr, "pgfast probe: interrupted:", err)
	}
	if rep.Usable() && !interrupted {
		return exitOK
	}
	return exitNoServer
}

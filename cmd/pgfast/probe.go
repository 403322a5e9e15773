package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/diag"
)

// runProbe runs "pgfast probe".
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	jsonOut := fs.Bool("json", false, "print the report as a JSON object (an error object for a bad DSN)")
	dsn, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	var live *liveLine
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		live = startLiveLine(f)
	}
	rep, err := diag.Probe(ctx, dsn, live.update)
	live.stop()
	var ce *pgfast.ConfigError
	if errors.As(err, &ce) {
		fmt.Fprintln(stderr, "pgfast probe:", errText(ce))
		if *jsonOut {
			writeJSONError(stdout, "dsn", errText(ce))
		}
		return exitUsage
	}
	interrupted := err != nil
	if rep == nil { // cannot happen: Probe reports every other error in rep
		fmt.Fprintln(stderr, "pgfast probe:", errText(err))
		if *jsonOut {
			writeJSONError(stdout, "probe", errText(err))
		}
		return exitNoServer
	}
	if *jsonOut {
		if err := writeProbeJSON(stdout, rep, interrupted); err != nil {
			fmt.Fprintln(stderr, "pgfast probe:", err)
			return exitNoServer
		}
	} else {
		writeProbeText(stdout, rep, tlsPlanOf(dsn))
	}
	switch {
	case interrupted:
		fmt.Fprintln(stderr, "pgfast probe: interrupted")
		return exitInterrupted
	case rep.Usable():
		return exitOK
	}
	return exitNoServer
}

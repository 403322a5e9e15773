package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// commandHelp is each command's "--help" text, before its flags.
var commandHelp = map[string]string{
	"probe": `usage: pgfast probe [--json] [DSN]

Resolve every host of the DSN and connect to each of its addresses in turn
with pgfast's dialer and settings; show for each: connect outcome and time,
TLS, authentication, server version, role (primary/standby), read-only
default, the socket options in effect, and which address
target_session_attrs would pick. Without a DSN the libpq environment
variables (PGHOST, PGPORT, PGUSER, ...) are used. Ctrl+C stops at once.

exit status: 0 a usable server was found, 1 none, 2 bad command line or
DSN, 130 interrupted.
`,
	"explain": `usage: pgfast explain [--backend pgx|pq] [DSN]

Print the worst-case time until each network failure is detected with the
DSN's settings (pgfast's defaults where unset) and this machine's TCP
sysctls, and the timeline leading there, next to what the raw pgx and lib/pq
drivers would do with the same DSN. Without a DSN the libpq environment
variables are used.

exit status: 0 done, 2 bad command line or DSN.
`,
}

// parseArgs parses fs's flags, which may come before or after the one
// optional DSN, and returns the DSN ("" when omitted: libpq environment
// variables apply). ok is false when the command must stop with code:
// after --help (the command's help on stdout, code 0) or a bad command line
// (the error, once, and the usage on stderr, code 2; with --json also a JSON
// error object on stdout).
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (dsn string, code int, ok bool) {
	fs.SetOutput(io.Discard) // errors are printed here, once
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout, fs)
			return "", exitOK, false
		}
		if err != nil {
			return "", usageError(fs, stdout, stderr, err.Error()), false
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(positional) {
	case 0:
		return "", 0, true
	case 1:
		return positional[0], 0, true
	}
	return "", usageError(fs, stdout, stderr,
		fmt.Sprintf("want at most one DSN, got %d arguments (quote a key=value DSN)", len(positional))), false
}

// usageError reports a bad command line and returns exitUsage.
func usageError(fs *flag.FlagSet, stdout, stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "pgfast %s: %s\nusage: pgfast %s --help\n", fs.Name(), msg, fs.Name())
	if f := fs.Lookup("json"); f != nil && f.Value.String() == "true" {
		writeJSONError(stdout, "usage", msg)
	}
	return exitUsage
}

// printHelp prints the command's help and its flags.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, commandHelp[fs.Name()])
	fmt.Fprintln(w, "\nflags:")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%-20s %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprintf(w, "%-20s %s\n", "  --help", "print this help")
}

// errText renders err for a line that already starts with "pgfast
// <command>:", without the "pgfast: " prefix of pgfast's own errors.
func errText(err error) string {
	return strings.TrimPrefix(err.Error(), "pgfast: ")
}

// Command pgfast diagnoses PostgreSQL connections the way the pgfast driver
// makes them.
//
//	go install github.com/pgfast/pgfast/cmd/pgfast@latest
//
//	pgfast probe [--json] [DSN]
//	pgfast explain [--backend pgx|pq] [DSN]
//
// probe resolves and connects to every address of every host of the DSN and
// reports what each answered; explain prints how long each kind of network
// failure takes to be noticed with the DSN's settings and this machine's
// kernel settings, next to what the raw drivers would do. Without a DSN the
// libpq environment variables (PGHOST, PGPORT, PGUSER, ...) are used.
// The password is never printed.
//
// Every command prints its flags with --help. Exit status: 0 when probe found
// a usable server (or explain ran, or --help), 1 when probe found none, 2 for
// a bad command line or DSN, 130 when interrupted (Ctrl+C, SIGTERM).
//
// The models behind explain, and the rules they follow (including how
// tcp_user_timeout overrides keepalives_count), are documented in
// internal/timeline.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK          = 0   // probe: a usable server was found; explain: done; --help
	exitNoServer    = 1   // probe: no usable server; any other failure
	exitUsage       = 2   // bad command line or bad DSN
	exitInterrupted = 130 // interrupted by Ctrl+C (SIGINT) or SIGTERM, as shells report 128+SIGINT
)

const usage = `usage: pgfast <command> [flags] [DSN]

Diagnose PostgreSQL connections the way the pgfast driver makes them.
DSN is a URL (postgres://user@host:5432/db?...) or key=value settings
(host=... port=... user=...); without it the libpq environment
variables (PGHOST, PGPORT, PGUSER, PGDATABASE, ...) are used. The password
is never printed.

commands:
  probe [--json] [DSN]
        Resolve every host and connect to each of its addresses in turn
        with pgfast's dialer and settings; show for each: connect outcome
        and time (connected, refused, timed out, unreachable), TLS,
        authentication, server version, role (primary/standby), read-only
        default, the socket options in effect, and which address
        target_session_attrs would pick. Ctrl+C stops at once.
  explain [--backend pgx|pq] [DSN]
        Print the worst-case time until each failure is detected, with
        the DSN's settings (pgfast's defaults where unset) and this
        machine's TCP sysctls, and the timeline of SYN retries, keep-alive
        probes and retransmissions leading there, next to what the raw
        pgx and lib/pq drivers would do with the same DSN:
          (a) connect to a blackholed address
          (b) dead peer while the connection is idle
          (c) dead peer with unacknowledged data (a query in flight)
        --backend selects the parser that reads the DSN (default pgx).
  help  Show this text.

flags:
  --json     probe: print the report as a JSON object on stdout
  --backend  explain: pgx (default) or pq
  --help     any command: its flags and exit status

exit status:
  0    probe: a usable server was found; explain: done
  1    probe: no usable server
  2    bad command line or DSN
  130  interrupted (Ctrl+C or SIGTERM)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "probe":
		return runProbe(ctx, args[1:], stdout, stderr)
	case "explain":
		return runExplain(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "pgfast: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

//go:build linux

// Command scale is the fleet harness of issue 19 (docs/design/fleet.md §5),
// run by scripts/scale: many tenants of one process on one local
// PostgreSQL, each raw driver against pgfast's wrapping of it, in the same
// run. The orchestrator starts the server and re-executes itself once per
// measured run (a child), so every run starts with a clean heap, goroutine
// count and process-wide state; it counts the run's logins in the server
// log, prints the table with medians and checks issue 19's bounds.
//
//	go run ./internal/scale --help
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pgfast/pgfast/internal/scale/fleet"
)

// config is the command line.
type config struct {
	tenants           int
	rounds            int
	pairs             string
	noCheck           bool
	rawConnectTimeout int
	readyTimeout      time.Duration
	waitCap           time.Duration
	sampleAt          string
	cpuWindow         time.Duration
	cpuProfile        string
	maxConnections    int
	out               string
	idle              int
	servers           int
	fastExtra         string
	restart           bool
	// child mode
	child    string
	childOut string
}

func main() {
	var c config
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	fs.IntVar(&c.tenants, "tenants", 1000, "tenants per front end")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds; each runs every pair, raw and pgfast alternating which goes first; the table gives medians")
	fs.StringVar(&c.pairs, "pairs", "pgx,pq,pgxpool", "pairs to run, by raw driver: pgx (vs pgfast), pq (vs pgfast-pq), pgxpool (vs NewPool)")
	fs.BoolVar(&c.noCheck, "no-check", false, "report only: do not check issue 19's bounds (exit 0 on a miss)")
	fs.IntVar(&c.rawConnectTimeout, "raw-connect-timeout", 0, "add connect_timeout=`S` seconds to the raw drivers' DSN (pgfast's default is 10)")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 60*time.Second, "each tenant's first call's context")
	fs.DurationVar(&c.waitCap, "wait-cap", 90*time.Second, "how long past --ready-timeout to wait for calls that ignore their context (raw lib/pq)")
	fs.StringVar(&c.sampleAt, "sample-at", "3s,40s", "when to measure CPU (then take the footprint), after the last tenant was ready")
	fs.DurationVar(&c.cpuWindow, "cpu-window", 10*time.Second, "CPU measurement window, before each footprint")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of each CPU window to `DIR` (<front end>-<n>.pprof; go tool pprof); the profiler wakes the process, so the CPU figures of such a run are not comparable")
	fs.IntVar(&c.maxConnections, "max-connections", 2100, "the server's max_connections")
	fs.StringVar(&c.out, "out", "", "directory for each run's JSON (default: not kept)")
	fs.IntVar(&c.idle, "idle", 0, "idle mode: open `N` idle tenants per front end and report heap and goroutines per tenant at 1k, 2k, 5k, 10k, ...")
	fs.IntVar(&c.servers, "servers", 0, "idle mode: spread the tenants over `K` servers, each with --max-connections (default: one per 2,000 tenants)")
	fs.StringVar(&c.fastExtra, "fast-dsn-extra", "", "add `key=value[&...]` to pgfast's DSNs only (e.g. pgfast_min_conns=0 where supported)")
	fs.BoolVar(&c.restart, "restart", false, "restart mode: --tenants ready, pg_ctl stop -m immediate, start 3 s later; time to serving per tenant and logins during recovery")
	fs.StringVar(&c.child, "child", "", "internal: run one measurement of this front end (DSN in $SCALE_DSN)")
	fs.StringVar(&c.childOut, "child-out", "", "internal: where the child writes its JSON")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	var err error
	switch {
	case c.child != "" && fleet.ByName(c.child) == nil:
		err = fmt.Errorf("unknown front end %q", c.child)
	case c.child != "" && c.restart:
		err = runRestartChild(c, fleet.ByName(c.child))
	case c.child != "" && c.idle > 0:
		err = runIdleChild(c, fleet.ByName(c.child))
	case c.child != "":
		err = runChild(c)
	case c.restart:
		err = runRestart(c)
	case c.idle > 0:
		err = runIdle(c)
	default:
		err = runColdStart(c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(exitCode(err))
	}
}

const usage = `usage: scripts/scale [flags]

Cold start (default): N tenants per front end open on one local PostgreSQL
(PostgreSQL as installed, listen_addresses=localhost, max_connections=2100,
SCRAM, log_connections=on), each with a new user's DSN
postgres://<role>:<password>@localhost:<port>/pgfast (no pgfast_ keys, no
connect_timeout; the lib/pq pair adds sslmode=disable, lib/pq's default
being require), and a goroutine per tenant making its first call with a
60 s context: pgfast.Ready for a *sql.DB (db.PingContext for a raw one),
pool.Ping for a pool. Each front end logs in as a role of its own, so the
server log attributes every login. Pairs: raw pgx / pgfast, raw lib/pq /
pgfast-pq, pgxpool.New / pgfast.NewPool. Every run is a fresh process.

Per run: time until every tenant was ready, tenants not ready after 60 s,
logins ("connection authorized" lines in the run's byte range of the server
log), connections received, FATALs; at 3 s and 40 s after the last ready:
the process's CPU over the next 10 s, then goroutines, live heap (after two
GCs) and VmRSS per tenant (net of the process before the first open). The
CPU is measured before the forced GCs, not after them: they would make any
periodic work pay the runtime's cold start inside the window.

The table gives medians over the rounds, raw and pgfast side by side, and
checks issue 19's bounds (ready time <= 1.1 x raw, logins <= 1.05/tenant,
goroutines per idle tenant <= raw + 0.1, heap <= raw + 16 KB, idle CPU <=
raw + 0.1 % of a core); a miss exits 1 unless --no-check.

--restart: the tenants ready, the server is stopped (pg_ctl stop -m
immediate) and started 3 s later while every tenant queries every 100 ms;
it reports time to serving per tenant (p50, max; from the start of the
start) and logins per tenant during recovery, against raw.

--idle N: N tenants per front end over --servers servers (one per 2,000
tenants by default), readied in batches; goroutines, heap and RSS per
tenant at 1k, 2k, 5k, 10k ... (linear or not).

Flags:
`

// errMiss is returned when a bound was missed: exit status 1. Other
// failures exit 2.
var errMiss = fmt.Errorf("a bound of issue 19 was missed")

func exitCode(err error) int {
	if err == errMiss {
		return 1
	}
	return 2
}

// sampleTimes parses --sample-at.
func (c config) sampleTimes() ([]time.Duration, error) {
	var ds []time.Duration
	for _, s := range strings.Split(c.sampleAt, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("--sample-at: %w", err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

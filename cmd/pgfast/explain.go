package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/timeline"
)

// runExplain runs "pgfast explain".
func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	backend := fs.String("backend", "pgx", "the parser that reads the DSN: pgx or pq")
	dsn, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	b, ok := map[string]pgfast.Backend{"pgx": pgfast.PGX, "pq": pgfast.LibPQ, "lib/pq": pgfast.LibPQ}[*backend]
	if !ok {
		fmt.Fprintf(stderr, "pgfast explain: --backend must be pgx or pq, not %q\n", *backend)
		return exitUsage
	}
	info, err := diag.InspectDSN(dsn, b)
	if err != nil {
		fmt.Fprintln(stderr, "pgfast explain:", errText(err))
		return exitUsage
	}
	k, notes := timeline.ReadKernel(timeline.ProcDir)
	writeExplainText(stdout, explain(info, k, notes))
	return exitOK
}

// driverModel is how one driver sets up its connections.
type driverModel struct {
	name           string
	socket         timeline.Socket
	connectTimeout time.Duration // 0: none
	connectScope   string        // what connect_timeout bounds
	// watch is pgfast's dead-peer watcher; nil for the raw drivers.
	watch *timeline.Watch
}

// explanation is everything explain prints.
type explanation struct {
	info        *diag.DSNInfo
	kernel      timeline.Kernel
	kernelNotes []string
	drivers     []driverModel // pgfast, pgx, lib/pq
	// connect, idle, unacked and stall hold one result per driver.
	connect, idle, unacked, stall []timeline.Result
	// kernelOnly is pgfast's connect result without connect_timeout.
	kernelOnly timeline.Result
	notes      []string
}

// explain models pgfast and the raw drivers with the DSN's settings.
func explain(info *diag.DSNInfo, k timeline.Kernel, kernelNotes []string) explanation {
	c := configOf(info.Config)
	goDefault := timeline.GoDefaultSocket()
	raw := info.RawConnectTimeout
	e := explanation{
		info:        info,
		kernel:      k,
		kernelNotes: kernelNotes,
		drivers: []driverModel{
			{
				name: "pgfast",
				socket: timeline.Socket{Keepalive: c.Keepalives, KeepIdle: c.KeepalivesIdle, KeepIntvl: c.KeepalivesInterval,
					KeepCount: c.KeepalivesCount, UserTimeout: c.TCPUserTimeout},
				connectTimeout: c.ConnectTimeout,
				connectScope:   "per address",
				watch:          &timeline.Watch{Window: watchWindow(c.TCPUserTimeout)},
			},
			{name: "pgx", socket: goDefault, connectTimeout: raw, connectScope: "per address"},
			{name: "lib/pq", socket: goDefault, connectTimeout: raw, connectScope: "per host"},
		},
	}
	if info.Platform.GOOS != "" && !info.Platform.DeadPeerWatch {
		e.drivers[0].watch = nil // TCP_INFO is Linux's: no watcher here
	}
	for _, d := range e.drivers {
		e.connect = append(e.connect, timeline.Connect(k, d.socket, d.connectTimeout))
		if d.watch != nil {
			e.idle = append(e.idle, timeline.WatchedIdle(k, d.socket, *d.watch))
			e.unacked = append(e.unacked, timeline.WatchedUnacked(k, d.socket, *d.watch))
		} else {
			e.idle = append(e.idle, timeline.Idle(k, d.socket))
			e.unacked = append(e.unacked, timeline.Unacked(k, d.socket))
		}
		e.stall = append(e.stall, timeline.ZeroWindow(d.socket))
	}
	e.kernelOnly = timeline.Connect(k, e.drivers[0].socket, 0)
	e.notes = append(platformNotes(info.Platform), explainNotes(info)...)
	return e
}

// platformNotes says what pgfast applies on the system it runs on, when that
// is less than on Linux (which the timelines model).
func platformNotes(p diag.Platform) []string {
	if p.GOOS == "" || (p.Peek && p.KeepaliveTimings && p.DeadPeerWatch && p.UserTimeoutOption != "" && len(p.NotApplied) == 0) {
		return nil
	}
	var parts []string
	if p.KeepaliveTimings {
		parts = append(parts, "keepalives_idle, keepalives_interval and keepalives_count are applied per socket")
	} else {
		parts = append(parts, "keepalives_idle, keepalives_interval and keepalives_count are not applied on this OS "+
			"(keep-alive is switched on with the system-wide timings)")
	}
	if p.UserTimeoutOption != "" {
		parts = append(parts, "tcp_user_timeout is applied as "+p.UserTimeoutOption)
	} else {
		parts = append(parts, "tcp_user_timeout is not applied on this OS (it has no such socket option)")
	}
	if p.Peek {
		parts = append(parts, "the checkout peeks at the socket (MSG_PEEK) instead of pgx's ping")
	} else {
		parts = append(parts, "the checkout cannot peek at the socket on this OS, so pgx's and pgxpool's ping "+
			"before reusing a connection idle for over a second stays on, as with raw pgx")
	}
	if !p.DeadPeerWatch {
		parts = append(parts, "there is no dead-peer watcher (it reads Linux's TCP_INFO)")
	}
	note := "On " + p.GOOS + ": " + strings.Join(parts, "; ") + "."
	if len(p.NotApplied) > 0 {
		note += " Set (by this DSN or pgfast's defaults) but not applied here: " + strings.Join(p.NotApplied, ", ") + "."
	}
	return []string{note + " The timelines model Linux's kernel."}
}

// watchWindow is pgfast's dead-peer window for a tcp_user_timeout setting.
func watchWindow(userTimeout time.Duration) time.Duration {
	if userTimeout > 0 {
		return userTimeout
	}
	return pgfast.DefaultDeadPeerWindow
}

// explainNotes are the remarks that depend on the DSN.
func explainNotes(info *diag.DSNInfo) []string {
	var notes []string
	var rejected []string
	for k := range info.Forwarded {
		if strings.HasPrefix(k, "keepalives") {
			rejected = append(rejected, k)
		}
	}
	slices.Sort(rejected)
	if len(rejected) > 0 {
		notes = append(notes, fmt.Sprintf("pgx and lib/pq do not know %s: they send them to the server as startup "+
			"parameters, which the server refuses (unrecognized configuration parameter, SQLSTATE 42704), so "+
			"with this DSN the raw drivers cannot connect at all. Their columns assume those keys were removed.",
			strings.Join(rejected, ", ")))
	}
	if v, ok := info.Forwarded["tcp_user_timeout"]; ok {
		notes = append(notes, fmt.Sprintf("tcp_user_timeout=%s reaches the server as its own setting with the raw "+
			"drivers: it bounds the server's socket, the client's socket gets no TCP_USER_TIMEOUT.", v))
	}
	if info.RawConnectTimeout == 0 {
		notes = append(notes, fmt.Sprintf("connect_timeout is unset (or 0): pgfast applies %s, the raw drivers wait "+
			"for the kernel.", timeline.Format(configOf(info.Config).ConnectTimeout)))
	}
	if allUnix(configOf(info.Config).Hosts) {
		notes = append(notes, "every host is a Unix socket: there is no TCP, none of the timelines below applies.")
	}
	return notes
}

// allUnix reports whether every host is a Unix-domain socket directory.
func allUnix(hosts []pgfast.HostPort) bool {
	if len(hosts) == 0 {
		return false
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h.Host, "/") || h.Addr != "" {
			return false
		}
	}
	return true
}

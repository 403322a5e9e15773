package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/timeline"
)

// writeExplainText prints an explanation: settings, the summary table,
// notes, then each scenario's timelines.
func writeExplainText(w io.Writer, e explanation) {
	info := e.info
	fmt.Fprintf(w, "pgfast explain: %shosts=%s (DSN read by %s)\n",
		identityText(info.User, info.Database), hostsText(configOf(info.Config).Hosts), info.Backend)
	writeWrapped(w, "kernel ("+timeline.ProcDir+"): ", "  ", kernelText(e.kernel))
	for _, n := range e.kernelNotes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	fmt.Fprintln(w)

	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	header := []string{"", "pgfast", "pgx (raw)", "lib/pq (raw)"}
	row(append([]string{"settings"}, header[1:]...)...)
	row(cellsFor(e.drivers, "  connect_timeout", func(d driverModel) string {
		if d.connectTimeout <= 0 {
			return "none"
		}
		return timeline.Format(d.connectTimeout) + " " + d.connectScope
	})...)
	row(cellsFor(e.drivers, "  keep-alive idle/interval/count", func(d driverModel) string {
		return keepaliveText(d.socket.Effective(e.kernel))
	})...)
	row(cellsFor(e.drivers, "  TCP_USER_TIMEOUT", func(d driverModel) string {
		if d.name == "pgfast" && slices.Contains(info.Platform.NotApplied, "tcp_user_timeout") {
			return "not applied on this OS"
		}
		return userTimeoutText(d.socket.UserTimeout)
	})...)
	row("", "", "", "")
	row(append([]string{"worst case until detected"}, header[1:]...)...)
	for _, sc := range e.scenarios() {
		row(resultCells("  "+sc.short, sc.results, timeline.Result.String, timeline.FormatLong)...)
		row(resultCells("    ended by", sc.results, func(r timeline.Result) string { return r.Cause }, nil)...)
	}
	tw.Flush()
	for _, line := range strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n") {
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}

	writeWarnings(w, e)
	if len(e.notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "notes:")
		for _, n := range e.notes {
			writeWrapped(w, "  - ", "    ", n)
		}
	}
	for _, sc := range e.scenarios() {
		fmt.Fprintln(w)
		fmt.Fprintln(w, sc.title)
		writeScenario(w, e, sc)
	}
}

// scenario is one failure with its result per driver.
type scenario struct {
	short, title string
	results      []timeline.Result
	describe     func(driverModel) string // the settings that matter, per driver
	remarks      func(e explanation) []string
	// healthy: the server is alive, so "never" (the connection waits as
	// long as the server makes it wait) is the outcome wanted, not a gap.
	healthy bool
}

// scenarios lists the failures explain covers, and the slow-server case.
func (e explanation) scenarios() []scenario {
	return []scenario{
		{
			short:    "(a) connect, blackholed address",
			title:    "(a) connect to a blackholed address (no SYN is ever answered), per address",
			results:  e.connect,
			describe: describeConnect,
			remarks:  connectRemarks,
		},
		{
			short:    "(b) dead peer, idle connection",
			title:    "(b) the peer dies while the connection is idle (also: waiting for a slow query's result)",
			results:  e.idle,
			describe: func(d driverModel) string { return describeIdle(d, e.kernel) },
			remarks:  idleRemarks,
		},
		{
			short:    "(c) dead peer, unacknowledged data",
			title:    "(c) the peer dies while a query is unacknowledged (retransmission)",
			results:  e.unacked,
			describe: describeUnacked,
			remarks:  unackedRemarks,
		},
		{
			short:    "(d) slow server, zero window",
			title:    "(d) the server is alive but stops reading (a COPY waiting on a lock): zero window, probes ACKed",
			results:  e.stall,
			describe: describeUnacked,
			remarks:  stallRemarks,
			healthy:  true,
		},
	}
}

// writeScenario prints the timelines of one scenario: pgfast's, then the
// raw drivers' (once when they are the same).
func writeScenario(w io.Writer, e explanation, sc scenario) {
	groups := [][]int{{0}, {1}, {2}}
	if sameResult(sc.results[1], sc.results[2]) && sc.describe(e.drivers[1]) == sc.describe(e.drivers[2]) {
		groups = [][]int{{0}, {1, 2}}
	}
	for _, g := range groups {
		var names []string
		for _, i := range g {
			names = append(names, e.drivers[i].name)
		}
		d := e.drivers[g[0]]
		fmt.Fprintf(w, "  %s: %s\n", strings.Join(names, ", "), sc.describe(d))
		writeEvents(w, sc.results[g[0]].Events)
		if g[0] == 0 {
			for _, r := range sc.remarks(e) {
				writeWrapped(w, "      ", "      ", r)
			}
		}
	}
}

// writeEvents prints a timeline with right-aligned times.
func writeEvents(w io.Writer, events []timeline.Event) {
	width := 0
	for _, ev := range events {
		width = max(width, len(timeline.Format(ev.At)))
	}
	for _, ev := range events {
		at := timeline.Format(ev.At)
		if strings.HasPrefix(ev.Text, "…") {
			at = ""
		}
		fmt.Fprintf(w, "    %*s  %s\n", width, at, ev.Text)
	}
}

func describeConnect(d driverModel) string {
	ct := "no connect_timeout"
	if d.connectTimeout > 0 {
		ct = "connect_timeout=" + timeline.Format(d.connectTimeout) + " " + d.connectScope
	}
	return ct + ", TCP_USER_TIMEOUT " + userTimeoutText(d.socket.UserTimeout)
}

func describeIdle(d driverModel, k timeline.Kernel) string {
	if !d.socket.Keepalive {
		return "keep-alive off"
	}
	return "keep-alive " + keepaliveText(d.socket.Effective(k)) + ", TCP_USER_TIMEOUT " + userTimeoutText(d.socket.UserTimeout)
}

func describeUnacked(d driverModel) string {
	return "TCP_USER_TIMEOUT " + userTimeoutText(d.socket.UserTimeout)
}

func connectRemarks(e explanation) []string {
	out := []string{}
	if e.connect[0].Cause == timeline.CauseConnectTimeout {
		out = append(out, fmt.Sprintf("Without connect_timeout the kernel would end it at %s (%s).",
			timeline.FormatLong(e.kernelOnly.Detected), e.kernelOnly.Cause))
	}
	return append(out, "pgfast races a host's addresses (the next one after 250ms, or as soon as one fails), "+
		"so a blackholed address delays a reachable one by 250ms; pgx tries them one after another, each "+
		"waiting the time above; lib/pq (Go's dialer) starts the other IP family after 300ms and splits "+
		"connect_timeout between the addresses of one family (at least 2s each).")
}

func idleRemarks(e explanation) []string {
	r := e.idle[0]
	out := []string{}
	if s := e.drivers[0].socket.Effective(e.kernel); s.Keepalive && s.UserTimeout > 0 {
		out = append(out, fmt.Sprintf("TCP_USER_TIMEOUT overrides keepalives_count=%d: the kernel checks it only "+
			"when a probe is due and once a probe was sent, so the connection is closed at the first probe time "+
			">= %s after the last ACK (after %d probe(s)), not after %d unanswered probes (%s).",
			s.KeepCount, timeline.Format(s.UserTimeout), timeline.IdleProbes(s.KeepIdle, s.KeepIntvl, s.UserTimeout),
			s.KeepCount, timeline.Format(s.KeepIdle+time.Duration(s.KeepCount)*s.KeepIntvl)))
	}
	if r.Cause == timeline.CauseDeadPeerWindow {
		k := timeline.Idle(e.kernel, e.drivers[0].socket)
		out = append(out, fmt.Sprintf("The watcher's time is for a connection waiting for a query's result (a Read "+
			"blocked). A connection idle in the pool is not watched (it costs no system call): the kernel's "+
			"keep-alive closes it at %s (%s) and pgfast's checkout drops it then, without a round trip; the raw "+
			"drivers fail the next query on it.", timeline.FormatLong(k.Detected), k.Cause))
		return out
	}
	if !r.Never {
		out = append(out, "pgfast then drops the connection at the next checkout without a round trip; "+
			"the raw drivers fail the next query on it.")
	}
	return out
}

func unackedRemarks(e explanation) []string {
	return []string{
		fmt.Sprintf("The retransmission timeout is assumed to start at tcp_rto_min=%s (a fast path) and doubles up to %s.",
			timeline.Format(e.kernel.RTOMin), timeline.Format(e.kernel.RTOMax)),
		"TCP_USER_TIMEOUT counts from the first retransmission and replaces tcp_retries2.",
		watchRule(e),
	}
}

// watchRule states pgfast's dead-peer rule with the DSN's window.
func watchRule(e explanation) string {
	w := e.drivers[0].watch
	if w == nil {
		return ""
	}
	return fmt.Sprintf("pgfast's dead-peer rule: while a Read or Write is blocked, pgfast samples the socket's TCP_INFO "+
		"every %s (idle sockets cost nothing); the server is silent when something is outstanding (data unacknowledged, "+
		"a keep-alive or window probe unanswered), nothing came from it for %s (the dead-peer window: tcp_user_timeout "+
		"when set, else %s), and that held for %s. Then pgfast shuts the socket down and evicts the address "+
		"(host-level: Down). A reset, EOF or a FATAL only drops that connection (connection-level).",
		timeline.Format(timeline.WatchTick), timeline.Format(w.Window), timeline.Format(pgfast.DefaultDeadPeerWindow),
		timeline.Format(timeline.WatchConfirm))
}

func stallRemarks(e explanation) []string {
	out := []string{"The server answers every window probe, so pgfast's watcher never takes it for dead; " +
		"a lock wait lasts as long as the server makes it last, as with the raw drivers."}
	if ut := e.drivers[0].socket.UserTimeout; ut > 0 {
		out = append(out, fmt.Sprintf("tcp_user_timeout=%s is set: since Linux 5.1 the kernel aborts the stall then. "+
			"pgfast drops only that connection (the server was heard recently: connection-level, no eviction); "+
			"leave tcp_user_timeout unset to let such a COPY finish.", timeline.Format(ut)))
	}
	return out
}

// wrapWidth is the width notes and remarks are wrapped to.
const wrapWidth = 100

// writeWrapped prints text wrapped at word boundaries, the first line
// starting with first and the others with rest.
func writeWrapped(w io.Writer, first, rest, text string) {
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && len(line)+1+len(word) > wrapWidth {
			fmt.Fprintln(w, line)
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	fmt.Fprintln(w, line)
}

// cellsFor is a table row: label, then one cell per driver.
func cellsFor(drivers []driverModel, label string, f func(driverModel) string) []string {
	cells := []string{label}
	for _, d := range drivers {
		cells = append(cells, f(d))
	}
	return cells
}

// resultCells is a table row of results; long formats durations of minutes.
func resultCells(label string, results []timeline.Result, f func(timeline.Result) string, long func(time.Duration) string) []string {
	cells := []string{label}
	for _, r := range results {
		if long != nil && !r.Never {
			cells = append(cells, long(r.Detected))
			continue
		}
		cells = append(cells, f(r))
	}
	return cells
}

// sameResult reports whether two results print the same.
func sameResult(a, b timeline.Result) bool {
	return a.Detected == b.Detected && a.Never == b.Never && a.Cause == b.Cause && slices.Equal(a.Events, b.Events)
}

// keepaliveText renders effective keep-alive timings: "10s / 5s / 3".
func keepaliveText(s timeline.Socket) string {
	if !s.Keepalive {
		return "off"
	}
	return fmt.Sprintf("%s / %s / %d", timeline.Format(s.KeepIdle), timeline.Format(s.KeepIntvl), s.KeepCount)
}

// kernelText lists the sysctls explain uses.
func kernelText(k timeline.Kernel) string {
	return fmt.Sprintf("tcp_syn_retries=%d tcp_syn_linear_timeouts=%d tcp_retries2=%d tcp_rto_min=%s tcp_rto_max=%s "+
		"tcp_keepalive_time=%s tcp_keepalive_intvl=%s tcp_keepalive_probes=%d",
		k.SynRetries, k.SynLinearTimeouts, k.Retries2, timeline.Format(k.RTOMin), timeline.Format(k.RTOMax),
		timeline.Format(k.KeepaliveTime), timeline.Format(k.KeepaliveIntvl), k.KeepaliveProbes)
}

// hostsText lists the DSN's hosts.
func hostsText(hosts []pgfast.HostPort) string {
	var parts []string
	for _, h := range hosts {
		s := h.String()
		if h.Addr != "" {
			s += "(" + h.Addr + ")"
		}
		if !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return orNone(strings.Join(parts, ","))
}

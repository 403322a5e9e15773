package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgfast/pgfast"
	"github.com/pgfast/pgfast/internal/diag"
)

// writeProbeText prints a probe report for people; plan is what the DSN's
// sslmode asked for (see tlsPlanOf).
func writeProbeText(w io.Writer, rep *diag.Report, plan tlsPlan) {
	c := configOf(rep.Config)
	fmt.Fprintf(w, "pgfast probe: %starget_session_attrs=%s load_balance_hosts=%s\n",
		identityText(rep.User, rep.Database), c.TargetSessionAttrs, c.LoadBalanceHosts)
	fmt.Fprintf(w, "settings: %s\n", settingsText(c))
	for _, h := range rep.Hosts {
		fmt.Fprintln(w)
		writeHostText(w, h, c, plan)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, verdictText(rep))
}

// settingsText summarizes the effective TCP settings.
func settingsText(c pgfast.Config) string {
	ka := "keepalives=off"
	if c.Keepalives {
		ka = fmt.Sprintf("keepalives idle=%s interval=%s count=%s",
			orOSDefault(c.KeepalivesIdle), orOSDefault(c.KeepalivesInterval), countOrOSDefault(c.KeepalivesCount))
	}
	return fmt.Sprintf("connect_timeout=%s per address, %s, tcp_user_timeout=%s",
		formatElapsed(c.ConnectTimeout), ka, userTimeoutText(c.TCPUserTimeout))
}

// writeHostText prints one host and its addresses.
func writeHostText(w io.Writer, h diag.HostReport, c pgfast.Config, plan tlsPlan) {
	title := "host " + h.String()
	if h.HostAddr != "" {
		title += " (hostaddr " + h.HostAddr + ")"
	}
	switch {
	case h.ResolveErr != nil:
		fmt.Fprintf(w, "%s: cannot resolve: %v\n", title, h.ResolveErr)
		return
	case len(h.Addrs) == 0:
		fmt.Fprintf(w, "%s: not probed (interrupted)\n", title)
		return
	case len(h.Addrs) > 1:
		title += fmt.Sprintf(": %d addresses", len(h.Addrs))
	}
	fmt.Fprintln(w, title)
	width := 0
	for _, a := range h.Addrs {
		width = max(width, len(a.Addr))
	}
	for _, a := range h.Addrs {
		writeAddrText(w, a, width, c, plan)
	}
}

// writeAddrText prints one address: the connect outcome on the first line,
// then what followed, indented.
func writeAddrText(w io.Writer, a diag.AddrReport, width int, c pgfast.Config, plan tlsPlan) {
	head := fmt.Sprintf("  %-*s  %s in %s", width, a.Addr, a.Dial, formatElapsed(a.DialTime))
	if a.Dial != diag.DialConnected {
		fmt.Fprintf(w, "%s: %s\n", head, dialErrorText(a, c.ConnectTimeout))
		return
	}
	fmt.Fprintln(w, head)
	line := func(k, format string, args ...any) {
		fmt.Fprintf(w, "      %-9s"+format+"\n", append([]any{k + ":"}, args...)...)
	}
	line("TLS", "%s", tlsText(a, c.ConnectTimeout, plan))
	if a.TLSErr != nil {
		return
	}
	if !a.Authenticated {
		line("auth", "failed: %s", stageErrorText(a.StartupErr, c.ConnectTimeout))
		return
	}
	line("auth", "%s", authOKText(a.TLS, formatElapsed(a.Elapsed)))
	line("server", "%s", serverText(a))
	if a.Network == "tcp" {
		line("socket", "%s", socketText(a))
	}
}

// dialErrorText says briefly why connect() failed: the operation and
// address the line already shows are left out.
func dialErrorText(a diag.AddrReport, connectTimeout time.Duration) string {
	if a.Dial == diag.DialTimedOut && a.DialTime >= connectTimeout-connectTimeout/20 {
		return "no answer within connect_timeout=" + formatElapsed(connectTimeout)
	}
	var sys *os.SyscallError
	var op *net.OpError
	switch {
	case errors.As(a.DialErr, &sys):
		return sys.Err.Error()
	case errors.As(a.DialErr, &op) && op.Err != nil:
		return op.Err.Error()
	}
	return conciseError(a.DialErr)
}

// stageErrorText says why TLS or startup failed; running out of
// connect_timeout is said in those words.
func stageErrorText(err error, connectTimeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "no answer within connect_timeout=" + formatElapsed(connectTimeout)
	}
	return conciseError(err)
}

// tlsText describes the TLS outcome of an address.
func tlsText(a diag.AddrReport, connectTimeout time.Duration, plan tlsPlan) string {
	switch {
	case a.TLSErr != nil:
		return "failed: " + stageErrorText(a.TLSErr, connectTimeout)
	case a.TLS != "":
		return a.TLS
	case a.TLSFallback:
		return "none: the server refused TLS, continued without it (sslmode=prefer)"
	case a.Network == "unix":
		return "none (Unix socket)"
	case !a.Authenticated && a.StartupErr != nil:
		return failedTLSText(plan)
	}
	return "none (not requested by sslmode)"
}

// serverText describes the server: version, role, read-only default.
func serverText(a diag.AddrReport) string {
	version := "PostgreSQL " + a.ServerVersion
	if a.ServerVersion == "" {
		version = "PostgreSQL (version not reported)"
	}
	if !a.RoleKnown {
		return fmt.Sprintf("%s, role unknown: %s", version, conciseError(a.RoleErr))
	}
	ro := "off"
	if a.ReadOnly {
		ro = "on"
	}
	return fmt.Sprintf("%s, %s, default_transaction_read_only=%s", version, a.Role(), ro)
}

// socketText lists the socket options read back from the socket.
func socketText(a diag.AddrReport) string {
	if a.Socket == nil {
		return "options unreadable: " + conciseError(a.SocketErr)
	}
	s := a.Socket
	ka := "off"
	if s.Keepalive {
		ka = "on"
	}
	return fmt.Sprintf("SO_KEEPALIVE=%s TCP_KEEPIDLE=%s TCP_KEEPINTVL=%s TCP_KEEPCNT=%d TCP_USER_TIMEOUT=%s",
		ka, formatElapsed(s.KeepalivesIdle), formatElapsed(s.KeepalivesInterval), s.KeepalivesCount, userTimeoutText(s.TCPUserTimeout))
}

// verdictText is the last line: which address target_session_attrs picks.
func verdictText(rep *diag.Report) string {
	attrs := configOf(rep.Config).TargetSessionAttrs
	if a := rep.Picked(); a != nil {
		h := rep.Hosts[rep.Pick.Host]
		return fmt.Sprintf("usable: target_session_attrs=%s picks %s (host %s)", attrs, a.Addr, h.String())
	}
	reached := 0
	for _, h := range rep.Hosts {
		for _, a := range h.Addrs {
			if a.Authenticated {
				reached++
			}
		}
	}
	if reached == 0 {
		return "no usable server: no address accepted a connection and authenticated"
	}
	return fmt.Sprintf("no usable server: %d server(s) reached, none accepted by target_session_attrs=%s", reached, attrs)
}

// conciseError renders err on one line: a server error as its severity,
// message and SQLSTATE, anything else as is.
func conciseError(err error) string {
	if err == nil {
		return "unknown error"
	}
	var pgErr *pgconn.PgError
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", pgErr.Severity, pgErr.Message, pgErr.Code)
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// formatElapsed renders a measured duration with sensible precision.
func formatElapsed(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// userTimeoutText renders TCP_USER_TIMEOUT ("not set" for 0).
func userTimeoutText(d time.Duration) string {
	if d <= 0 {
		return "not set"
	}
	return formatElapsed(d)
}

func orOSDefault(d time.Duration) string {
	if d <= 0 {
		return "OS default"
	}
	return formatElapsed(d)
}

func countOrOSDefault(n int) string {
	if n <= 0 {
		return "OS default"
	}
	return fmt.Sprint(n)
}

// identityText is "user=U database=D " for a report's first line, leaving
// out what the DSN does not set (the server then applies its defaults).
func identityText(user, database string) string {
	var b strings.Builder
	if user != "" {
		b.WriteString("user=" + user + " ")
	}
	if database != "" {
		b.WriteString("database=" + database + " ")
	}
	return b.String()
}

// orNone renders an empty list as "(none)".
func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

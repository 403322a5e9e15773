package pgfast

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/netx"
)

// The probe's verdicts: causes, TLS, roles, redaction, dial outcomes, pick.

// tlsName names nc's TLS version and cipher suite, or "" without a completed
// handshake.
func tlsName(nc net.Conn) string {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if !st.HandshakeComplete {
		return ""
	}
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

// probeCause strips what pgconn wraps around an attempt's cause (user,
// database, address: the report has them). With several attempts
// (sslmode=prefer) the first's cause is kept when first is set, else the last's.
func probeCause(err error, addr string, first bool) error {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return err
	}
	inner := ce.Unwrap()
	if j, ok := inner.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			inner = errs[len(errs)-1]
			if first {
				inner = errs[0]
			}
		}
	}
	if inner == nil {
		return err
	}
	if u := errors.Unwrap(inner); u != nil && strings.HasPrefix(inner.Error(), addr+" ") {
		inner = u
	}
	return inner
}

var errProbeConnectTimeout = errors.New("pgfast: connect_timeout reached")

// role finds out whether the server is a standby and whether sessions are
// read-only: from PostgreSQL 14+'s startup parameters, else a query.
func (pr *prober) role(ctx context.Context, conn *pgconn.PgConn, ar *diag.AddrReport) {
	standby := conn.ParameterStatus("in_hot_standby")
	readOnly := conn.ParameterStatus("default_transaction_read_only")
	if standby == "" || readOnly == "" {
		qctx, cancel := context.WithTimeout(ctx, pr.cfg.ConnectTimeout)
		defer cancel()
		res, err := conn.Exec(qctx, "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('default_transaction_read_only')").ReadAll()
		if err != nil {
			ar.RoleErr = pr.redact(err)
			return
		}
		if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 2 {
			ar.RoleErr = errors.New("pgfast: unexpected answer to the role query")
			return
		}
		row := res[0].Rows[0]
		standby, readOnly = "off", string(row[1])
		if string(row[0]) == "t" {
			standby = "on"
		}
	}
	ar.RoleKnown, ar.Standby, ar.ReadOnly = true, standby == "on", readOnly == "on"
}

func (pr *prober) emit(e diag.Event) {
	if pr.opts.progress == nil {
		return
	}
	e.At = time.Now()
	pr.opts.progress(e)
}

// redact returns err, or the same chain with its message scrubbed.
func (pr *prober) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := redactAll(err.Error(), pr.secrets)
	if msg == err.Error() {
		return err
	}
	return &probeRedactedError{msg: msg, err: err}
}

// probeRedactedError is an error whose message had a secret scrubbed.
type probeRedactedError struct {
	msg string
	err error
}

func (e *probeRedactedError) Error() string { return e.msg }
func (e *probeRedactedError) Unwrap() error { return e.err }

func probeClose(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// dialOutcomeOf names how a connect() ended, by the core's evidence
// classifier: host-level is a refusal, an unreachable host or the kernel
// giving up; a deadline is a timeout; cancellation its own outcome.
func dialOutcomeOf(err error) diag.DialOutcome {
	if err == nil {
		return diag.DialConnected
	}
	if errors.Is(err, context.Canceled) {
		return diag.DialCancelled
	}
	switch {
	case netx.IsHostLevel(err):
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return diag.DialRefused
		case errors.Is(err, syscall.ETIMEDOUT):
			return diag.DialTimedOut
		}
		return diag.DialUnreachable
	case netx.IsDeadline(err): // never host-level: classify's noEvidence
		return diag.DialTimedOut
	}
	return diag.DialFailed
}

// probePick returns the first address, in host order, that
// target_session_attrs accepts (libpq's rules, prefer-standby's two passes
// included), or nil.
func probePick(hosts []diag.HostReport, attrs string) *diag.Pick {
	first := func(want string) *diag.Pick {
		for i := range hosts {
			for j := range hosts[i].Addrs {
				if probeAccepts(&hosts[i].Addrs[j], want) {
					return &diag.Pick{Host: i, Addr: j}
				}
			}
		}
		return nil
	}
	if attrs == "prefer-standby" {
		if p := first("standby"); p != nil {
			return p
		}
		return first("any")
	}
	return first(attrs)
}

// probeAccepts applies the driver's rule (roleViolation); a role the probe
// could not find out is accepted only where no role is asked for.
func probeAccepts(a *diag.AddrReport, want string) bool {
	if !a.Authenticated {
		return false
	}
	switch want {
	case "", "any":
		return true // and pgx's custom validators, which a DSN cannot name
	}
	if !a.RoleKnown {
		return false
	}
	why, _ := roleViolation(want, reportedRole{standby: a.Standby, readOnly: a.ReadOnly})
	return why == ""
}

// reportedRole is a probed role as roleViolation's ParameterStatus values.
type reportedRole struct{ standby, readOnly bool }

func (r reportedRole) ParameterStatus(key string) string {
	on := map[bool]string{true: "on", false: "off"}
	switch key {
	case "in_hot_standby":
		return on[r.standby]
	case "default_transaction_read_only":
		return on[r.readOnly]
	}
	return ""
}

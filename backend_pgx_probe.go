package pgfast

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgfast/pgfast/internal/diag"
)

// This file is the pgx adapter's side of internal/diag, what the pgfast command
// (cmd/pgfast) needs: the DSN's meaning without connecting (inspectDSN) and
// a diagnostic connection to every address of every host (probe). They are
// installed into internal/diag at init (see that package's doc); nothing
// here is exported. The probe is built from the driver's own pieces: the pgx
// adapter's parse and host groups, the dialer with its socket options, the
// core's role rule (roleViolation) and its evidence classifier (classify).

func init() {
	diag.Install(diag.Impl{
		InspectDSN: func(dsn string, backend any) (*diag.DSNInfo, error) {
			b, ok := backend.(Backend)
			if !ok {
				return nil, &ConfigError{Reason: fmt.Sprintf("unknown backend %v", backend)}
			}
			return inspectDSN(dsn, b)
		},
		Probe: func(ctx context.Context, dsn string, progress func(diag.Event)) (*diag.Report, error) {
			return probe(ctx, dsn, probeOptions{progress: progress})
		},
	})
}

// inspectDSN parses dsn with backend b's parser, as NewConnector does, and
// also reports what the raw backend driver would make of it. A bad DSN is a
// *ConfigError.
func inspectDSN(dsn string, b Backend) (*diag.DSNInfo, error) {
	info := &diag.DSNInfo{Backend: b}
	var p *parsedDSN
	switch b {
	case PGX:
		a, parsed, err := parsePGX(dsn)
		if err != nil {
			return nil, err
		}
		p, info.User, info.Database = parsed, a.cfg.User, a.cfg.Database
	case LibPQ:
		a, parsed, err := parsePQ(dsn)
		if err != nil {
			return nil, err
		}
		p, info.User, info.Database = parsed, a.cfg.User, a.cfg.Database
	default:
		return nil, &ConfigError{Reason: "unknown backend " + b.String()}
	}
	info.RawConnectTimeout = p.connectTimeout
	info.Forwarded = map[string]string{}
	for _, k := range libpqTCPKeys {
		if v, ok := p.leftover[k]; ok {
			info.Forwarded[k] = v
		}
	}
	cfg, err := buildConfig(p)
	if err != nil {
		return nil, err
	}
	info.Config = *cfg
	return info, nil
}

// probeOptions configures probe.
type probeOptions struct {
	progress func(diag.Event)
	resolver Resolver // nil: net.DefaultResolver
}

// probe does diag.Probe's work (see there).
func probe(ctx context.Context, dsn string, o probeOptions) (*diag.Report, error) {
	a, p, err := parsePGX(dsn)
	if err != nil {
		return nil, err
	}
	cfg, err := configure(a, p)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pr := &prober{
		a:       a,
		cfg:     cfg,
		d:       newDialer(cfg.dialSettings(), o.resolver),
		opts:    o,
		secrets: []string{a.cfg.Password, passwordOf(dsn)},
	}
	rep := &diag.Report{User: a.cfg.User, Database: a.cfg.Database, Config: *cfg}
	for _, g := range a.groups {
		if ctx.Err() != nil {
			break
		}
		rep.Hosts = append(rep.Hosts, pr.host(ctx, g))
	}
	rep.Pick = probePick(rep.Hosts, cfg.TargetSessionAttrs)
	rep.Elapsed = time.Since(start)
	return rep, ctx.Err()
}

// prober holds what probing every address needs.
type prober struct {
	a       *pgxAdapter
	cfg     *Config
	d       *dialer
	opts    probeOptions
	secrets []string
}

// probeTarget is one address to probe.
type probeTarget struct {
	network string // "tcp" or "unix"
	addr    string // ip:port, or the socket path
	ip      string // the IP address alone, for tcp
}

// host probes every address of one host.
func (pr *prober) host(ctx context.Context, g hostGroup) diag.HostReport {
	hr := diag.HostReport{Host: g.Host, Port: g.Port, HostAddr: g.Addr}
	pr.emit(diag.Event{Stage: diag.Resolving, Host: hr.String()})
	targets, err := pr.targets(ctx, g, hr.HostAddr)
	if err != nil {
		hr.ResolveErr = pr.redact(err)
		return hr
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		ar := pr.addr(ctx, g, t)
		hr.Addrs = append(hr.Addrs, ar)
		pr.emit(diag.Event{Stage: diag.AddrDone, Host: hr.String(), Addr: t.addr, Result: &ar})
	}
	return hr
}

// targets resolves a host the way pgfast's dialer does (a fresh lookup,
// families interleaved); a hostaddr or an IP literal is used as is.
func (pr *prober) targets(ctx context.Context, g hostGroup, hostaddr string) ([]probeTarget, error) {
	if strings.HasPrefix(g.Host, "/") {
		network, addr := pgconn.NetworkAddress(g.Host, g.Port)
		return []probeTarget{{network: network, addr: addr}}, nil
	}
	host := g.Host
	if hostaddr != "" {
		host = hostaddr
	}
	ctx, cancel := context.WithTimeout(ctx, pr.cfg.ConnectTimeout) // bound a hanging resolver
	defer cancel()
	ips, err := pr.d.resolve(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	out := make([]probeTarget, len(ips))
	for i, ip := range ips {
		out[i] = probeTarget{network: "tcp", addr: netip.AddrPortFrom(ip, g.Port).String(), ip: ip.String()}
	}
	return out, nil
}

// addr probes one address: connect through pgfast's dialer, then TLS,
// startup and authentication through pgconn, then the server's role.
func (pr *prober) addr(ctx context.Context, g hostGroup, t probeTarget) (ar diag.AddrReport) {
	start := time.Now()
	ar = diag.AddrReport{Network: t.network, Addr: t.addr}
	defer func() { ar.Elapsed = time.Since(start) }()
	// connect_timeout bounds the whole attempt (dial, TLS, startup, auth),
	// as in the driver; the dialer applies it to connect() as well.
	ctx, cancel := context.WithTimeoutCause(ctx, pr.cfg.ConnectTimeout, errProbeConnectTimeout)
	defer cancel()
	emit := func(st diag.Stage) {
		pr.emit(diag.Event{Stage: st, Host: joinHostPort(g.Host, g.Port), Addr: t.addr})
	}
	var (
		dials   int
		netDone bool // TLS (if any) done: the server got as far as startup
	)
	pc := pr.a.cfg.Config.Copy()
	pc.Host, pc.Port, pc.TLSConfig, pc.Fallbacks = g.Host, g.Port, g.tls[0], nil
	for _, tc := range g.tls[1:] {
		pc.Fallbacks = append(pc.Fallbacks, &pgconn.FallbackConfig{Host: g.Host, Port: g.Port, TLSConfig: tc})
	}
	pc.LookupFunc = func(context.Context, string) ([]string, error) { return []string{t.ip}, nil }
	pc.ConnectTimeout = 0 // ctx has the deadline
	pc.ValidateConnect, pc.AfterConnect = nil, nil
	pc.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		if dials > 0 && ar.DialErr != nil {
			return nil, ar.DialErr // a TLS fallback would only wait for it again
		}
		dials++
		emit(diag.Dialing)
		t0 := time.Now()
		c, err := pr.d.DialContext(ctx, network, address)
		if dials == 1 {
			ar.DialTime, ar.DialErr = time.Since(t0), pr.redact(err)
		}
		if err == nil {
			emit(diag.Startup)
		}
		return c, err
	}
	var lastNet net.Conn // the latest attempt's connection, after TLS
	pc.AfterNetConnect = func(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
		netDone, lastNet = true, c
		return c, nil
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	switch {
	case err == nil:
	case dials == 0:
		ar.Dial, ar.DialErr = dialOutcomeOf(err), pr.redact(probeCause(err, t.addr, false))
		return ar
	case ar.DialErr != nil:
		ar.Dial = dialOutcomeOf(ar.DialErr)
		return ar
	case !netDone:
		ar.Dial, ar.TLSErr = diag.DialConnected, pr.redact(probeCause(err, t.addr, true))
		return ar
	default:
		// Startup or authentication failed after the connection was made:
		// say whether that last attempt ran over TLS (its handshake is
		// complete once the server answered the startup).
		ar.Dial, ar.StartupErr = diag.DialConnected, pr.redact(probeCause(err, t.addr, false))
		ar.TLS = tlsName(lastNet)
		return ar
	}
	defer probeClose(conn)
	ar.Dial, ar.Authenticated = diag.DialConnected, true
	ar.ServerVersion = conn.ParameterStatus("server_version")
	nc := conn.Conn()
	if ar.TLS = tlsName(nc); ar.TLS == "" && g.tls[0] != nil {
		ar.TLSFallback = true
	}
	if t.network == "tcp" {
		if so, err := readSocketOptions(nc); err == nil {
			ar.Socket = &so
		} else {
			ar.SocketErr = err
		}
	}
	emit(diag.Querying)
	pr.role(ctx, conn, &ar)
	return ar
}

// tlsName names the TLS version and cipher suite of nc, or "" when nc is
// not a TLS connection whose handshake completed.
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

// probeCause strips what pgconn wraps around the cause of a failed attempt:
// the user, database and address, which the report holds anyway. With
// several attempts (sslmode=prefer: TLS, then without) the first one's
// cause is kept when first is set, else the last one's.
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

// errProbeConnectTimeout is the cause of a probe attempt's deadline.
var errProbeConnectTimeout = errors.New("pgfast: connect_timeout reached")

// role finds out whether the server is a standby and whether sessions are
// read-only: from the parameters PostgreSQL 14+ reports at startup, else
// with a query.
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

// redact returns err, or an error with the same chain whose message has the
// DSN's password scrubbed if it quoted it.
func (pr *prober) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range pr.secrets {
		msg = redactSecret(msg, s)
	}
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

// probeClose closes conn, waiting at most a second for the server.
func probeClose(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// dialOutcomeOf names how a connect() ended, with the core's evidence
// classifier (classify.go) deciding what the error says about the server:
// host-level evidence is a refusal, an unreachable host or the kernel giving
// up; a deadline pgfast or the caller set is a timeout; the caller's
// cancellation is its own outcome; anything else is a plain failure.
func dialOutcomeOf(err error) diag.DialOutcome {
	if err == nil {
		return diag.DialConnected
	}
	if errors.Is(err, context.Canceled) {
		return diag.DialCancelled
	}
	switch classify(err, nil, 0) {
	case hostLevel:
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return diag.DialRefused
		case errors.Is(err, syscall.ETIMEDOUT):
			return diag.DialTimedOut
		}
		return diag.DialUnreachable
	case noEvidence:
		if isDeadline(err) {
			return diag.DialTimedOut
		}
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

// probeAccepts reports whether target_session_attrs=want accepts a, by the
// rule the driver applies to its connections (roleViolation). A role the
// probe could not find out is accepted only where no role is asked for.
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

// reportedRole gives a probed server's role as the ParameterStatus values
// roleViolation reads.
type reportedRole struct{ standby, readOnly bool }

// ParameterStatus answers in_hot_standby and default_transaction_read_only.
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

package pgfast

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// This file is what the pgfast command (cmd/pgfast) needs from the driver:
// the DSN's meaning without connecting (ParseConfig, InspectDSN) and a
// diagnostic connection to every address of every host (Probe).

// ParseConfig parses dsn as NewConnector does with backend b (the backend's
// own parser, libpq environment variables, service and password files) and
// returns pgfast's effective settings, without connecting or starting
// anything. A bad DSN is a *ConfigError.
func ParseConfig(dsn string, b Backend) (Config, error) {
	info, err := InspectDSN(dsn, b)
	if err != nil {
		return Config{}, err
	}
	return info.Config, nil
}

// DSNInfo says what a DSN means to pgfast and to the raw backend driver.
// It holds no password.
type DSNInfo struct {
	// Backend is the driver whose parser read the DSN.
	Backend Backend
	// Config is pgfast's effective settings, defaults applied.
	Config Config
	// User and Database are the role and database the DSN connects as and to.
	User, Database string
	// RawConnectTimeout is connect_timeout as the raw driver reads it: 0 when
	// unset or 0, which the raw drivers take as "no limit".
	RawConnectTimeout time.Duration
	// Forwarded holds the libpq TCP keys of the DSN (keepalives*,
	// tcp_user_timeout). The raw drivers do not understand them and send them
	// to the server as runtime parameters; pgfast consumes them instead.
	Forwarded map[string]string
}

// InspectDSN parses dsn with backend b's parser, like ParseConfig, and also
// reports what the raw backend driver would make of it. A bad DSN is a
// *ConfigError.
func InspectDSN(dsn string, b Backend) (*DSNInfo, error) {
	info := &DSNInfo{Backend: b}
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

// ProbeOption configures Probe.
type ProbeOption func(*probeOptions)

type probeOptions struct {
	progress func(ProbeEvent)
	resolver hostResolver // nil: net.DefaultResolver
}

// WithProbeProgress makes Probe call f whenever it starts a stage of its
// work, and when it is done with an address. f runs on Probe's goroutine.
func WithProbeProgress(f func(ProbeEvent)) ProbeOption {
	return func(o *probeOptions) { o.progress = f }
}

// ProbeStage is what Probe is doing.
type ProbeStage string

// The stages of Probe, in order.
const (
	ProbeResolving ProbeStage = "resolving"          // looking up a host's addresses
	ProbeDialing   ProbeStage = "dialing"            // TCP (or Unix socket) connect
	ProbeStartup   ProbeStage = "TLS, startup, auth" // after connect, until authenticated
	ProbeQuerying  ProbeStage = "querying"           // asking the server for its role
	ProbeAddrDone  ProbeStage = "done"               // an address is finished; Event.Result says how
)

// ProbeEvent reports progress of Probe.
type ProbeEvent struct {
	Stage ProbeStage
	Host  string    // the DSN's host:port (or socket directory and port)
	Addr  string    // the address being probed; empty while resolving
	At    time.Time // when the stage began
	// Result is the address's outcome, with ProbeAddrDone only.
	Result *AddrReport
}

// ProbeReport is what Probe found out about every server of a DSN. It holds
// no password, and no error in it quotes one.
type ProbeReport struct {
	// User and Database are the role and database the DSN connects as and to.
	User, Database string
	// Config is pgfast's effective settings, defaults applied.
	Config Config
	// Hosts lists the DSN's hosts in order, each with its addresses.
	Hosts []HostReport
	// Pick is the address target_session_attrs would choose (in the DSN's
	// host order; load_balance_hosts=random would shuffle the hosts), nil if
	// none qualifies.
	Pick *ProbePick
	// Elapsed is how long the whole probe took.
	Elapsed time.Duration
}

// Usable reports whether a server was found that the DSN's
// target_session_attrs accepts.
func (r *ProbeReport) Usable() bool { return r.Picked() != nil }

// Picked returns the address target_session_attrs would choose, or nil.
func (r *ProbeReport) Picked() *AddrReport {
	if r.Pick == nil {
		return nil
	}
	return &r.Hosts[r.Pick.Host].Addrs[r.Pick.Addr]
}

// ProbePick locates an address in a ProbeReport.
type ProbePick struct {
	Host int // index into ProbeReport.Hosts
	Addr int // index into that host's Addrs
}

// HostReport is one host of the DSN with the outcome of each of its addresses.
type HostReport struct {
	Host     string // as in the DSN: a name, an IP address, or a socket directory
	Port     uint16
	HostAddr string // the hostaddr given for it, if any
	// ResolveErr says why the host's addresses could not be looked up.
	ResolveErr error
	// Addrs lists the host's addresses in the order pgfast's dialer tries
	// them (families interleaved), each probed on its own.
	Addrs []AddrReport
}

// String returns host:port, or the socket directory and port.
func (h HostReport) String() string { return joinHostPort(h.Host, h.Port) }

// DialOutcome is how connecting to one address ended.
type DialOutcome string

// Dial outcomes.
const (
	DialConnected   DialOutcome = "connected"
	DialRefused     DialOutcome = "refused"     // RST: nothing listens there
	DialTimedOut    DialOutcome = "timed out"   // no answer within connect_timeout, or the kernel gave up
	DialUnreachable DialOutcome = "unreachable" // no route to the host or network
	DialCancelled   DialOutcome = "cancelled"   // the caller's context ended
	DialFailed      DialOutcome = "failed"      // anything else, see DialErr
)

// AddrReport is the outcome of probing one address.
type AddrReport struct {
	Network string // "tcp" or "unix"
	Addr    string // "127.0.0.1:5432", "[::1]:5432", or the socket path

	Dial     DialOutcome
	DialTime time.Duration // how long connect() took, success or not
	DialErr  error

	// TLS names the protocol version and cipher suite; empty when the
	// connection is not encrypted.
	TLS string
	// TLSFallback is set when a TLS attempt failed and the driver went on
	// without TLS (sslmode=prefer).
	TLSFallback bool
	// TLSErr says why TLS failed when that ended the attempt.
	TLSErr error

	// Authenticated is set when startup and authentication succeeded.
	Authenticated bool
	// StartupErr says why the server did not accept the session (for
	// example *pgconn.PgError 28P01, a wrong password) or why the connection
	// broke during startup.
	StartupErr error

	ServerVersion string // server_version as the server reports it
	// RoleKnown is set when Standby and ReadOnly could be found out.
	RoleKnown bool
	Standby   bool // in hot standby (in_hot_standby, or pg_is_in_recovery())
	ReadOnly  bool // default_transaction_read_only is on
	RoleErr   error

	// Socket holds the TCP options read back from the socket; nil for Unix
	// sockets or when they could not be read (SocketErr).
	Socket    *SocketOptions
	SocketErr error

	Elapsed time.Duration // the whole attempt
}

// Role returns "primary", "standby", or "" when unknown.
func (a *AddrReport) Role() string {
	switch {
	case !a.RoleKnown:
		return ""
	case a.Standby:
		return "standby"
	}
	return "primary"
}

// Err returns the error that ended the attempt, nil if it succeeded.
func (a *AddrReport) Err() error {
	for _, err := range []error{a.DialErr, a.TLSErr, a.StartupErr} {
		if err != nil {
			return err
		}
	}
	return nil
}

// Probe connects to every address of every host of dsn, one after another,
// with pgfast's dialer and settings (socket options, connect_timeout per
// address), and reports for each how connecting, TLS and authentication went,
// the server's version and role, and the socket options in effect. It closes
// every connection it makes. The DSN is read with pgx's parser.
//
// The error is a *ConfigError for a bad DSN (and the report nil), or ctx's
// error when ctx ended first (the report then covers what was probed).
// Unreachable servers are not errors: they are in the report.
func Probe(ctx context.Context, dsn string, opts ...ProbeOption) (*ProbeReport, error) {
	var o probeOptions
	for _, opt := range opts {
		opt(&o)
	}
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
	rep := &ProbeReport{User: a.cfg.User, Database: a.cfg.Database, Config: *cfg}
	for _, g := range probeHostGroups(a) {
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

// probeHostGroup is one host of the DSN with the TLS configurations pgx
// tries for it, in order (sslmode=prefer: TLS, then none).
type probeHostGroup struct {
	host string
	port uint16
	addr string // hostaddr, if any
	tls  []*tls.Config
}

// probeHostGroups lists the host groups pgx's parse reported.
func probeHostGroups(a *pgxAdapter) []probeHostGroup {
	groups := make([]probeHostGroup, len(a.groups))
	for i, g := range a.groups {
		groups[i] = probeHostGroup{host: g.Host, port: g.Port, addr: g.Addr, tls: g.tls}
	}
	return groups
}

// probeTarget is one address to probe.
type probeTarget struct {
	network string // "tcp" or "unix"
	addr    string // ip:port, or the socket path
	ip      string // the IP address alone, for tcp
}

// host probes every address of one host.
func (pr *prober) host(ctx context.Context, g probeHostGroup) HostReport {
	hr := HostReport{Host: g.host, Port: g.port, HostAddr: g.addr}
	pr.emit(ProbeEvent{Stage: ProbeResolving, Host: hr.String()})
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
		pr.emit(ProbeEvent{Stage: ProbeAddrDone, Host: hr.String(), Addr: t.addr, Result: &ar})
	}
	return hr
}

// targets resolves a host the way pgfast's dialer does (a fresh lookup,
// families interleaved); a hostaddr or an IP literal is used as is.
func (pr *prober) targets(ctx context.Context, g probeHostGroup, hostaddr string) ([]probeTarget, error) {
	if strings.HasPrefix(g.host, "/") {
		network, addr := pgconn.NetworkAddress(g.host, g.port)
		return []probeTarget{{network: network, addr: addr}}, nil
	}
	host := g.host
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
		out[i] = probeTarget{network: "tcp", addr: netip.AddrPortFrom(ip, g.port).String(), ip: ip.String()}
	}
	return out, nil
}

// addr probes one address: connect through pgfast's dialer, then TLS,
// startup and authentication through pgconn, then the server's role.
func (pr *prober) addr(ctx context.Context, g probeHostGroup, t probeTarget) (ar AddrReport) {
	start := time.Now()
	ar = AddrReport{Network: t.network, Addr: t.addr}
	defer func() { ar.Elapsed = time.Since(start) }()
	// connect_timeout bounds the whole attempt (dial, TLS, startup, auth),
	// as in the driver; the dialer applies it to connect() as well.
	ctx, cancel := context.WithTimeoutCause(ctx, pr.cfg.ConnectTimeout, errProbeConnectTimeout)
	defer cancel()
	emit := func(st ProbeStage) {
		pr.emit(ProbeEvent{Stage: st, Host: joinHostPort(g.host, g.port), Addr: t.addr})
	}
	var (
		dials   int
		netDone bool // TLS (if any) done: the server got as far as startup
	)
	pc := pr.a.cfg.Config.Copy()
	pc.Host, pc.Port, pc.TLSConfig, pc.Fallbacks = g.host, g.port, g.tls[0], nil
	for _, tc := range g.tls[1:] {
		pc.Fallbacks = append(pc.Fallbacks, &pgconn.FallbackConfig{Host: g.host, Port: g.port, TLSConfig: tc})
	}
	pc.LookupFunc = func(context.Context, string) ([]string, error) { return []string{t.ip}, nil }
	pc.ConnectTimeout = 0 // ctx has the deadline
	pc.ValidateConnect, pc.AfterConnect = nil, nil
	pc.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		if dials > 0 && ar.DialErr != nil {
			return nil, ar.DialErr // a TLS fallback would only wait for it again
		}
		dials++
		emit(ProbeDialing)
		t0 := time.Now()
		c, err := pr.d.DialContext(ctx, network, address)
		if dials == 1 {
			ar.DialTime, ar.DialErr = time.Since(t0), pr.redact(err)
		}
		if err == nil {
			emit(ProbeStartup)
		}
		return c, err
	}
	pc.AfterNetConnect = func(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
		netDone = true
		return c, nil
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	switch {
	case err == nil:
	case dials == 0:
		ar.Dial, ar.DialErr = probeDialOutcome(err), pr.redact(probeCause(err, t.addr, false))
		return ar
	case ar.DialErr != nil:
		ar.Dial = probeDialOutcome(ar.DialErr)
		return ar
	case !netDone:
		ar.Dial, ar.TLSErr = DialConnected, pr.redact(probeCause(err, t.addr, true))
		return ar
	default:
		ar.Dial, ar.StartupErr = DialConnected, pr.redact(probeCause(err, t.addr, false))
		return ar
	}
	defer probeClose(conn)
	ar.Dial, ar.Authenticated = DialConnected, true
	ar.ServerVersion = conn.ParameterStatus("server_version")
	nc := conn.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		ar.TLS = tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
	} else if g.tls[0] != nil {
		ar.TLSFallback = true
	}
	if t.network == "tcp" {
		if so, err := ReadSocketOptions(nc); err == nil {
			ar.Socket = &so
		} else {
			ar.SocketErr = err
		}
	}
	emit(ProbeQuerying)
	pr.role(ctx, conn, &ar)
	return ar
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
func (pr *prober) role(ctx context.Context, conn *pgconn.PgConn, ar *AddrReport) {
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

func (pr *prober) emit(e ProbeEvent) {
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

// probeDialOutcome classifies a failed connect().
func probeDialOutcome(err error) DialOutcome {
	var ne net.Error
	switch {
	case err == nil:
		return DialConnected
	case errors.Is(err, context.Canceled):
		return DialCancelled
	case errors.Is(err, syscall.ECONNREFUSED):
		return DialRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return DialUnreachable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT), errors.As(err, &ne) && ne.Timeout():
		return DialTimedOut
	}
	return DialFailed
}

// probePick returns the first address, in host order, that
// target_session_attrs accepts (libpq's rules), or nil.
func probePick(hosts []HostReport, attrs string) *ProbePick {
	first := func(want string) *ProbePick {
		for i := range hosts {
			for j := range hosts[i].Addrs {
				if probeAccepts(&hosts[i].Addrs[j], want) {
					return &ProbePick{Host: i, Addr: j}
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

// probeAccepts reports whether target_session_attrs=want accepts a.
func probeAccepts(a *AddrReport, want string) bool {
	if !a.Authenticated {
		return false
	}
	switch want {
	case "read-write":
		return a.RoleKnown && !a.Standby && !a.ReadOnly
	case "read-only":
		return a.RoleKnown && (a.Standby || a.ReadOnly)
	case "primary":
		return a.RoleKnown && !a.Standby
	case "standby":
		return a.RoleKnown && a.Standby
	}
	return true // any (and pgx's custom validators, which a DSN cannot name)
}

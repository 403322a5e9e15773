package pgfast

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/netx"
)

// The pgx adapter's side of internal/diag for cmd/pgfast: the DSN's meaning
// (inspectDSN) and a diagnostic connection to every address (probe),
// installed at init. The probe is built from the driver's own pieces, so it
// judges as the driver does.

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

// inspectDSN parses dsn as NewConnector does, and also reports what the raw
// driver would make of it. A bad DSN is a *ConfigError.
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
	asked := askedSettings(p) // before buildConfig takes pgfast's keys out of p
	cfg, err := buildConfig(p)
	if err != nil {
		return nil, err
	}
	info.Config = *cfg
	info.Platform = thisPlatform.diag(asked)
	return info, nil
}

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
		d:       netx.NewDialer(cfg.dialSettings(), o.resolver),
		opts:    o,
		secrets: p.secrets,
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

type prober struct {
	a       *pgxAdapter
	cfg     *Config
	d       *netx.Dialer
	opts    probeOptions
	secrets []string
}

type probeTarget struct {
	network string // "tcp" or "unix"
	addr    string // ip:port, or the socket path
	ip      string // the IP address alone, for tcp
}

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

// targets resolves a host as pgfast's dialer does; a hostaddr or IP literal
// is used as is.
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
	ips, err := pr.d.Resolve(ctx, "tcp", host)
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
	// connect_timeout bounds the whole attempt, as in the driver.
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
		// Failed after connecting: say whether over TLS (the handshake
		// is complete once the server answered the startup).
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
		if so, err := netx.ReadSocketOptions(nc); err == nil {
			ar.Socket = &so
		} else {
			ar.SocketErr = err
		}
	}
	emit(diag.Querying)
	pr.role(ctx, conn, &ar)
	return ar
}

package pgfast

import (
	"context"
	"crypto/tls"
	"database/sql/driver"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgxAdapter builds pgx's stdlib connector. With it pgfast hands out pgx's own
// *stdlib.Conn, unwrapped, and attaches its behaviour through pgx's hooks.
type pgxAdapter struct {
	cfg *pgx.ConnConfig
	// groups is the DSN's hosts, each with the TLS attempts pgx makes for
	// it; cfg's host list is rebuilt from them (pgxFallbacks).
	groups []hostGroup
	// lookup is a *pgx.ConnConfig's own LookupFunc, nil for pgx's default
	// (pgx_config.go): pgfast's dialer resolves with it.
	lookup pgconn.LookupFunc
	// before is the application's hook run before each connection pgfast
	// makes on this configuration (background attempts, warm connections, role
	// verifications, callers' dials, a pool's own connections), nil for
	// none: a pgxpool's BeforeConnect, which may supply the password (IAM
	// tokens). Set before the connector is built; read-only after.
	before beforeConnectFunc
}

// beforeConnectFunc is pgxpool's BeforeConnect (and stdlib's
// OptionBeforeConnect): it may change the attempt's own configuration, and
// its error fails the attempt.
type beforeConnectFunc = func(context.Context, *pgx.ConnConfig) error

// hasBeforeConnect reports whether an application's hook runs before each
// connection (and may supply the credentials): the core asks it about a
// failed login (beforeconnect.go).
func (a *pgxAdapter) hasBeforeConnect() bool { return a.before != nil }

// runBefore runs the application's hook on cc, this attempt's own
// configuration, before anything is dialled, as pgxpool runs BeforeConnect
// for its connections: on a copy of its own (pgxpool hands the hook a deep
// copy; stdlib's is shallow, so its RuntimeParams map would be shared), and
// an error fails the attempt. The hook is bounded by ctx and by bound
// (connect_timeout): one that ignores its context is abandoned there, the
// attempt fails, and its goroutine ends when it returns (what it writes
// then goes to a copy nobody reads). Its error is a *beforeConnectError,
// never evidence about the server, with the password it was given or set
// scrubbed.
func (a *pgxAdapter) runBefore(ctx context.Context, cc *pgx.ConnConfig, bound time.Duration) error {
	if a.before == nil {
		return nil
	}
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if bound > 0 {
		hctx, cancel = context.WithTimeoutCause(ctx, bound,
			fmt.Errorf("did not return within connect_timeout (%s): %w", bound, context.DeadlineExceeded))
	}
	defer cancel()
	work := cc.Copy()
	done := make(chan error, 1)
	go func() {
		// pgfast calls the hook where pgxpool might not (its own attempt
		// as NewPool returns): a panic there fails that attempt instead of
		// ending the process from a goroutine the application never made.
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panicked: %v", p)
			}
		}()
		done <- a.before(hctx, work)
	}()
	select {
	case err := <-done:
		if err == nil {
			*cc = *work
			return nil
		}
		secrets := spellingsOf([]string{cc.Password, work.Password})
		return &beforeConnectError{err: scrubError(err, secrets)}
	case <-hctx.Done():
		select {
		case err := <-done:
			if err == nil { // it returned in time after all
				*cc = *work
				return nil
			}
		default:
		}
		// work may be the hook's still: only ctx's cause is reported.
		return &beforeConnectError{err: context.Cause(hctx), abandoned: true}
	}
}

var _ adapter = (*pgxAdapter)(nil)

// parsePGX parses dsn with pgx.ParseConfig; a copy of its RuntimeParams is
// the leftovers.
// A name from RegisterConnConfig stands for its registered configuration.
func parsePGX(dsn string) (*pgxAdapter, *parsedDSN, error) {
	if a, p, ok, err := registeredPgxAdapter(dsn); ok {
		return a, p, err
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, nil, configErrorFrom(dsn, err)
	}
	a, p, err := pgxAdapterFor(cc, withPassword(secretFormsOf(dsn), cc.Password))
	if p != nil {
		p.fresh = true
	}
	return a, p, err
}

// pgxAdapterFor makes the adapter for cc, which it then owns, and reports
// what the core needs from it; secrets are the password's spellings.
func pgxAdapterFor(cc *pgx.ConnConfig, secrets []string) (*pgxAdapter, *parsedDSN, error) {
	a := &pgxAdapter{cfg: cc, groups: pgxHostGroups(&cc.Config)}
	p := &parsedDSN{
		leftover:           maps.Clone(cc.RuntimeParams),
		secrets:            secrets,
		connectTimeout:     cc.ConnectTimeout,
		targetSessionAttrs: pgxTargetSessionAttrs(cc.ValidateConnect),
		dsn:                cc.ConnString(),
	}
	if v, ok := take(p.leftover, "hostaddr"); ok {
		if err := applyHostaddr(a.groups, v); err != nil {
			return nil, nil, scrubError(err, p.secrets)
		}
	}
	p.groups = a.groups
	return a, p, nil
}

func (a *pgxAdapter) useLeftover(leftover map[string]string) {
	a.cfg.RuntimeParams = maps.Clone(leftover)
}

// pgxHostGroups groups pgx's attempt list by host. pgconn.ParseConfig makes,
// for each host of the DSN in order, either one entry (a Unix socket, or
// sslmode disable, require, verify-ca or verify-full) or two entries for the
// same host and port of which exactly one has TLS (sslmode=prefer: TLS
// first; allow: plaintext first). sslmode is the same for every host, so an
// entry starts a new group unless it completes such a pair; two hosts of a
// single entry each never pair, as they are both TLS or both plaintext.
func pgxHostGroups(c *pgconn.Config) []hostGroup {
	all := append([]*pgconn.FallbackConfig{{Host: c.Host, Port: c.Port, TLSConfig: c.TLSConfig}}, c.Fallbacks...)
	var groups []hostGroup
	for i := 0; i < len(all); i++ {
		fb := all[i]
		g := hostGroup{HostPort: HostPort{Host: fb.Host, Port: fb.Port}, tls: []*tls.Config{fb.TLSConfig}}
		if i+1 < len(all) {
			next := all[i+1]
			if next.Host == fb.Host && next.Port == fb.Port && (next.TLSConfig == nil) != (fb.TLSConfig == nil) {
				g.tls = append(g.tls, next.TLSConfig)
				i++
			}
		}
		groups = append(groups, g)
	}
	return groups
}

// applyHostaddr implements libpq's hostaddr for pgx: one address, or one per host.
func applyHostaddr(groups []hostGroup, v string) error {
	addrs := strings.Split(v, ",")
	if len(addrs) != 1 && len(addrs) != len(groups) {
		return &ConfigError{Key: "hostaddr", Value: v, Reason: "needs one address, or one per host"}
	}
	for i := range groups {
		addr := strings.TrimSpace(addrs[min(i, len(addrs)-1)])
		if addr == "" {
			continue
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return &ConfigError{Key: "hostaddr", Value: v, Reason: "not an IP address", Err: err}
		}
		if isUnixHost(groups[i].Host) {
			continue // libpq ignores hostaddr for a socket directory
		}
		groups[i].Addr = ip.String()
	}
	return nil
}

// pgxFallbacks lays the groups out as pgx's attempt list, in the given order
// (indexes into groups): each host's attempts stay together and in their
// order. A host with a hostaddr is dialled at that address; its TLS
// configuration still names the host (pgx set ServerName from it at parse).
func pgxFallbacks(groups []hostGroup, order []int) []*pgconn.FallbackConfig {
	var out []*pgconn.FallbackConfig
	for _, i := range order {
		g := groups[i]
		target := g.Host
		if g.Addr != "" {
			target = g.Addr
		}
		for _, tc := range g.tls {
			out = append(out, &pgconn.FallbackConfig{Host: target, Port: g.Port, TLSConfig: tc})
		}
	}
	return out
}

// setPgxHosts makes fbs cc's attempt list.
func setPgxHosts(cc *pgconn.Config, fbs []*pgconn.FallbackConfig) {
	cc.Host, cc.Port, cc.TLSConfig = fbs[0].Host, fbs[0].Port, fbs[0].TLSConfig
	cc.Fallbacks = fbs[1:]
}

// inOrder returns the indexes 0..n-1.
func inOrder(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// pgxTargetSessionAttrs recovers the target_session_attrs value from the
// validator pgx.ParseConfig chose for it.
func pgxTargetSessionAttrs(v pgconn.ValidateConnectFunc) string {
	if v == nil {
		return "any"
	}
	ptr := reflect.ValueOf(v).Pointer()
	for name, f := range map[string]pgconn.ValidateConnectFunc{
		"read-write":     pgconn.ValidateConnectTargetSessionAttrsReadWrite,
		"read-only":      pgconn.ValidateConnectTargetSessionAttrsReadOnly,
		"primary":        pgconn.ValidateConnectTargetSessionAttrsPrimary,
		"standby":        pgconn.ValidateConnectTargetSessionAttrsStandby,
		"prefer-standby": pgconn.ValidateConnectTargetSessionAttrsPreferStandby,
	} {
		if reflect.ValueOf(f).Pointer() == ptr {
			return name
		}
	}
	return "custom"
}

// lookup hands pgx the host name (or hostaddr) itself, so pgx calls the dial
// function once per attempt and pgfast's dialer races all of its addresses.
func lookup(_ context.Context, host string) ([]string, error) {
	return []string{host}, nil
}

func (a *pgxAdapter) connector(co core) driver.Connector {
	cc := a.cfg.Copy()
	a.wire(cc, co)
	opts := []stdlib.OptionOpenDB{
		stdlib.OptionResetSession(func(ctx context.Context, c *pgx.Conn) error {
			nc := c.PgConn().Conn()
			if err := co.checkRole(nc, c.PgConn()); err != nil {
				return err
			}
			return co.checkout(ctx, nc)
		}),
	}
	if co.platform().Peek {
		// The syscall-only liveness check in checkout replaces pgx's
		// ping-after-one-second-idle, which is a round trip per checkout and
		// hangs on a zombie connection. Where the system has no peek, pgx's
		// ping stays: a stale connection is dropped and retried, as raw.
		opts = append(opts, stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return false }))
	}
	if len(a.groups) > 1 || a.before != nil {
		groups, hosts := a.groups, hostPortsOf(a.groups)
		bound := co.config().ConnectTimeout
		opts = append(opts, stdlib.OptionBeforeConnect(func(ctx context.Context, cc *pgx.ConnConfig) error {
			if len(groups) > 1 {
				// cc is this connection's own copy: pgx tries whole hosts
				// in the order pgfast chose (load_balance_hosts, bad hosts
				// last).
				setPgxHosts(&cc.Config, pgxFallbacks(groups, co.orderHosts(hosts)))
			}
			// Then the application's hook, as in a pool (pool_hooks.go).
			return a.runBefore(ctx, cc, bound)
		}))
	}
	return pgxNamingConnector{stdlib.GetConnector(*cc, opts...)}
}

// wire points cc at the core: pgfast's dialer, the hosts in the DSN's order,
// the per-address deadline and the error hook (the stdlib connector and the
// pgxpool front end share it).
func (a *pgxAdapter) wire(cc *pgx.ConnConfig, co core) {
	setPgxHosts(&cc.Config, pgxFallbacks(a.groups, inOrder(len(a.groups))))
	cc.DialFunc = recordingPgxDial(dialFunc(co.dial))
	cc.LookupFunc = lookup
	cc.ConnectTimeout = co.config().ConnectTimeout
	prev := cc.OnPgError
	cc.OnPgError = func(pc *pgconn.PgConn, pgErr *pgconn.PgError) bool {
		co.onError(pc.Conn(), pgErr)
		return prev == nil || prev(pc, pgErr)
	}
}

// socket returns the socket under a pgx stdlib connection.
func (a *pgxAdapter) socket(dc driver.Conn) net.Conn {
	if c, ok := dc.(*stdlib.Conn); ok {
		return c.Conn().PgConn().Conn()
	}
	return nil
}

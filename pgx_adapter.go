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

	"github.com/pgfast/pgfast/internal/netx"
)

// pgxAdapter builds pgx's stdlib connector: pgfast hands out pgx's own
// *stdlib.Conn, unwrapped, and attaches its behaviour through pgx's hooks.
type pgxAdapter struct {
	cfg *pgx.ConnConfig
	// groups is the DSN's hosts with pgx's TLS attempts for each.
	groups []hostGroup
	// lookup is a *pgx.ConnConfig's own LookupFunc, nil for pgx's default.
	lookup pgconn.LookupFunc
	// before is the application's hook (a pgxpool's BeforeConnect, which
	// may supply IAM tokens) run before each connection pgfast makes on
	// this configuration, nil for none. Read-only once the connector is built.
	before beforeConnectFunc
	// hooks are WithOpenDBOptions' (their before is before), composed
	// with pgfast's in connector.
	hooks openDBHooks
}

// beforeConnectFunc is pgxpool's BeforeConnect (and stdlib's
// OptionBeforeConnect); its error fails the attempt.
type beforeConnectFunc = func(context.Context, *pgx.ConnConfig) error

// hasBeforeConnect reports whether an application hook may supply the
// credentials (the core asks about a failed login).
func (a *pgxAdapter) hasBeforeConnect() bool { return a.before != nil }

// runBefore runs the application's hook (runBeforeHook) on a copy of cc, as
// pgxpool does (pgxpool deep-copies; stdlib's copy is shallow, sharing
// RuntimeParams), and keeps the copy when the hook succeeds.
func (a *pgxAdapter) runBefore(ctx context.Context, cc *pgx.ConnConfig, bound time.Duration) error {
	if a.before == nil {
		return nil
	}
	work := cc.Copy()
	err := runBeforeHook(ctx, bound, a.before, work, func() []string { return []string{cc.Password, work.Password} })
	if err == nil {
		err = noteHookCredential(ctx, work.User, work.Password)
	}
	if err == nil {
		*cc = *work
	}
	return err
}

var _ adapter = (*pgxAdapter)(nil)

// parsePGX parses dsn with pgx.ParseConfig (a RegisterConnConfig name stands
// for its configuration); a copy of RuntimeParams is the leftovers.
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

// pgxAdapterFor makes the adapter for cc, which it then owns; secrets are
// the password's spellings.
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

// pgxHostGroups groups pgx's attempt list by host. For each host,
// pgconn.ParseConfig makes one entry, or two for the same host and port of
// which exactly one has TLS (sslmode prefer or allow). sslmode is the same
// for every host, so an entry starts a new group unless it completes a pair.
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

// pgxFallbacks lays the groups out as pgx's attempt list in order (indexes),
// each host's attempts together. A hostaddr is dialled directly; its TLS
// config still names the host (ServerName was set at parse).
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

func setPgxHosts(cc *pgconn.Config, fbs []*pgconn.FallbackConfig) {
	cc.Host, cc.Port, cc.TLSConfig = fbs[0].Host, fbs[0].Port, fbs[0].TLSConfig
	cc.Fallbacks = fbs[1:]
}

func inOrder(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// pgxTargetSessionAttrs recovers target_session_attrs from the validator
// pgx.ParseConfig chose for it.
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

// lookup hands pgx the host name itself, so pgx dials once per attempt and
// pgfast's dialer races all of its addresses.
func lookup(_ context.Context, host string) ([]string, error) {
	return []string{host}, nil
}

func (a *pgxAdapter) connector(co core) driver.Connector {
	// A shallow copy, wired: it shares the adapter's maps and TLS configs,
	// which nothing changes after parsing (pgx copies the configuration on
	// every connect), so a tenant holds one deep ConnConfig, not two.
	shallow := *a.cfg
	cc := &shallow
	a.wire(cc, co)
	userReset, userPing := a.hooks.reset, a.hooks.shouldPing
	opts := []stdlib.OptionOpenDB{
		stdlib.OptionResetSession(func(ctx context.Context, c *pgx.Conn) error {
			nc := c.PgConn().Conn()
			if err := co.checkRole(nc, c.PgConn()); err != nil {
				return err
			}
			if err := co.checkout(ctx, nc); err != nil {
				return err
			}
			if userReset != nil {
				return userReset(ctx, c)
			}
			return nil
		}),
	}
	switch peek := co.platform().Peek; {
	case userPing != nil && peek:
		// The application's ShouldPing decides, as in pgx, but pgx pings
		// before ResetSession runs pgfast's check: a connection the peek
		// finds dead is not pinged (a round trip, which hangs on a
		// zombie), and ResetSession's check then discards it.
		opts = append(opts, stdlib.OptionShouldPing(func(ctx context.Context, p stdlib.ShouldPingParams) bool {
			if !co.alive(p.Conn.PgConn().Conn()) {
				return false
			}
			return userPing(ctx, p)
		}))
	case userPing != nil:
		opts = append(opts, stdlib.OptionShouldPing(userPing))
	case peek:
		// The syscall-only checkout check replaces pgx's ping after a second
		// idle (a round trip per checkout, which hangs on a zombie). Without
		// the peek, pgx's ping stays.
		opts = append(opts, stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return false }))
	}
	if len(a.groups) > 1 || a.before != nil {
		groups, hosts := a.groups, hostPortsOf(a.groups)
		bound := co.config().ConnectTimeout
		opts = append(opts, stdlib.OptionBeforeConnect(func(ctx context.Context, cc *pgx.ConnConfig) error {
			if len(groups) > 1 {
				// cc is this connection's own copy: hosts in pgfast's order.
				setPgxHosts(&cc.Config, pgxFallbacks(groups, co.orderHosts(hosts)))
			}
			// Then the application's hook, as in a pool (pool_hooks.go).
			return a.runBefore(ctx, cc, bound)
		}))
	}
	return pgxNamingConnector{pgxLoginConnector{Connector: stdlib.GetConnector(*cc, opts...), after: a.hooks.after, fresh: a.before != nil}}
}

// pgxLoginConnector ends each connection's admission (netx.Login) when
// pgx's connect returns: the address's slot is freed and the deadline the
// dialer armed is cleared before database/sql gets the connection. Then
// the application's AfterConnect (WithOpenDBOptions) runs, as pgx runs it
// after the login, without the slot and connect_timeout's deadline.
type pgxLoginConnector struct {
	driver.Connector
	after func(context.Context, *pgx.Conn) error
	fresh bool // a before-connect hook supplies the credentials (retryLogin)
}

func (c pgxLoginConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := retryLogin(ctx, c.fresh, c.login)
	if err != nil || c.after == nil {
		return dc, err
	}
	conn := dc.(*stdlib.Conn).Conn()
	if err := runAfterConnect(ctx, c.after, conn); err != nil {
		_ = dc.Close()
		return nil, err
	}
	return dc, nil
}

func (c pgxLoginConnector) login(ctx context.Context) (dc driver.Conn, err error) {
	ctx, login := netx.WithLogin(ctx)
	// Deferred: a hook that panics must not keep the address's slot.
	defer func() { login.End(err) }()
	return c.Connector.Connect(ctx)
}

// runAfterConnect runs the application's AfterConnect on a new connection.
// Its failure, or panic (pgfast's background attempts run it on goroutines
// the application never made), is a *beforeConnectError: the login worked,
// so it says nothing against the server. The password the connection used
// is scrubbed from it.
func runAfterConnect(ctx context.Context, after func(context.Context, *pgx.Conn) error, conn *pgx.Conn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panicked: %v", p)
		}
		if err != nil {
			err = &beforeConnectError{hook: "AfterConnect", err: scrubError(err, spellingsOf([]string{conn.Config().Password}))}
		}
	}()
	return after(ctx, conn)
}

// wire points cc at the core: pgfast's dialer, hosts in the DSN's order and
// the error hook (stdlib and pgxpool share it). pgx gets no ConnectTimeout:
// pgx would count the time a startup waits for admission, so the dialer
// arms connect_timeout itself, from admission, on the attempt's sockets.
func (a *pgxAdapter) wire(cc *pgx.ConnConfig, co core) {
	setPgxHosts(&cc.Config, pgxFallbacks(a.groups, inOrder(len(a.groups))))
	cc.DialFunc = recordingPgxDial(dialFunc(co.dial))
	cc.LookupFunc = lookup
	cc.ConnectTimeout = 0
	prev := cc.OnPgError
	cc.OnPgError = func(pc *pgconn.PgConn, pgErr *pgconn.PgError) bool {
		co.onError(pc.Conn(), pgErr)
		return prev == nil || prev(pc, pgErr)
	}
}

func (a *pgxAdapter) socket(dc driver.Conn) net.Conn {
	if c, ok := dc.(*stdlib.Conn); ok {
		return c.Conn().PgConn().Conn()
	}
	return nil
}

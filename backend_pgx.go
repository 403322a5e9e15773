package pgfast

import (
	"context"
	"database/sql/driver"
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
	cfg       *pgx.ConnConfig
	hostaddrs map[string]string // host → hostaddr (pgx has no hostaddr of its own)
}

var _ adapter = (*pgxAdapter)(nil)

// parsePGX parses dsn with pgx.ParseConfig; its RuntimeParams are the leftovers.
func parsePGX(dsn string) (*pgxAdapter, *parsedDSN, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, nil, configErrorFrom(dsn, err)
	}
	a := &pgxAdapter{cfg: cc}
	p := &parsedDSN{
		leftover:           cc.RuntimeParams,
		connectTimeout:     cc.ConnectTimeout,
		targetSessionAttrs: pgxTargetSessionAttrs(cc.ValidateConnect),
	}
	p.hosts = append(p.hosts, HostPort{Host: cc.Host, Port: cc.Port})
	for _, fb := range cc.Fallbacks {
		// sslmode=prefer/allow gives each host a TLS and a plaintext entry
		// in a row: list the host once.
		if last := p.hosts[len(p.hosts)-1]; last.Host == fb.Host && last.Port == fb.Port {
			continue
		}
		p.hosts = append(p.hosts, HostPort{Host: fb.Host, Port: fb.Port})
	}
	if v, ok := take(p.leftover, "hostaddr"); ok {
		if err := a.applyHostaddr(p.hosts, v); err != nil {
			return nil, nil, err
		}
	}
	return a, p, nil
}

// applyHostaddr implements libpq's hostaddr for pgx: one address, or one per host.
func (a *pgxAdapter) applyHostaddr(hosts []HostPort, v string) error {
	addrs := strings.Split(v, ",")
	if len(addrs) != 1 && len(addrs) != len(hosts) {
		return &ConfigError{Key: "hostaddr", Value: v, Reason: "needs one address, or one per host"}
	}
	a.hostaddrs = make(map[string]string)
	for i := range hosts {
		addr := strings.TrimSpace(addrs[min(i, len(addrs)-1)])
		if addr == "" {
			continue
		}
		if _, err := netip.ParseAddr(addr); err != nil {
			return &ConfigError{Key: "hostaddr", Value: v, Reason: "not an IP address", Err: err}
		}
		hosts[i].Addr = addr
		a.hostaddrs[hosts[i].Host] = addr
	}
	return nil
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

// lookup hands pgx the host name itself (or its hostaddr), so pgx calls the
// dial function once per host and pgfast's dialer races all of its addresses.
func (a *pgxAdapter) lookup(_ context.Context, host string) ([]string, error) {
	if addr, ok := a.hostaddrs[host]; ok {
		return []string{addr}, nil
	}
	return []string{host}, nil
}

func (a *pgxAdapter) connector(s *seam) driver.Connector {
	cc := a.cfg.Copy()
	cc.DialFunc = pgconn.DialFunc(s.dial)
	cc.LookupFunc = a.lookup
	cc.ConnectTimeout = s.cfg.ConnectTimeout
	if s.onError != nil {
		prev := cc.OnPgError
		cc.OnPgError = func(pc *pgconn.PgConn, pgErr *pgconn.PgError) bool {
			s.onError(pc.Conn(), pgErr)
			return prev == nil || prev(pc, pgErr)
		}
	}
	opts := []stdlib.OptionOpenDB{
		stdlib.OptionAfterConnect(func(ctx context.Context, c *pgx.Conn) error {
			if s.afterConnect == nil {
				return nil
			}
			err := s.afterConnect(ctx, c.PgConn().Conn())
			if err != nil {
				// pgx's stdlib drops a connection whose AfterConnect failed
				// without closing it; close it here.
				closePgx(c)
			}
			return err
		}),
		stdlib.OptionResetSession(func(ctx context.Context, c *pgx.Conn) error {
			nc := c.PgConn().Conn()
			if s.checkRole != nil {
				if err := s.checkRole(nc, c.PgConn()); err != nil {
					return err
				}
			}
			if s.checkout == nil {
				return nil
			}
			return s.checkout(ctx, nc)
		}),
	}
	if s.alive != nil {
		// The syscall-only liveness check in checkout replaces pgx's
		// ping-after-one-second-idle, which is a round trip per checkout and
		// hangs on a zombie connection.
		opts = append(opts, stdlib.OptionShouldPing(func(context.Context, stdlib.ShouldPingParams) bool { return false }))
	}
	if s.orderHosts != nil && len(cc.Fallbacks) > 0 {
		opts = append(opts, stdlib.OptionBeforeConnect(func(_ context.Context, cc *pgx.ConnConfig) error {
			orderPgxHosts(cc, a.hostaddrs, s.orderHosts)
			return nil
		}))
	}
	return stdlib.GetConnector(*cc, opts...)
}

// orderPgxHosts rewrites a per-connection copy of the config so that pgx tries
// its hosts in the order pgfast chose (load_balance_hosts, bad hosts last).
func orderPgxHosts(cc *pgx.ConnConfig, hostaddrs map[string]string, order func([]HostPort) []int) {
	all := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
	hosts := make([]HostPort, len(all))
	for i, fb := range all {
		hosts[i] = HostPort{Host: fb.Host, Port: fb.Port, Addr: hostaddrs[fb.Host]}
	}
	idx := order(hosts)
	ordered := make([]*pgconn.FallbackConfig, len(all))
	for i, j := range idx {
		ordered[i] = all[j]
	}
	cc.Host, cc.Port, cc.TLSConfig = ordered[0].Host, ordered[0].Port, ordered[0].TLSConfig
	cc.Fallbacks = ordered[1:]
}

// closePgx closes c without waiting on a network that may be dead.
func closePgx(c *pgx.Conn) {
	_ = c.PgConn().Conn().Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = c.Close(ctx)
}

// pgxSocket returns the socket under a pgx stdlib connection.
func pgxSocket(dc driver.Conn) (net.Conn, bool) {
	if c, ok := dc.(*stdlib.Conn); ok {
		return c.Conn().PgConn().Conn(), true
	}
	return nil, false
}

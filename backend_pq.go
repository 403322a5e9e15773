package pgfast

import (
	"context"
	"database/sql/driver"
	"maps"
	"net"
	"time"

	"github.com/lib/pq"
)

// pqAdapter builds lib/pq's connector. lib/pq's connection type is unexported
// and has no hooks, so its connections are wrapped in *PQConn (conn.go).
type pqAdapter struct {
	cfg pq.Config
}

var _ adapter = (*pqAdapter)(nil)

// parsePQ parses dsn with pq.NewConfig; its Runtime map holds the leftovers.
func parsePQ(dsn string) (*pqAdapter, *parsedDSN, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, nil, configErrorFrom(dsn, err)
	}
	if cfg.Runtime == nil {
		cfg.Runtime = map[string]string{}
	}
	p := &parsedDSN{
		leftover:           maps.Clone(cfg.Runtime),
		secrets:            secretFormsOf(dsn),
		connectTimeout:     cfg.ConnectTimeout,
		targetSessionAttrs: string(cfg.TargetSessionAttrs),
		loadBalanceHosts:   string(cfg.LoadBalanceHosts),
	}
	// lib/pq negotiates TLS within one attempt per host: a group per host.
	p.groups = append(p.groups, hostGroup{HostPort: pqHost(cfg.Host, cfg.Hostaddr.String(), cfg.Port)})
	for _, m := range cfg.Multi {
		p.groups = append(p.groups, hostGroup{HostPort: pqHost(m.Host, m.Hostaddr.String(), m.Port)})
	}
	return &pqAdapter{cfg: cfg}, p, nil
}

func (a *pqAdapter) useLeftover(leftover map[string]string) {
	a.cfg.Runtime = maps.Clone(leftover)
}

// socket returns the socket under a *PQConn.
func (a *pqAdapter) socket(dc driver.Conn) net.Conn {
	if pc, ok := dc.(*PQConn); ok {
		return pc.sock
	}
	return nil
}

func pqHost(host, addr string, port uint16) HostPort {
	if addr == "invalid IP" {
		addr = ""
	}
	return HostPort{Host: host, Port: port, Addr: addr}
}

func (a *pqAdapter) connector(s *seam) driver.Connector {
	cfg := a.cfg.Clone()
	cfg.ConnectTimeout = s.cfg.ConnectTimeout
	pc := &pqConnector{cfg: cfg, seam: s}
	if len(cfg.Multi) > 0 && s.orderHosts != nil {
		// pgfast orders the hosts itself per connection (random first when
		// load_balance_hosts=random, bad hosts last).
		pc.cfg.LoadBalanceHosts = pq.LoadBalanceHostsDisable
		pc.reorder = true
	}
	if cfg.TargetSessionAttrs == pq.TargetSessionAttrsPreferStandby {
		// lib/pq v1.12.3 retries prefer-standby forever when no host can be
		// connected to (goto restartAll, ctx never checked), so Connect and
		// Close hang. pgfast makes libpq's two passes itself: a standby,
		// else any server.
		pc.cfg.TargetSessionAttrs = pq.TargetSessionAttrsStandby
		pc.thenAnyRole = true
	}
	pc.fixed = pc.connectorFor(pc.cfg)
	return pc
}

// pqConnector opens lib/pq connections and wraps them in *PQConn.
type pqConnector struct {
	cfg         pq.Config
	seam        *seam
	fixed       *pq.Connector // used when the host order never changes
	reorder     bool
	thenAnyRole bool // prefer-standby: a second pass with any role
}

var _ driver.Connector = (*pqConnector)(nil)

func (c *pqConnector) connectorFor(cfg pq.Config) *pq.Connector {
	inner, _ := pq.NewConnectorConfig(cfg) // never fails
	inner.Dialer(c.seam.dial)
	return inner
}

// ordered returns a connector whose host list is in the order pgfast chose;
// anyRole drops target_session_attrs (prefer-standby's second pass).
func (c *pqConnector) ordered(anyRole bool) *pq.Connector {
	if !c.reorder && !anyRole {
		return c.fixed
	}
	cfg := c.cfg
	if anyRole {
		cfg.TargetSessionAttrs = pq.TargetSessionAttrsAny
	}
	if !c.reorder {
		return c.connectorFor(cfg)
	}
	all := append([]pq.ConfigMultihost{{Host: c.cfg.Host, Hostaddr: c.cfg.Hostaddr, Port: c.cfg.Port}}, c.cfg.Multi...)
	hosts := make([]HostPort, len(all))
	for i, h := range all {
		hosts[i] = pqHost(h.Host, h.Hostaddr.String(), h.Port)
	}
	idx := c.seam.orderHosts(hosts)
	first := all[idx[0]]
	cfg.Host, cfg.Hostaddr, cfg.Port = first.Host, first.Hostaddr, first.Port
	cfg.Multi = make([]pq.ConfigMultihost, 0, len(idx)-1)
	for _, j := range idx[1:] {
		cfg.Multi = append(cfg.Multi, all[j])
	}
	return c.connectorFor(cfg)
}

func (c *pqConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.connect(ctx, false)
	if err != nil && c.thenAnyRole && ctx.Err() == nil {
		dc, err = c.connect(ctx, true)
	}
	return dc, err
}

func (c *pqConnector) connect(ctx context.Context, anyRole bool) (driver.Conn, error) {
	ctx, rec := withDialRecord(ctx)
	dc, err := c.ordered(anyRole).Connect(ctx)
	nc, expired := rec.done()
	if err != nil {
		return nil, err
	}
	if expired {
		// ctx ended as the handshake finished: the socket's deadline is
		// already in the past, and the next query would fail with it.
		closeSoon(dc, nc)
		return nil, ctx.Err()
	}
	return &PQConn{inner: dc, sock: nc, seam: c.seam}, nil
}

func (c *pqConnector) Driver() driver.Driver { return c.fixed.Driver() }

// closeSoon closes a connection without waiting on a network that may be dead.
func closeSoon(dc driver.Conn, nc net.Conn) {
	if nc != nil {
		_ = nc.SetDeadline(time.Now())
		_ = nc.Close()
	}
	_ = dc.Close()
}

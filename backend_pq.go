package pgfast

import (
	"context"
	"database/sql/driver"
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
		leftover:           cfg.Runtime,
		connectTimeout:     cfg.ConnectTimeout,
		targetSessionAttrs: string(cfg.TargetSessionAttrs),
		loadBalanceHosts:   string(cfg.LoadBalanceHosts),
	}
	p.hosts = append(p.hosts, pqHost(cfg.Host, cfg.Hostaddr.String(), cfg.Port))
	for _, m := range cfg.Multi {
		p.hosts = append(p.hosts, pqHost(m.Host, m.Hostaddr.String(), m.Port))
	}
	return &pqAdapter{cfg: cfg}, p, nil
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
	inner, _ := pq.NewConnectorConfig(cfg) // never fails
	inner.Dialer(s.dial)
	return &pqConnector{inner: inner, seam: s}
}

// pqConnector opens lib/pq connections and wraps them in *PQConn.
type pqConnector struct {
	inner *pq.Connector
	seam  *seam
}

var _ driver.Connector = (*pqConnector)(nil)

func (c *pqConnector) Connect(ctx context.Context) (driver.Conn, error) {
	ctx, rec := withDialRecord(ctx)
	dc, err := c.inner.Connect(ctx)
	nc := rec.done()
	if err != nil {
		return nil, err
	}
	if c.seam.afterConnect != nil {
		if err := c.seam.afterConnect(ctx, nc); err != nil {
			closeSoon(dc, nc)
			return nil, err
		}
	}
	return &PQConn{inner: dc, sock: nc, seam: c.seam}, nil
}

func (c *pqConnector) Driver() driver.Driver { return c.inner.Driver() }

// closeSoon closes a connection without waiting on a network that may be dead.
func closeSoon(dc driver.Conn, nc net.Conn) {
	if nc != nil {
		_ = nc.SetDeadline(time.Now())
		_ = nc.Close()
	}
	_ = dc.Close()
}

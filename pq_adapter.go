package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/lib/pq"

	"github.com/pgfast/pgfast/internal/netx"
)

// pqAdapter builds lib/pq's connector. lib/pq's connection type is unexported
// and has no hooks, so its connections are wrapped in *PQConn.
type pqAdapter struct {
	cfg pq.Config
	// before is WithPQBeforeConnect's hook, nil for none.
	before pqBeforeFunc
}

// hasBeforeConnect reports whether an application hook may supply the
// credentials (the core asks about a failed login).
func (a *pqAdapter) hasBeforeConnect() bool { return a.before != nil }

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
		secrets:            withPassword(secretFormsOf(dsn), cfg.Password),
		connectTimeout:     cfg.ConnectTimeout,
		targetSessionAttrs: string(cfg.TargetSessionAttrs),
		loadBalanceHosts:   string(cfg.LoadBalanceHosts),
		dsn:                dsn,
		fresh:              true,
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

func (a *pqAdapter) connector(co core) driver.Connector {
	cfg := a.cfg.Clone()
	// lib/pq would count the time a startup waits for admission: the
	// dialer arms connect_timeout itself, from admission (netx.Login).
	cfg.ConnectTimeout = 0
	pc := &pqConnector{cfg: cfg, core: co, passes: pqPasses(cfg.TargetSessionAttrs), before: a.before}
	if len(cfg.Multi) > 0 {
		// pgfast orders the hosts itself per connection.
		pc.cfg.LoadBalanceHosts = pq.LoadBalanceHostsDisable
		pc.reorder = true
	}
	for _, tsa := range pc.passes {
		c := pc.cfg
		c.TargetSessionAttrs = tsa
		pc.fixed = append(pc.fixed, pc.connectorFor(c))
	}
	return pc
}

// pqPasses returns the target_session_attrs of each pass over the hosts.
// prefer-standby is never handed to lib/pq: with every host down its loop
// never ends (it clears the setting locally but tests its config). pgfast
// makes two bounded passes instead: standby, then any.
func pqPasses(tsa pq.TargetSessionAttrs) []pq.TargetSessionAttrs {
	if tsa == pq.TargetSessionAttrsPreferStandby {
		return []pq.TargetSessionAttrs{pq.TargetSessionAttrsStandby, pq.TargetSessionAttrsAny}
	}
	return []pq.TargetSessionAttrs{tsa}
}

// pqConnector opens lib/pq connections and wraps them in *PQConn.
type pqConnector struct {
	cfg     pq.Config
	core    core
	passes  []pq.TargetSessionAttrs // one pass over the hosts each (pqPasses)
	fixed   []*pq.Connector         // one per pass, used when the host order never changes
	reorder bool
	before  pqBeforeFunc // the application's hook, nil for none
}

var _ driver.Connector = (*pqConnector)(nil)

func (c *pqConnector) connectorFor(cfg pq.Config) *pq.Connector {
	inner, _ := pq.NewConnectorConfig(cfg) // never fails
	inner.Dialer(dialFunc(c.core.dial))
	return inner
}

// ordered returns pass i's connector for cfg (nil: the connector's own)
// with hosts in pgfast's order.
func (c *pqConnector) ordered(i int, hooked *pq.Config) *pq.Connector {
	if !c.reorder && hooked == nil {
		return c.fixed[i]
	}
	cfg := c.cfg
	if hooked != nil {
		cfg = *hooked
	}
	cfg.TargetSessionAttrs = c.passes[i]
	if !c.reorder {
		return c.connectorFor(cfg)
	}
	all := append([]pq.ConfigMultihost{{Host: c.cfg.Host, Hostaddr: c.cfg.Hostaddr, Port: c.cfg.Port}}, c.cfg.Multi...)
	hosts := make([]HostPort, len(all))
	for i, h := range all {
		hosts[i] = pqHost(h.Host, h.Hostaddr.String(), h.Port)
	}
	idx := c.core.orderHosts(hosts)
	first := all[idx[0]]
	cfg.Host, cfg.Hostaddr, cfg.Port = first.Host, first.Hostaddr, first.Port
	cfg.Multi = make([]pq.ConfigMultihost, 0, len(idx)-1)
	for _, j := range idx[1:] {
		cfg.Multi = append(cfg.Multi, all[j])
	}
	return c.connectorFor(cfg)
}

// Connect runs the application's hook, if any, then makes one pass over the
// hosts per target_session_attrs pass (one, or two for prefer-standby)
// until one connects; a failed login is retried once (retryLogin).
func (c *pqConnector) Connect(ctx context.Context) (driver.Conn, error) {
	return retryLogin(ctx, c.before != nil, c.connect)
}

func (c *pqConnector) connect(ctx context.Context) (driver.Conn, error) {
	var hooked *pq.Config
	if c.before != nil {
		cfg, err := c.runBefore(ctx)
		if err != nil {
			return nil, err
		}
		hooked = &cfg
	}
	var err error
	for i := range c.passes {
		var dc driver.Conn
		if dc, err = c.connectPass(ctx, i, hooked); err == nil {
			return dc, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// runBefore runs the application's hook (runBeforeHook) on a copy of the
// connector's configuration and puts back what pgfast owns in it: the
// hosts (ordered per pass), target_session_attrs (the passes),
// load_balance_hosts and connect_timeout (the dialer arms it).
func (c *pqConnector) runBefore(ctx context.Context) (pq.Config, error) {
	work := c.cfg.Clone()
	work.Multi = slices.Clone(c.cfg.Multi)
	err := runBeforeHook(ctx, c.core.config().ConnectTimeout, c.before, &work, func() []string {
		return []string{c.cfg.Password, work.Password}
	})
	if err == nil {
		err = noteHookCredential(ctx, work.User, work.Password)
	}
	if err != nil {
		return pq.Config{}, err
	}
	work.Host, work.Hostaddr, work.Port, work.Multi = c.cfg.Host, c.cfg.Hostaddr, c.cfg.Port, c.cfg.Multi
	work.TargetSessionAttrs, work.LoadBalanceHosts, work.ConnectTimeout = c.cfg.TargetSessionAttrs, c.cfg.LoadBalanceHosts, c.cfg.ConnectTimeout
	return work, nil
}

// errLoginPanicked ends the admission of a login whose connect panicked.
var errLoginPanicked = errors.New("pgfast: login panicked")

func (c *pqConnector) connectPass(ctx context.Context, pass int, hooked *pq.Config) (driver.Conn, error) {
	ctx, rec := withDialRecord(ctx)
	ctx, login := netx.WithLogin(ctx)
	login.PlainTimeouts() // a startup read past connect_timeout fails as raw lib/pq's does
	ended := false
	defer func() {
		if !ended { // a panic below: the address's slot must not stay held
			login.End(errLoginPanicked)
		}
	}()
	dc, err := c.ordered(pass, hooked).Connect(ctx)
	nc, expired := rec.done()
	login.End(err) // after done disarmed the record's watch: End clears the deadline last
	ended = true
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			// The caller's context ended the dial: its error, as
			// database/sql returns it.
			return nil, cerr
		}
		return nil, err
	}
	if expired {
		// ctx ended as the handshake finished: the socket's deadline is
		// already in the past, and the next query would fail with it.
		closeSoon(dc, nc)
		return nil, ctx.Err()
	}
	pc := &PQConn{inner: dc, sock: nc, core: c.core}
	if pid, key, ok := pqCancelKey(dc); ok {
		pc.cancelPID, pc.cancelKey = pid, key
	}
	return pc, nil
}

func (c *pqConnector) Driver() driver.Driver { return c.fixed[0].Driver() }

// closeSoon closes a connection without waiting on a network that may be dead.
func closeSoon(dc driver.Conn, nc net.Conn) {
	if nc != nil {
		_ = nc.SetDeadline(time.Now())
		_ = nc.Close()
	}
	_ = dc.Close()
}

package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ErrWrongRole is the cause recorded when a server no longer has the role
// target_session_attrs asked for (a demoted primary, a promoted standby).
var ErrWrongRole = errors.New("pgfast: server no longer matches target_session_attrs")

// newSeam wires the connector's health machinery into the seam the backend
// adapters call.
func (c *Connector) newSeam(d *dialer) *seam {
	return &seam{
		cfg:      c.cfg,
		dial:     recording(d.DialContext),
		checkout: checkout,
		alive:    alive,
		onError:  c.onBackendError,
		checkRole: func(nc net.Conn, param func(string) string) error {
			if param == nil {
				return nil
			}
			if why := roleViolation(c.cfg.TargetSessionAttrs, param); why != "" {
				c.evictSocket(nc, fmt.Errorf("%w: %s", ErrWrongRole, why))
				return driver.ErrBadConn
			}
			return nil
		},
		orderHosts: func(hosts []HostPort) []int {
			return c.book.orderHosts(hosts, c.cfg.LoadBalanceHosts == "random")
		},
	}
}

// roleViolation says why a server whose reported parameters are param no
// longer suits tsa, or "" when it does. in_hot_standby is reported by
// PostgreSQL 14 and later; older servers report nothing and are not judged.
func roleViolation(tsa string, param func(string) string) string {
	standby, readOnly := param("in_hot_standby"), param("default_transaction_read_only")
	switch tsa {
	case "read-write":
		if standby == "on" {
			return "server is in hot standby"
		}
		if readOnly == "on" {
			return "default_transaction_read_only is on"
		}
	case "primary":
		if standby == "on" {
			return "server is in hot standby"
		}
	case "standby":
		if standby == "off" {
			return "server is no longer a standby"
		}
	case "read-only":
		if standby == "off" && readOnly == "off" {
			return "server is no longer read-only"
		}
	}
	return ""
}

// onBackendError looks at an error a connection returned: SQLSTATE 25006
// (read-only transaction) on a connection that asked for a writable server
// means the primary was demoted, so its address is evicted.
func (c *Connector) onBackendError(nc net.Conn, err error) {
	var coded interface{ SQLState() string }
	if !errors.As(err, &coded) || coded.SQLState() != "25006" {
		return
	}
	switch c.cfg.TargetSessionAttrs {
	case "read-write", "primary":
		c.evictSocket(nc, fmt.Errorf("%w: %w", ErrWrongRole, err))
	}
}

// evictSocket evicts the generation of the address nc is connected to.
func (c *Connector) evictSocket(nc net.Conn, cause error) {
	if tc := trackedOf(nc); tc != nil {
		tc.book.evict(tc.addr, tc.gen, cause, true)
	}
}

// onEvict is the address book's report of an eviction: logged once, and when
// the address is believed unreachable (or has the wrong role) the connector
// goes Down so that callers fail fast while it probes for a usable server.
func (c *Connector) onEvict(addr netip.AddrPort, cause error, down bool) {
	if c.log != nil {
		c.log.Warn("pgfast: evicted connections to an address", "addr", addr.String(), "cause", cause)
	}
	if down {
		c.setState(StateDown, fmt.Errorf("%s: %w", addr, cause))
	}
}

// recheckDNS re-resolves the DSN's host names and evicts the sockets of
// addresses a name no longer lists (a failover that moved the name; the old
// primary may stay reachable).
func (c *Connector) recheckDNS(ctx context.Context) {
	for _, h := range c.cfg.Hosts {
		if h.Addr != "" || h.Host == "" || isUnixHost(h.Host) || isIPLiteral(h.Host) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, min(c.cfg.DNSRecheck, 2*time.Second))
		ips, err := c.resolver.LookupNetIP(rctx, "ip", h.Host)
		cancel()
		if err != nil || len(ips) == 0 {
			continue // a failed lookup proves nothing; the dialer will see
		}
		current := make(map[netip.Addr]bool, len(ips))
		for _, ip := range ips {
			current[ip.Unmap()] = true
		}
		host, port := h.Host, h.Port
		c.book.evictWhere(fmt.Errorf("DNS no longer lists it for %s", host), false, func(a netip.AddrPort, e *addrEntry) bool {
			return e.host == host && a.Port() == port && !current[a.Addr().Unmap()]
		})
	}
}

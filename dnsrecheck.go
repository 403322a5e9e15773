package pgfast

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

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
		c.book.ForgetMoved(host, port, current, fmt.Errorf("DNS no longer lists it for %s", host))
	}
}

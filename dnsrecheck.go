package pgfast

import (
	"fmt"
	"net/netip"

	"github.com/pgfast/pgfast/internal/netx"
)

// watchDNS subscribes the connector to its host names' rechecks (every
// pgfast_dns_recheck; netx rechecks each name once for all its connectors),
// so the sockets of addresses a name no longer lists are evicted softly (a
// failover that moved the name; the old primary may stay reachable). It runs
// once, when the connector is made; unwatchDNS ends it at Close.
func (c *Connector) watchDNS() {
	if c.cfg.DNSRecheck <= 0 {
		return
	}
	for _, h := range c.cfg.Hosts {
		if h.Addr != "" || h.Host == "" || isUnixHost(h.Host) || isIPLiteral(h.Host) {
			continue
		}
		host, port, book := h.Host, h.Port, c.book
		c.dnsWatch = append(c.dnsWatch, netx.WatchName(c.resolver, host, c.cfg.DNSRecheck, func(current map[netip.Addr]bool) {
			if c.closeIfPoolClosed() {
				return // a closed pool's idle connector: nothing else would notice
			}
			book.ForgetMoved(host, port, current, fmt.Errorf("DNS no longer lists it for %s", host))
		}))
	}
}

// unwatchDNS ends the connector's subscriptions (Close).
func (c *Connector) unwatchDNS() {
	for _, w := range c.dnsWatch {
		w.Stop()
	}
}

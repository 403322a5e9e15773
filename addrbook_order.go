package pgfast

import (
	"math/rand/v2"
	"net/netip"
	"slices"
)

// hostBad reports whether every known address of h is bad (a host never
// dialled is not).
func (b *addrBook) hostBad(h HostPort) bool {
	name := hostKey(h)
	b.mu.Lock()
	defer b.mu.Unlock()
	addrs := b.hosts[joinHostPort(name, h.Port)]
	if len(addrs) == 0 {
		if ip, err := netip.ParseAddr(name); err == nil {
			addrs = []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), h.Port)}
			if _, known := b.addrs[addrs[0]]; !known {
				return false
			}
		}
	}
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !b.isBad(a) {
			return false
		}
	}
	return true
}

// orderHosts returns the order in which to try hosts, as indexes into hosts:
// shuffled for load_balance_hosts=random, then hosts whose every address is
// bad last, so that no connection pays a dead host's timeout first.
func (b *addrBook) orderHosts(hosts []HostPort, random bool) []int {
	order := make([]int, len(hosts))
	for i := range order {
		order[i] = i
	}
	if random {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return boolRank(b.hostBad(hosts[x])) - boolRank(b.hostBad(hosts[y]))
	})
	return order
}

// hostKey is the name the dialer sees for a host (its hostaddr when given).
func hostKey(h HostPort) string {
	if h.Addr != "" {
		return h.Addr
	}
	return h.Host
}

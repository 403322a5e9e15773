package pgfast

import (
	"context"
	"net"
	"net/netip"
)

// resolve returns host's addresses in the order to try them. An IP literal
// is returned as is, without asking the resolver.
func (d *dialer) resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := d.resolver.LookupNetIP(ctx, resolverNetwork(network), host)
	if err != nil {
		return nil, err
	}
	ips = normalizeResolved(ips, network)
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no suitable address found", Name: host, IsNotFound: true}
	}
	return interleaveFamilies(ips), nil
}

// resolverNetwork maps a dial network to the LookupNetIP network.
func resolverNetwork(network string) string {
	switch network {
	case "tcp4":
		return "ip4"
	case "tcp6":
		return "ip6"
	default:
		return "ip"
	}
}

// normalizeResolved unmaps IPv4-mapped IPv6 addresses, drops duplicates and
// invalid addresses, and keeps only the family network asks for.
func normalizeResolved(ips []netip.Addr, network string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	seen := make(map[netip.Addr]bool, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case !ip.IsValid(), seen[ip]:
			continue
		case network == "tcp4" && !ip.Is4(), network == "tcp6" && !ip.Is6():
			continue
		}
		seen[ip] = true
		out = append(out, ip)
	}
	return out
}

// interleaveFamilies orders addresses RFC 8305 style: alternate between
// IPv6 and IPv4, starting with the family of the first address and keeping
// the resolver's order within each family.
func interleaveFamilies(addrs []netip.Addr) []netip.Addr {
	if len(addrs) < 2 {
		return addrs
	}
	firstIs4 := addrs[0].Unmap().Is4()
	var first, other []netip.Addr
	for _, a := range addrs {
		if a.Unmap().Is4() == firstIs4 {
			first = append(first, a)
		} else {
			other = append(other, a)
		}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for i := 0; i < len(first) || i < len(other); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(other) {
			out = append(out, other[i])
		}
	}
	return out
}

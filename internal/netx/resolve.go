package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing" // testing.Testing: warm the resolver up at init, outside any synctest bubble (warmUpResolver)
)

// Resolver resolves host names (the root package's Resolver, or *net.Resolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Resolve returns host's addresses in the order the dialer tries them.
func (d *Dialer) Resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return d.resolve(ctx, network, host)
}

// resolve returns host's addresses in the order to try them; an IP literal
// is returned without asking the resolver.
func (d *Dialer) resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := lookupNetIP(ctx, d.resolver, resolverNetwork(network), host)
	if err != nil {
		return nil, err
	}
	ips = normalizeResolved(ips, network)
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no suitable address found", Name: host, IsNotFound: true}
	}
	return interleaveFamilies(ips), nil
}

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

// interleaveFamilies alternates IPv6 and IPv4 (RFC 8305), starting with the
// first address's family, keeping the resolver's order within each.
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

// The net package makes part of its resolver state lazily on the process's
// first lookup (the semaphores guarding resolv.conf and nsswitch.conf
// rereads, and cgo's getaddrinfo limit). A channel made inside a
// testing/synctest bubble belongs to it, and the runtime aborts the process
// when it is used from outside (Go issue 80903). pgfast's connector resolves
// in the background as soon as it is made, so a pool built inside a bubble
// would make every later lookup of the process abort it; raw pgxpool and
// sql.Open do no I/O when made.
//
// So in a test binary (the only kind that can have a bubble) pgfast makes
// that state at init, outside any bubble, sending nothing on the network.
// Other programs skip it (0.3 to 0.8 ms of start-up).

func init() {
	if testing.Testing() {
		warmUpResolver()
	}
}

// errWarmUpDial refuses the warm-up's DNS exchange: nothing is sent.
var errWarmUpDial = errors.New("pgfast: resolver warm-up sends no query")

// warmUpResolver makes that lazy state without network I/O (it reads /etc
// files and, through libc, may ask nscd and netlink).
func warmUpResolver() {
	ctx := context.Background()
	// Go's resolver: choosing the lookup order reads resolv.conf and
	// nsswitch.conf; the name is not a valid domain name, so no DNS query
	// follows (and the Dial would refuse one).
	goResolver := &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errWarmUpDial
		},
	}
	_, _ = goResolver.LookupNetIP(ctx, "ip", "pgfast..resolver-warm-up.invalid")
	// The cgo resolver: a service lookup takes a getaddrinfo slot (making
	// threadLimit) and reads /etc/services.
	_, _ = net.DefaultResolver.LookupPort(ctx, "tcp", "postgresql")
}

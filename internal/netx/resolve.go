package netx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing" // testing.Testing: warm the resolver up at init, outside any synctest bubble (warmUpResolver)
)

// Resolver resolves host names (the root package's Resolver, or
// *net.Resolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Resolve returns host's addresses in the order the dialer tries them (the
// probe of cmd/pgfast lists them so).
func (d *Dialer) Resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return d.resolve(ctx, network, host)
}

// resolve returns host's addresses in the order to try them. An IP literal
// is returned as is, without asking the resolver.
func (d *Dialer) resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
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

// The net package makes part of its resolver's state lazily, on the first
// name lookup of the process: the one-slot semaphores that guard the
// rereading of /etc/resolv.conf and /etc/nsswitch.conf (resolverConfig.ch
// and nsswitchConfig.ch, made in their sync.Once), and for the cgo resolver
// the semaphore that bounds concurrent getaddrinfo calls (threadLimit, made
// in threadOnce). A channel made inside a testing/synctest bubble belongs to
// that bubble, and the Go runtime aborts the whole process when it is used
// from outside ("send on synctest channel from outside bubble"; Go issue
// 80903). pgfast's connector resolves in the background as soon as it is
// made (its readiness probe), so a pool or connector built inside a bubble
// would make the process's first lookup there and every later lookup of the
// process, pgfast's or not, would abort it. Raw pgxpool and sql.Open do no
// I/O when they are made: their first lookup is the caller's first query.
//
// So, in a test binary (the only kind of program that can have a bubble:
// synctest.Test takes a *testing.T), pgfast makes that state when its
// package is initialised, outside any bubble, with lookups that read the
// resolver's configuration files and send nothing on the network. Other
// programs skip it (it costs 0.3 to 0.8 ms of start-up).

func init() {
	if testing.Testing() {
		warmUpResolver()
	}
}

// errWarmUpDial refuses the warm-up's DNS exchange: nothing is sent.
var errWarmUpDial = errors.New("pgfast: resolver warm-up sends no query")

// warmUpResolver makes the net package's lazily created resolver state (see
// above) without network I/O: it reads /etc files and, through libc,
// may ask nscd and the kernel (netlink) for local addresses.
func warmUpResolver() {
	ctx := context.Background()
	// Go's resolver: choosing the lookup order reads resolv.conf and
	// nsswitch.conf (making their semaphores); then /etc/hosts. The name
	// is not a valid domain name, so no DNS query follows, and the Dial
	// would refuse one anyway.
	goResolver := &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errWarmUpDial
		},
	}
	_, _ = goResolver.LookupNetIP(ctx, "ip", "pgfast..resolver-warm-up.invalid")
	// The cgo resolver (when the platform's resolver is libc's): a service
	// lookup takes a getaddrinfo slot (making threadLimit) and reads
	// /etc/services. Without cgo it reads /etc/services alone.
	_, _ = net.DefaultResolver.LookupPort(ctx, "tcp", "postgresql")
}

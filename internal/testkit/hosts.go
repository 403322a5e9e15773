package testkit

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// HostsResolver resolves names from /etc/hosts (inside the namespace, the
// file netfault.SetHosts rewrites), reading it on every call: Go's own
// resolver caches /etc/hosts for up to 5 s, which would hide a repointing.
type HostsResolver struct {
	lookups atomic.Int64
}

// Lookups returns how many lookups the resolver answered.
func (r *HostsResolver) Lookups() int64 { return r.lookups.Load() }

// LookupNetIP answers from /etc/hosts (pgfast's Resolver interface).
func (r *HostsResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	// SetHosts rewrites the file in place: a reader may catch it empty.
	for attempt := 0; ; attempt++ {
		addrs, err := ParseHosts("/etc/hosts", network, host)
		if err != nil || len(addrs) > 0 || attempt == 3 {
			if err == nil && len(addrs) == 0 {
				err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			return addrs, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ParseHosts returns host's addresses in a hosts(5) file, in file order,
// limited to network's family ("ip", "ip4", "ip6").
func ParseHosts(path, network, host string) ([]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		switch {
		case network == "ip4" && !addr.Unmap().Is4(), network == "ip6" && !addr.Is6():
			continue
		}
		for _, name := range fields[1:] {
			if strings.EqualFold(name, host) {
				out = append(out, addr)
				break
			}
		}
	}
	return out, nil
}

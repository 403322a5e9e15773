package netfault

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// etcNetnsDir holds per-namespace configuration files; `ip netns exec`
// bind-mounts /etc/netns/<name>/hosts over /etc/hosts.
const etcNetnsDir = "/etc/netns"

// defaultLocalhost is what "localhost" resolves to unless the caller says
// otherwise: IPv6 first, as on a typical modern system.
var defaultLocalhost = []string{"::1", "127.0.0.1"}

// SetHosts replaces the contents of the namespace's hosts file, changing how
// names resolve inside the namespace. hosts maps a host name to its
// addresses, in the order a resolver should return them; every address must
// be a loopback address. "localhost" maps to ::1 and 127.0.0.1 unless hosts
// names it.
//
// The file is rewritten in place (truncated and written, keeping its inode)
// because `ip netns exec` bind-mounted that very file over /etc/hosts; a
// rename would leave /etc/hosts pointing at the old contents. A concurrent
// reader may briefly see an empty or partial file.
//
// Go's pure-Go resolver caches /etc/hosts for up to 5 seconds, so
// net.DefaultResolver may keep returning the old addresses for that long
// after SetHosts returns; programs that read the file on every lookup (glibc
// getaddrinfo without nscd) see the change at once.
//
// SetHosts only works [Inside] a namespace created by [RunInNamespace].
func SetHosts(hosts map[string][]string) error {
	text, err := formatHosts(hosts)
	if err != nil {
		return err
	}
	if err := checkInside(); err != nil {
		return err
	}
	path := filepath.Join(etcNetnsDir, Name(), "hosts")
	// Never write through /etc/hosts itself: if the bind mount were missing
	// that would be the host's file.
	ours, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("netfault: %w", err)
	}
	visible, err := os.Stat("/etc/hosts")
	if err != nil {
		return fmt.Errorf("netfault: %w", err)
	}
	if !os.SameFile(ours, visible) {
		return fmt.Errorf("netfault: /etc/hosts is not bind-mounted from %s; refusing to write", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("netfault: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("netfault: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("netfault: writing %s: %w", path, err)
	}
	return nil
}

// formatHosts validates hosts and renders it in /etc/hosts syntax, one
// "address name" line per address so that the order of each name's
// addresses is kept. "localhost" comes first, the other names follow in
// sorted order.
func formatHosts(hosts map[string][]string) (string, error) {
	all := make(map[string][]string, len(hosts)+1)
	for name, addrs := range hosts {
		all[name] = addrs
	}
	if _, ok := all["localhost"]; !ok {
		all["localhost"] = defaultLocalhost
	}

	names := make([]string, 0, len(all))
	for name := range all {
		if err := checkHostName(name); err != nil {
			return "", err
		}
		if name != "localhost" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	names = append([]string{"localhost"}, names...)

	var b strings.Builder
	b.WriteString("# Written by pgfast internal/netfault for a test network namespace.\n")
	for _, name := range names {
		if len(all[name]) == 0 {
			return "", fmt.Errorf("netfault: hosts entry %q has no addresses", name)
		}
		for _, s := range all[name] {
			addr, err := parseLoopback(s)
			if err != nil {
				return "", fmt.Errorf("netfault: hosts entry %q: %w", name, err)
			}
			fmt.Fprintf(&b, "%s\t%s\n", addr, name)
		}
	}
	return b.String(), nil
}

// checkHostName accepts names made of letters, digits, '-', '_' and '.',
// which is all a test needs and keeps the hosts file unambiguous.
func checkHostName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("netfault: invalid host name %q", name)
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("netfault: invalid host name %q", name)
		}
	}
	return nil
}

// parseLoopback parses s and returns it if it is a loopback address
// (127.0.0.0/8 or ::1). IPv4-mapped IPv6 forms are returned as IPv4; zones
// are refused.
func parseLoopback(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("netfault: %q is not an IP address", s)
	}
	if addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("netfault: %q: zoned addresses are not allowed", s)
	}
	addr = addr.Unmap()
	if !addr.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("netfault: %q is not a loopback address (only 127.0.0.0/8 and ::1 are allowed)", s)
	}
	return addr, nil
}

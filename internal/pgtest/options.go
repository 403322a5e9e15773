package pgtest

import (
	"fmt"
	"regexp"
	"strings"
)

// defaultListenAddresses is used when Options.ListenAddresses is empty.
const defaultListenAddresses = "127.0.0.1"

// Options configures a server created by New or StartStandby.
type Options struct {
	// ListenAddresses is the listen_addresses setting, for example
	// "127.0.0.1,::1", "127.0.0.2" or "*". Empty means "127.0.0.1".
	ListenAddresses string
	// Port is the TCP port. Zero picks a free port by binding
	// 127.0.0.1:0 in the current network namespace and closing it again.
	Port int
	// NetNS, if set, names a network namespace (see ip-netns(8)); every
	// PostgreSQL program of the server then runs inside it. Requires root.
	NetNS string
	// Settings holds extra postgresql.conf parameters, written after (and
	// so overriding) the package defaults. Values are quoted by the
	// package: pass 64MB, not '64MB'.
	Settings map[string]string
}

// settingName matches a valid postgresql.conf parameter name, including
// custom two-part names such as "auto_explain.log_min_duration".
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// validate reports options that cannot produce a working server.
func (o Options) validate() error {
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("pgtest: invalid port %d", o.Port)
	}
	for name, value := range o.Settings {
		if !settingName.MatchString(name) {
			return fmt.Errorf("pgtest: invalid setting name %q", name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return fmt.Errorf("pgtest: setting %s: value must be a single line", name)
		}
	}
	return nil
}

// listenAddresses returns the listen_addresses value to configure.
func (o Options) listenAddresses() string {
	if strings.TrimSpace(o.ListenAddresses) == "" {
		return defaultListenAddresses
	}
	return o.ListenAddresses
}

// host returns the address clients should dial: the first listen address,
// with wildcards replaced by the matching loopback address.
func (o Options) host() string {
	first, _, _ := strings.Cut(o.listenAddresses(), ",")
	switch first = strings.TrimSpace(first); first {
	case "*", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	default:
		return first
	}
}

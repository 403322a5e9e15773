package pgfast

import (
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// DefaultDeadPeerWindow (10 s) is how long the server may stay silent (no
// ACK, no data; counted from the last ACK, or for data from when pgfast
// first saw it waiting) while a connection waits for it before pgfast
// declares its host dead, when the DSN sets no tcp_user_timeout (which is
// the window instead, and is also set on the socket, libpq's meaning).
//
// While a Read or Write is blocked, pgfast reads the socket's TCP_INFO about
// twice a second; the server is silent when something is outstanding (unacked
// data, an unanswered keep-alive or window probe), nothing was received for
// the window, and that held for a second (pgfast explain prints the
// timeline). A server keeping a zero window while it waits on a lock still
// answers window probes: slow, not dead, and left alone however long.
const DefaultDeadPeerWindow = netx.DefaultDeadPeerWindow

// Defaults pgfast applies where the DSN leaves a setting unset. libpq and the
// operating system default to minutes or "forever"; pgfast's are finite.
const (
	DefaultConnectTimeout     = 10 * time.Second
	DefaultKeepalivesIdle     = 10 * time.Second
	DefaultKeepalivesInterval = 5 * time.Second
	DefaultKeepalivesCount    = 3
	// DefaultTCPUserTimeout is 0: TCP_USER_TIMEOUT is set only by the DSN.
	// Since Linux 5.1 it also aborts a lock-waiting zero-window connection;
	// the dead-peer watcher (DefaultDeadPeerWindow) tells silent from slow.
	DefaultTCPUserTimeout = time.Duration(0)
	DefaultMinConns       = 1
	DefaultDNSRecheck     = 5 * time.Second
)

// Config holds the settings pgfast itself acts on: the part of the DSN the
// backend's parser does not handle (libpq's TCP keys, pgfast_ keys) plus the
// backend settings pgfast needs (connect_timeout, target_session_attrs,
// load_balance_hosts, hosts). Read it with (*Connector).Config.
//
// Durations are effective values: defaults applied, and what the OS applies.
// A setting the OS cannot apply reads as its zero: tcp_user_timeout off
// Linux, macOS (whole seconds, rounded up) and Windows; keep-alive timings
// on OpenBSD. `pgfast explain` lists what the DSN set but is not applied.
type Config struct {
	// ConnectTimeout bounds each address attempt (dial, TLS, startup, auth),
	// as libpq's connect_timeout: at most 2147483647 s (libpq's int; larger
	// values the drivers would wrap are refused). Unset or 0:
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Keepalives enables TCP keepalives (libpq keepalives, default on).
	Keepalives bool
	// KeepalivesIdle is libpq's keepalives_idle; 0 means the OS default.
	// At most 32767 s (Linux's limit, applied on every OS).
	KeepalivesIdle time.Duration
	// KeepalivesInterval is libpq's keepalives_interval; 0 means the OS
	// default. At most 32767 s.
	KeepalivesInterval time.Duration
	// KeepalivesCount is libpq's keepalives_count; 0 means the OS default.
	// At most 127.
	KeepalivesCount int
	// TCPUserTimeout is libpq's tcp_user_timeout (at most 2147483647 ms); 0
	// leaves the socket option unset. When set, it is also the dead-peer
	// window.
	TCPUserTimeout time.Duration
	// TargetSessionAttrs is libpq's target_session_attrs ("any" when unset).
	TargetSessionAttrs string
	// LoadBalanceHosts is libpq's load_balance_hosts ("disable" or "random").
	LoadBalanceHosts string
	// Hosts lists the servers of the DSN in the order given.
	Hosts []HostPort
	// MinConns is the number of connections opened in the background and kept
	// warm for the first callers (pgfast_min_conns).
	MinConns int
	// WaitReady makes Connect wait for readiness within its context instead of
	// failing fast with ErrNotReady while the database is down (pgfast_wait_ready).
	WaitReady bool
	// DNSRecheck is how often host names are re-resolved, in any state
	// (pgfast_dns_recheck, seconds; 0 = off). Each name is looked up once
	// per process for every connector using it.
	DNSRecheck time.Duration
	// Share makes the connector share host-level verdicts (a server silent
	// or unreachable) with every other connector of the process that uses
	// the same address, and probe a dead server once for all of them
	// (pgfast_share; default true). False gives it a view of its own.
	Share bool
}

// HostPort is one server of a DSN. Addr is the hostaddr given for it, if any.
type HostPort struct {
	Host string
	Port uint16
	Addr string
}

var _ fmt.Stringer = HostPort{}

// String returns host:port ("[::1]:5432"), or the socket directory and port.
func (h HostPort) String() string {
	return joinHostPort(h.Host, h.Port)
}

// libpqTCPKeys are libpq parameters neither backend understands: left alone
// they reach the server as runtime parameters. pgfast consumes them.
var libpqTCPKeys = []string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}

// pgfastKeys are pgfast's own DSN keys.
var pgfastKeys = []string{"pgfast_min_conns", "pgfast_wait_ready", "pgfast_dns_recheck", "pgfast_share"}

// hostGroup is one host of the DSN with the backend's attempts to it, in
// order. Host ordering moves whole groups, so each host keeps its attempt
// order: TLS before sslmode=prefer's plaintext fallback, as libpq.
type hostGroup struct {
	HostPort
	// tls lists the TLS configurations tried, in order; nil is plaintext.
	// Empty when the backend negotiates TLS inside one attempt (lib/pq).
	tls []*tls.Config
}

func hostPortsOf(groups []hostGroup) []HostPort {
	hosts := make([]HostPort, len(groups))
	for i, g := range groups {
		hosts[i] = g.HostPort
	}
	return hosts
}

// parsedDSN is what a backend adapter's parser reports back to the core.
type parsedDSN struct {
	// leftover is what the backend would send as runtime parameters. The
	// core deletes the keys it consumes; the adapter takes the cleaned copy
	// back (useLeftover), so the server never sees them.
	leftover map[string]string
	// connectTimeout is the backend's parsed connect_timeout (0 when unset).
	connectTimeout     time.Duration
	targetSessionAttrs string
	loadBalanceHosts   string
	// groups lists the DSN's hosts in the order given.
	groups []hostGroup
	// secrets are the password's spellings, to scrub from errors.
	secrets []string
	// dsn is the connection string, if known (checkConnectTimeout reads it).
	dsn string
	// fresh says the backend parsed dsn just now: its connectTimeout is
	// whole seconds unless the backend's arithmetic wrapped.
	fresh bool
}

// buildConfig takes pgfast's settings out of p.leftover (mutating it),
// applies defaults and validates. Its errors never hold the password.
func buildConfig(p *parsedDSN) (*Config, error) {
	cfg, err := buildSettings(p)
	if err != nil {
		return nil, scrubError(err, p.secrets)
	}
	thisPlatform.apply(cfg) // Config says what this system applies
	return cfg, nil
}

// buildSettings does buildConfig's work; its errors are not yet scrubbed.
func buildSettings(p *parsedDSN) (*Config, error) {
	cfg := &Config{
		ConnectTimeout:     DefaultConnectTimeout,
		Keepalives:         true,
		KeepalivesIdle:     DefaultKeepalivesIdle,
		KeepalivesInterval: DefaultKeepalivesInterval,
		KeepalivesCount:    DefaultKeepalivesCount,
		TCPUserTimeout:     DefaultTCPUserTimeout,
		TargetSessionAttrs: p.targetSessionAttrs,
		LoadBalanceHosts:   p.loadBalanceHosts,
		Hosts:              hostPortsOf(p.groups),
		MinConns:           DefaultMinConns,
		Share:              true,
	}
	if err := checkConnectTimeout(p.connectTimeout, p.dsn, p.fresh); err != nil {
		return nil, err
	}
	if p.connectTimeout > 0 {
		cfg.ConnectTimeout = p.connectTimeout
	}
	if cfg.TargetSessionAttrs == "" {
		cfg.TargetSessionAttrs = "any"
	}
	if lb, ok := take(p.leftover, "load_balance_hosts"); ok {
		cfg.LoadBalanceHosts = lb
	}
	switch cfg.LoadBalanceHosts {
	case "":
		cfg.LoadBalanceHosts = "disable"
	case "disable", "random":
	default:
		return nil, &ConfigError{Key: "load_balance_hosts", Value: cfg.LoadBalanceHosts, Reason: `must be "disable" or "random"`}
	}

	var err error
	set := func(key string, apply func(string) error) {
		if v, ok := take(p.leftover, key); ok && err == nil {
			err = apply(v)
		}
	}
	set("keepalives", func(v string) error {
		n, e := parseBounded(keyKeepalives, v)
		cfg.Keepalives = n != 0
		return e
	})
	set("keepalives_idle", unitsInto(&cfg.KeepalivesIdle, keyKeepalivesIdle))
	set("keepalives_interval", unitsInto(&cfg.KeepalivesInterval, keyKeepalivesInterval))
	set("keepalives_count", func(v string) error {
		n, e := parseBounded(keyKeepalivesCount, v)
		cfg.KeepalivesCount = int(n)
		return e
	})
	set("tcp_user_timeout", unitsInto(&cfg.TCPUserTimeout, keyTCPUserTimeout))
	set("pgfast_min_conns", func(v string) error {
		n, e := parseBounded(keyMinConns, v)
		cfg.MinConns = int(n)
		return e
	})
	set("pgfast_wait_ready", func(v string) error {
		b, e := strconv.ParseBool(v)
		if e != nil {
			return &ConfigError{Key: "pgfast_wait_ready", Value: v, Reason: "must be a boolean (0 or 1)", Err: e}
		}
		cfg.WaitReady = b
		return nil
	})
	set("pgfast_share", func(v string) error {
		n, e := parseBounded(keyShare, v)
		cfg.Share = n != 0
		return e
	})
	dnsRecheckSet := false
	set("pgfast_dns_recheck", func(v string) error {
		dnsRecheckSet = true
		return unitsInto(&cfg.DNSRecheck, keyDNSRecheck)(v)
	})
	if err != nil {
		return nil, err
	}
	for k, v := range p.leftover {
		if strings.HasPrefix(k, "pgfast_") {
			return nil, &ConfigError{Key: k, Value: v, Reason: "unknown pgfast setting (known: " + strings.Join(pgfastKeys, ", ") + ")"}
		}
	}
	if !dnsRecheckSet && hasHostName(cfg.Hosts) {
		cfg.DNSRecheck = DefaultDNSRecheck
	}
	return cfg, nil
}

func take(m map[string]string, key string) (string, bool) {
	v, ok := m[key]
	if ok {
		delete(m, key)
	}
	return v, ok
}

// numericKey is a numeric DSN key pgfast parses itself, with its range.
type numericKey struct {
	name     string
	min, max int64
	unit     time.Duration // 0: a count
	why      string        // where max comes from
}

// The numeric keys pgfast parses. The keep-alive limits are Linux's (above
// them setsockopt fails with EINVAL) and apply on every OS, so a DSN means
// the same everywhere; TCP_USER_TIMEOUT is an int of milliseconds.
var (
	keyKeepalives         = numericKey{"keepalives", 0, 1, 0, "0 or 1"}
	keyKeepalivesIdle     = numericKey{"keepalives_idle", 0, 32767, time.Second, "seconds; Linux's TCP_KEEPIDLE limit"}
	keyKeepalivesInterval = numericKey{"keepalives_interval", 0, 32767, time.Second, "seconds; Linux's TCP_KEEPINTVL limit"}
	keyKeepalivesCount    = numericKey{"keepalives_count", 0, 127, 0, "Linux's TCP_KEEPCNT limit"}
	keyTCPUserTimeout     = numericKey{"tcp_user_timeout", 0, math.MaxInt32, time.Millisecond, "milliseconds; the kernel's TCP_USER_TIMEOUT is an int"}
	keyMinConns           = numericKey{"pgfast_min_conns", 1, 1000, 0, "connections"}
	keyDNSRecheck         = numericKey{"pgfast_dns_recheck", 0, math.MaxInt32, time.Second, "seconds"}
	keyShare              = numericKey{"pgfast_share", 0, 1, 0, "0 or 1"}
)

// numericKeys lists them all (the bounds tests walk it).
var numericKeys = []numericKey{keyKeepalives, keyKeepalivesIdle, keyKeepalivesInterval, keyKeepalivesCount,
	keyTCPUserTimeout, keyMinConns, keyDNSRecheck, keyShare}

// libpqSpace is what C's isspace matches: libpq skips it around a number.
const libpqSpace = " \t\n\v\f\r"

// parseBounded parses v as libpq parses an integer option (surrounding
// whitespace and a sign allowed, decimal digits only) and checks k's range.
func parseBounded(k numericKey, v string) (int64, error) {
	n, err := strconv.ParseInt(strings.Trim(v, libpqSpace), 10, 64)
	if err != nil {
		return 0, &ConfigError{Key: k.name, Value: v, Reason: "must be a whole number" + k.rangeText(), Err: err}
	}
	if n < k.min || n > k.max {
		return 0, &ConfigError{Key: k.name, Value: v, Reason: "out of range:" + k.rangeText()}
	}
	return n, nil
}

func (k numericKey) rangeText() string {
	return fmt.Sprintf(" between %d and %d (%s)", k.min, k.max, k.why)
}

func unitsInto(d *time.Duration, k numericKey) func(string) error {
	return func(v string) error {
		n, err := parseBounded(k, v)
		*d = time.Duration(n) * k.unit // n <= MaxInt32: no overflow
		return err
	}
}

func hasHostName(hosts []HostPort) bool {
	for _, h := range hosts {
		if h.Addr == "" && h.Host != "" && !isUnixHost(h.Host) && !isIPLiteral(h.Host) {
			return true
		}
	}
	return false
}

func (c *Config) dialSettings() netx.Settings {
	return netx.Settings{
		ConnectTimeout:     c.ConnectTimeout,
		Keepalives:         c.Keepalives,
		KeepalivesIdle:     c.KeepalivesIdle,
		KeepalivesInterval: c.KeepalivesInterval,
		KeepalivesCount:    c.KeepalivesCount,
		TCPUserTimeout:     c.TCPUserTimeout,
	}
}

func joinHostPort(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// hostKey is the name the dialer sees for a host (its hostaddr when given).
func hostKey(h HostPort) string {
	if h.Addr != "" {
		return h.Addr
	}
	return h.Host
}

func isUnixHost(host string) bool {
	return strings.HasPrefix(host, "/") || strings.HasPrefix(host, "@")
}

func isIPLiteral(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// connectBudget bounds one connection through the backend, which may try
// every host in turn: connect_timeout per host plus one for the login. It
// saturates rather than wraps.
func (c *Config) connectBudget() time.Duration {
	return mulDuration(c.ConnectTimeout, len(c.Hosts)+1)
}

const maxDuration = time.Duration(math.MaxInt64)

func mulDuration(d time.Duration, n int) time.Duration {
	if d <= 0 || n <= 0 {
		return 0
	}
	if d > maxDuration/time.Duration(n) {
		return maxDuration
	}
	return d * time.Duration(n)
}

func addDuration(a, b time.Duration) time.Duration {
	if a > maxDuration-b {
		return maxDuration
	}
	return a + b
}

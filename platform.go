package pgfast

import (
	"maps"
	"net"
	"runtime"
	"time"

	"github.com/pgfast/pgfast/internal/diag"
)

// platform is what the operating system lets pgfast apply to a TCP
// connection. Where one of pgfast's protections is missing, the raw
// driver's own check stays in place (pgx's ping before it reuses a
// connection idle for over a second) instead of being switched off, so that
// pgfast is never worse than the raw driver. platformOf is a pure function
// of GOOS, so tests on any machine check every system's mapping; the build
// of each system checks that its files provide what platformOf promises
// (platform_*.go, liveness_*.go, sockopt_*.go).
type platform struct {
	goos string
	// peek: the checkout peeks at the socket (recv with MSG_PEEK and
	// MSG_DONTWAIT): a connection its server closed, reset or that the
	// kernel killed is dropped without a round trip. It replaces pgx's
	// ping-after-idle; without it that ping stays on.
	peek bool
	// keepaliveTimings: keep-alive idle time, interval and probe count are
	// set per socket (net.KeepAliveConfig); otherwise the system-wide values
	// apply (keep-alive itself is still switched on).
	keepaliveTimings bool
	// userTimeout names the socket option that bounds how long sent data may
	// stay unacknowledged before the kernel drops the connection, and its
	// unit; name is "" where the system has none.
	userTimeout userTimeoutOption
	// deadPeerWatch: pgfast's dead-peer watcher runs (it reads TCP_INFO).
	deadPeerWatch bool
}

// userTimeoutOption is a system's equivalent of Linux's TCP_USER_TIMEOUT.
type userTimeoutOption struct {
	name string
	unit time.Duration
}

// The socket options that bound unacknowledged data, by system.
var (
	// Linux: TCP_USER_TIMEOUT, milliseconds (tcp(7)).
	optUserTimeoutLinux = userTimeoutOption{"TCP_USER_TIMEOUT", time.Millisecond}
	// macOS and iOS: TCP_RXT_CONNDROPTIME, seconds (<netinet/tcp.h>: "time
	// after which tcp retransmissions will be stopped and the connection will
	// be dropped").
	optUserTimeoutDarwin = userTimeoutOption{"TCP_RXT_CONNDROPTIME", time.Second}
	// Windows: TCP_MAXRTMS, milliseconds (<ws2ipdef.h>; Windows 10 1607 and
	// later, the "maximum retransmission time").
	optUserTimeoutWindows = userTimeoutOption{"TCP_MAXRTMS", time.Millisecond}
)

// platformOf returns what pgfast applies on the system goos (a GOOS value).
func platformOf(goos string) platform {
	p := platform{goos: goos}
	switch goos {
	case "linux", "android":
		p.peek, p.keepaliveTimings, p.deadPeerWatch = true, true, true
		p.userTimeout = optUserTimeoutLinux
	case "darwin", "ios":
		p.peek, p.keepaliveTimings = true, true
		p.userTimeout = optUserTimeoutDarwin
	case "freebsd", "netbsd", "dragonfly", "solaris", "illumos":
		p.peek, p.keepaliveTimings = true, true
	case "openbsd":
		// OpenBSD has no per-socket keep-alive timings (the net package
		// returns ENOPROTOOPT for them): the sysctl values apply.
		p.peek = true
	case "windows":
		// No MSG_DONTWAIT: a peek could block on Windows, so pgx's ping stays.
		p.keepaliveTimings = true
		p.userTimeout = optUserTimeoutWindows
	case "aix":
		p.keepaliveTimings = true
	}
	return p
}

// thisPlatform is what pgfast applies here. canPeek is set by the build
// (liveness_*.go): a system whose peek is not built in keeps pgx's ping.
var thisPlatform = func() platform {
	p := platformOf(runtime.GOOS)
	p.peek = p.peek && canPeek
	return p
}()

// notApplied lists the DSN keys whose value this platform cannot apply.
func (p platform) notApplied(c *Config) []string {
	if c == nil {
		return nil
	}
	var keys []string
	if c.Keepalives && !p.keepaliveTimings {
		if c.KeepalivesIdle > 0 {
			keys = append(keys, "keepalives_idle")
		}
		if c.KeepalivesInterval > 0 {
			keys = append(keys, "keepalives_interval")
		}
		if c.KeepalivesCount > 0 {
			keys = append(keys, "keepalives_count")
		}
	}
	if c.TCPUserTimeout > 0 && p.userTimeout.name == "" {
		keys = append(keys, "tcp_user_timeout")
	}
	return keys
}

// apply makes c say what this platform applies: a setting the system cannot
// apply reads as its "OS default" or "not set" zero, and tcp_user_timeout is
// rounded up to the unit of the system's option (seconds on macOS).
func (p platform) apply(c *Config) {
	if !p.keepaliveTimings {
		c.KeepalivesIdle, c.KeepalivesInterval, c.KeepalivesCount = 0, 0, 0
	}
	switch {
	case p.userTimeout.name == "":
		c.TCPUserTimeout = 0
	case c.TCPUserTimeout > 0:
		c.TCPUserTimeout = time.Duration(ceilUnitsOf(c.TCPUserTimeout, p.userTimeout.unit)) * p.userTimeout.unit
	}
}

// diag describes p for internal/diag, with the keys of c (the DSN's settings
// before apply) that p cannot apply.
func (p platform) diag(c *Config) diag.Platform {
	return diag.Platform{GOOS: p.goos, Peek: p.peek, KeepaliveTimings: p.keepaliveTimings,
		UserTimeoutOption: p.userTimeout.name, DeadPeerWatch: p.deadPeerWatch, NotApplied: p.notApplied(c)}
}

// askedSettings is the Config p's DSN asks for, before this system's apply,
// nil when it is not valid (buildConfig then says why). p is left as it was.
func askedSettings(p *parsedDSN) *Config {
	q := *p
	q.leftover = maps.Clone(p.leftover)
	c, err := buildSettings(&q)
	if err != nil {
		return nil
	}
	return c
}

// sockOpt is one integer socket option, in the unit its system expects.
type sockOpt struct {
	name  string
	value int
}

// socketPlan is how the dialer applies the settings off Linux: keep-alive
// through net.Dialer.KeepAliveConfig (the net package knows each system's
// spelling of idle, interval and count), and the options in opts with
// setsockopt before connect().
type socketPlan struct {
	keepAlive net.KeepAliveConfig
	opts      []sockOpt
}

// planSockets maps s to what platform p applies. s holds the settings
// apply left: those p cannot apply are zero.
func planSockets(p platform, s dialSettings) socketPlan {
	var plan socketPlan
	if s.Keepalives {
		plan.keepAlive = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
		if p.keepaliveTimings {
			plan.keepAlive.Idle = orOSDefault(s.KeepalivesIdle)
			plan.keepAlive.Interval = orOSDefault(s.KeepalivesInterval)
			plan.keepAlive.Count = orOSDefault(s.KeepalivesCount)
		}
	}
	// With keep-alive off, KeepAliveConfig stays zero and the dialer's
	// KeepAlive is negative (dial.go): the socket has no keep-alive.
	if ut := p.userTimeout; ut.name != "" && s.TCPUserTimeout > 0 {
		plan.opts = append(plan.opts, sockOpt{ut.name, ceilUnitsOf(s.TCPUserTimeout, ut.unit)})
	}
	return plan
}

// orOSDefault maps our "0 = OS default" to KeepAliveConfig's "negative =
// leave unchanged" (its zero means Go's own default of 15s or 9 probes).
func orOSDefault[T ~int | ~int64](v T) T {
	if v <= 0 {
		return -1
	}
	return v
}

// ceilUnitsOf returns d in whole units, rounding a partial unit up; 0 for
// d <= 0, at most MaxInt32 (what a socket option holds).
func ceilUnitsOf(d, unit time.Duration) int {
	if d <= 0 {
		return 0
	}
	n := d / unit
	if d%unit != 0 {
		n++
	}
	return int(min(int64(n), 1<<31-1))
}

package netx

import (
	"net"
	"runtime"
	"time"
)

// Platform is what the operating system lets pgfast apply to a TCP
// connection. Where one of pgfast's protections is missing, the raw
// driver's own check stays in place (pgx's ping before it reuses a
// connection idle for over a second) instead of being switched off, so that
// pgfast is never worse than the raw driver. PlatformOf is a pure function
// of GOOS, so tests on any machine check every system's mapping; the build
// of each system checks that its files provide what PlatformOf promises
// (sys_*.go).
type Platform struct {
	// GOOS is the system (a GOOS value).
	GOOS string
	// Peek: the checkout peeks at the socket (recv with MSG_PEEK and
	// MSG_DONTWAIT): a connection its server closed, reset or that the
	// kernel killed is dropped without a round trip. It replaces pgx's
	// ping-after-idle; without it that ping stays on.
	Peek bool
	// KeepaliveTimings: keep-alive idle time, interval and probe count are
	// set per socket (net.KeepAliveConfig); otherwise the system-wide values
	// apply (keep-alive itself is still switched on).
	KeepaliveTimings bool
	// UserTimeout names the socket option that bounds how long sent data may
	// stay unacknowledged before the kernel drops the connection, and its
	// unit; Name is "" where the system has none.
	UserTimeout UserTimeoutOption
	// DeadPeerWatch: pgfast's dead-peer watcher runs (it reads TCP_INFO).
	DeadPeerWatch bool
}

// UserTimeoutOption is a system's equivalent of Linux's TCP_USER_TIMEOUT.
type UserTimeoutOption struct {
	Name string        // the option's name, "" for none
	Unit time.Duration // the unit of its value
}

// The socket options that bound unacknowledged data, by system.
var (
	// Linux: TCP_USER_TIMEOUT, milliseconds (tcp(7)).
	optUserTimeoutLinux = UserTimeoutOption{"TCP_USER_TIMEOUT", time.Millisecond}
	// macOS and iOS: TCP_RXT_CONNDROPTIME, seconds (<netinet/tcp.h>: "time
	// after which tcp retransmissions will be stopped and the connection will
	// be dropped").
	optUserTimeoutDarwin = UserTimeoutOption{"TCP_RXT_CONNDROPTIME", time.Second}
	// Windows: TCP_MAXRTMS, milliseconds (<ws2ipdef.h>; Windows 10 1607 and
	// later, the "maximum retransmission time").
	optUserTimeoutWindows = UserTimeoutOption{"TCP_MAXRTMS", time.Millisecond}
)

// PlatformOf returns what pgfast applies on the system goos (a GOOS value).
func PlatformOf(goos string) Platform {
	p := Platform{GOOS: goos}
	switch goos {
	case "linux", "android":
		p.Peek, p.KeepaliveTimings, p.DeadPeerWatch = true, true, true
		p.UserTimeout = optUserTimeoutLinux
	case "darwin", "ios":
		p.Peek, p.KeepaliveTimings = true, true
		p.UserTimeout = optUserTimeoutDarwin
	case "freebsd", "netbsd", "dragonfly", "solaris", "illumos":
		p.Peek, p.KeepaliveTimings = true, true
	case "openbsd":
		// OpenBSD has no per-socket keep-alive timings (the net package
		// returns ENOPROTOOPT for them): the sysctl values apply.
		p.Peek = true
	case "windows":
		// No MSG_DONTWAIT: a peek could block on Windows, so pgx's ping stays.
		p.KeepaliveTimings = true
		p.UserTimeout = optUserTimeoutWindows
	case "aix":
		p.KeepaliveTimings = true
	}
	return p
}

// thisPlatform is what pgfast applies here (ThisPlatform). canPeek is set by the build
// (sys_peek.go, sys_nopeek.go, sys_linux.go): a system whose peek is not built in keeps pgx's ping.
var thisPlatform = func() Platform {
	p := PlatformOf(runtime.GOOS)
	p.Peek = p.Peek && canPeek
	return p
}()

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
func planSockets(p Platform, s Settings) socketPlan {
	var plan socketPlan
	if s.Keepalives {
		plan.keepAlive = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
		if p.KeepaliveTimings {
			plan.keepAlive.Idle = orOSDefault(s.KeepalivesIdle)
			plan.keepAlive.Interval = orOSDefault(s.KeepalivesInterval)
			plan.keepAlive.Count = orOSDefault(s.KeepalivesCount)
		}
	}
	// With keep-alive off, KeepAliveConfig stays zero and the dialer's
	// KeepAlive is negative (dialer.go): the socket has no keep-alive.
	if ut := p.UserTimeout; ut.Name != "" && s.TCPUserTimeout > 0 {
		plan.opts = append(plan.opts, sockOpt{ut.Name, CeilUnits(s.TCPUserTimeout, ut.Unit)})
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

// CeilUnits returns d in whole units, rounding a partial unit up; 0 for
// d <= 0, at most MaxInt32 (what a socket option holds).
func CeilUnits(d, unit time.Duration) int {
	if d <= 0 {
		return 0
	}
	n := d / unit
	if d%unit != 0 {
		n++
	}
	return int(min(int64(n), 1<<31-1))
}

// ThisPlatform is what pgfast applies on the system it runs on.
func ThisPlatform() Platform { return thisPlatform }

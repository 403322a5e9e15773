package netx

import (
	"net"
	"runtime"
	"time"
)

// Platform is what the OS lets pgfast apply to a TCP connection. Where a
// protection is missing, the raw driver's own check stays (pgx's ping after
// a second idle), so pgfast is never worse than the raw driver. PlatformOf is
// a pure function of GOOS so any machine's tests check every mapping.
type Platform struct {
	// GOOS is the system (a GOOS value).
	GOOS string
	// Peek: the checkout peeks (MSG_PEEK|MSG_DONTWAIT), replacing pgx's
	// ping-after-idle; without it that ping stays on.
	Peek bool
	// KeepaliveTimings: per-socket keep-alive timings; otherwise the
	// system-wide values apply (keep-alive itself is still on).
	KeepaliveTimings bool
	// UserTimeout is the option bounding unacknowledged data; Name "" if none.
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
	// macOS and iOS: TCP_RXT_CONNDROPTIME, seconds (<netinet/tcp.h>).
	optUserTimeoutDarwin = UserTimeoutOption{"TCP_RXT_CONNDROPTIME", time.Second}
	// Windows: TCP_MAXRTMS, milliseconds (Windows 10 1607 and later).
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

// thisPlatform is what pgfast applies here; canPeek comes from the build
// (sys_*.go): a system whose peek is not built in keeps pgx's ping.
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
// through net.Dialer.KeepAliveConfig, and opts with setsockopt before connect().
type socketPlan struct {
	keepAlive net.KeepAliveConfig
	opts      []sockOpt
}

// planSockets maps s to what p applies; settings p cannot apply are zero.
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
	// KeepAlive is negative: no keep-alive.
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

// CeilUnits returns d in whole units, rounded up; 0 for d <= 0, at most
// MaxInt32 (what a socket option holds).
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

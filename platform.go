package pgfast

import (
	"maps"
	"time"

	"github.com/pgfast/pgfast/internal/diag"
	"github.com/pgfast/pgfast/internal/netx"
)

// platform is what the operating system lets pgfast apply to a TCP
// connection (netx.Platform), and what that means for a Config. Where one of
// pgfast's protections is missing, the raw driver's own check stays in place
// (pgx's ping before it reuses a connection idle for over a second) instead
// of being switched off, so that pgfast is never worse than the raw driver.
type platform struct{ netx.Platform }

// platformOf returns what pgfast applies on the system goos (a GOOS value).
func platformOf(goos string) platform { return platform{netx.PlatformOf(goos)} }

// thisPlatform is what pgfast applies here.
var thisPlatform = platform{netx.ThisPlatform()}

// notApplied lists the DSN keys whose value this platform cannot apply.
func (p platform) notApplied(c *Config) []string {
	if c == nil {
		return nil
	}
	var keys []string
	if c.Keepalives && !p.KeepaliveTimings {
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
	if c.TCPUserTimeout > 0 && p.UserTimeout.Name == "" {
		keys = append(keys, "tcp_user_timeout")
	}
	return keys
}

// apply makes c say what this platform applies: a setting the system cannot
// apply reads as its "OS default" or "not set" zero, and tcp_user_timeout is
// rounded up to the unit of the system's option (seconds on macOS).
func (p platform) apply(c *Config) {
	if !p.KeepaliveTimings {
		c.KeepalivesIdle, c.KeepalivesInterval, c.KeepalivesCount = 0, 0, 0
	}
	switch {
	case p.UserTimeout.Name == "":
		c.TCPUserTimeout = 0
	case c.TCPUserTimeout > 0:
		c.TCPUserTimeout = time.Duration(netx.CeilUnits(c.TCPUserTimeout, p.UserTimeout.Unit)) * p.UserTimeout.Unit
	}
}

// diag describes p for internal/diag, with the keys of c (the DSN's settings
// before apply) that p cannot apply.
func (p platform) diag(c *Config) diag.Platform {
	return diag.Platform{GOOS: p.GOOS, Peek: p.Peek, KeepaliveTimings: p.KeepaliveTimings,
		UserTimeoutOption: p.UserTimeout.Name, DeadPeerWatch: p.DeadPeerWatch, NotApplied: p.notApplied(c)}
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

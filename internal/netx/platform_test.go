package netx

import (
	"net"
	"slices"
	"testing"
	"time"
)

// everyGOOS is `go tool dist list`'s systems.
var everyGOOS = []string{"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js",
	"linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows"}

// TestPlatformOptionMapping checks, for every system Go supports, what
// pgfast applies there: the peek (or pgx's ping kept), the keep-alive
// timings through net.KeepAliveConfig and the system's user timeout option
// in its own unit.
func TestPlatformOptionMapping(t *testing.T) {
	s := Settings{Keepalives: true, KeepalivesIdle: 10 * time.Second, KeepalivesInterval: 5 * time.Second,
		KeepalivesCount: 3, TCPUserTimeout: 1500 * time.Millisecond}
	timings := net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}
	onOnly := net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	type want struct {
		peek, watch bool
		keepAlive   net.KeepAliveConfig
		opts        []sockOpt
	}
	cases := map[string]want{
		"linux":     {peek: true, watch: true, keepAlive: timings, opts: []sockOpt{{"TCP_USER_TIMEOUT", 1500}}},
		"android":   {peek: true, watch: true, keepAlive: timings, opts: []sockOpt{{"TCP_USER_TIMEOUT", 1500}}},
		"darwin":    {peek: true, keepAlive: timings, opts: []sockOpt{{"TCP_RXT_CONNDROPTIME", 2}}}, // seconds, rounded up
		"ios":       {peek: true, keepAlive: timings, opts: []sockOpt{{"TCP_RXT_CONNDROPTIME", 2}}},
		"windows":   {keepAlive: timings, opts: []sockOpt{{"TCP_MAXRTMS", 1500}}},
		"freebsd":   {peek: true, keepAlive: timings},
		"netbsd":    {peek: true, keepAlive: timings},
		"dragonfly": {peek: true, keepAlive: timings},
		"solaris":   {peek: true, keepAlive: timings},
		"illumos":   {peek: true, keepAlive: timings},
		"openbsd":   {peek: true, keepAlive: onOnly},
		"aix":       {keepAlive: timings},
		"plan9":     {keepAlive: onOnly},
		"js":        {keepAlive: onOnly},
		"wasip1":    {keepAlive: onOnly},
	}
	for _, goos := range everyGOOS {
		w, ok := cases[goos]
		if !ok {
			t.Fatalf("no expectation for %s", goos)
		}
		p := PlatformOf(goos)
		if p.Peek != w.peek || p.DeadPeerWatch != w.watch {
			t.Errorf("%s: peek %v, dead-peer watch %v; want %v, %v", goos, p.Peek, p.DeadPeerWatch, w.peek, w.watch)
		}
		plan := planSockets(p, s)
		if plan.keepAlive != w.keepAlive || !slices.Equal(plan.opts, w.opts) {
			t.Errorf("%s: plan %+v, want keep-alive %+v and options %v", goos, plan, w.keepAlive, w.opts)
		}
		// Keep-alive off: no keep-alive at all, the user timeout still set.
		off := s
		off.Keepalives = false
		if plan := planSockets(p, off); plan.keepAlive != (net.KeepAliveConfig{}) || !slices.Equal(plan.opts, w.opts) {
			t.Errorf("%s, keepalives=0: plan %+v", goos, plan)
		}
		// Unset settings keep the OS defaults.
		if plan := planSockets(p, Settings{Keepalives: true}); plan.keepAlive != onOnly || plan.opts != nil {
			t.Errorf("%s, OS defaults: plan %+v", goos, plan)
		}
	}
}

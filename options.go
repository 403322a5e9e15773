package pgfast

import (
	"context"
	"database/sql/driver"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
)

// Option configures a Connector made by NewConnector.
type Option func(*options)

type options struct {
	backend      Backend
	logger       *slog.Logger
	minConns     int   // 0: from the DSN (pgfast_min_conns) or DefaultMinConns
	waitReady    *bool // nil: from the DSN (pgfast_wait_ready)
	stateHook    func(State, error)
	resolver     Resolver // nil: net.DefaultResolver
	noBackground bool     // no background goroutine (Driver.Open)
	// testBackend replaces the backend's connector (tests only).
	testBackend func(core) driver.Connector
	// testDial wraps the core's dial function before the connector's
	// goroutine starts (tests only).
	testDial func(dialFunc) dialFunc
	// testPlatform replaces what this system applies (tests only).
	testPlatform *platform
}

// WithBackend selects the driver pgfast wraps: PGX (default) or LibPQ.
func WithBackend(b Backend) Option { return func(o *options) { o.backend = b } }

// WithLogger makes the connector log its state changes (once each, no storms).
// A nil logger logs nothing, which is the default.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMinConns sets how many connections are opened in the background and kept
// warm for the first callers (default 1; overrides pgfast_min_conns).
func WithMinConns(n int) Option { return func(o *options) { o.minConns = n } }

// check validates the numeric options against keyMinConns' range (0 leaves
// the DSN's value).
func (o *options) check() error {
	if o.minConns != 0 && (o.minConns < int(keyMinConns.min) || o.minConns > int(keyMinConns.max)) {
		return &ConfigError{Key: "WithMinConns", Value: strconv.Itoa(o.minConns), Reason: "out of range:" + keyMinConns.rangeText(), in: "option"}
	}
	return nil
}

// WithWaitReady makes Connect wait for readiness within its context instead of
// failing fast with ErrNotReady while the database is down (overrides
// pgfast_wait_ready).
func WithWaitReady(wait bool) Option { return func(o *options) { o.waitReady = &wait } }

// WithStateHook calls hook on every state change, with the cause of the change
// (nil when becoming StateReady). The connector's own goroutine makes every
// call, one at a time, in the order the changes happen, StateClosed last;
// while the hook runs the connector applies no other change, so keep it
// short. The hook may call the connector's methods, Close included; a
// Ready (or a waiting Connect) made from the hook waits out its context,
// since the state cannot change before the hook returns.
func WithStateHook(hook func(State, error)) Option { return func(o *options) { o.stateHook = hook } }

// Resolver resolves host names; *net.Resolver satisfies it. pgfast asks it on
// every dial (and every pgfast_dns_recheck), and caches nothing itself.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// WithResolver makes the connector resolve host names with r instead of
// net.DefaultResolver (service discovery, tests). Note that Go's own resolver
// caches /etc/hosts for up to 5 s.
func WithResolver(r Resolver) Option { return func(o *options) { o.resolver = r } }

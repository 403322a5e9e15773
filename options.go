package pgfast

import (
	"context"
	"database/sql/driver"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"github.com/jackc/pgx/v5/stdlib"
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
	// openDB are WithOpenDBOptions' hooks (pgx), pqBefore
	// WithPQBeforeConnect's (lib/pq); *Given: the option was used.
	openDB        []stdlib.OptionOpenDB
	openDBGiven   bool
	pqBefore      pqBeforeFunc
	pqBeforeGiven bool
	// testBackend replaces the backend's connector (tests only).
	testBackend func(core) driver.Connector
	// testDial wraps the core's dial function (tests only).
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

// check validates the numeric options (0 leaves the DSN's value).
func (o *options) check() error {
	if err := o.checkHooks(""); err != nil {
		return err
	}
	if o.minConns != 0 && (o.minConns < int(keyMinConns.min) || o.minConns > int(keyMinConns.max)) {
		return &ConfigError{Key: "WithMinConns", Value: strconv.Itoa(o.minConns), Reason: "out of range:" + keyMinConns.rangeText(), in: "option"}
	}
	return nil
}

// WithWaitReady makes Connect wait for readiness within its context instead of
// failing fast with ErrNotReady while the database is down (overrides
// pgfast_wait_ready).
func WithWaitReady(wait bool) Option { return func(o *options) { o.waitReady = &wait } }

// WithStateHook calls hook on every state change with its cause (nil for
// StateReady), from the connector's goroutine, one at a time and in order,
// StateClosed last. No other change applies while it runs, so keep it short.
// It may call the connector's methods, Close included; a Ready made from it
// waits out its context, as the state cannot change until it returns.
func WithStateHook(hook func(State, error)) Option { return func(o *options) { o.stateHook = hook } }

// Resolver resolves host names; *net.Resolver satisfies it. pgfast asks it on
// every dial (and every pgfast_dns_recheck), and caches nothing itself.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// WithResolver makes the connector resolve host names with r instead of
// net.DefaultResolver. Go's own resolver caches /etc/hosts for up to 5 s.
func WithResolver(r Resolver) Option { return func(o *options) { o.resolver = r } }

package pgfast

import (
	"context"
	"net"
	"reflect"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The pgxpool front end: pgx's own pool (*pgxpool.Pool, unchanged type) on
// the same core as the database/sql driver. pgfast equips the pool's
// configuration through pgxpool's public hooks only:
//
//   - ConnConfig: pgfast's dialer (racing, per-address deadline, socket
//     options, tracked sockets), hosts in the DSN's order, the error hook
//     (adapter.wire, shared with the stdlib connector);
//   - BeforeConnect: fail fast while Down, or wait (pgfast_wait_ready), then
//     the order of hosts (load_balance_hosts, bad hosts last), then the
//     application's own BeforeConnect, which the connector's own
//     connections run too (it may supply the password);
//   - PrepareConn: the role check and the syscall-only liveness check;
//   - ShouldPing: never where the checkout peeks (the liveness check replaces
//     the ping after 1 s idle); on a system without the peek (Windows:
//     platform.go) pgxpool's own ping stays;
//   - Tracer: the end of each connection attempt tells the connector's
//     goroutine, as a caller's dial does on the driver path.
//
// The connector (Ready, State, Stats) is found from the pool with
// PoolConnector; it stops when the pool is closed or collected (poolreg.go).

// NewPool is pgxpool.New with pgfast's protection: it parses dsn with
// pgxpool.ParseConfig (pool_* keys included), takes pgfast's keys out as the
// driver does (keepalives*, tcp_user_timeout, pgfast_*; the same defaults and
// the same *ConfigError) and returns pgx's own *pgxpool.Pool. It never waits
// for the network: connections, pool_min_conns' included, are made in the
// background. While the database is down, Acquire (and the pool's Query,
// Exec...) fails fast with ErrNotReady without dialling, or waits with
// pgfast_wait_ready=1. PoolConnector gives the pool's Ready, State and Stats.
//
// Of the options, WithLogger, WithStateHook, WithResolver and WithWaitReady
// apply; WithMinConns and pgfast_min_conns do not (the pool's own
// pool_min_conns keeps connections open), and the backend is always pgx.
func NewPool(ctx context.Context, dsn string, opts ...Option) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, namePoolKey(configErrorFrom(dsn, err))
	}
	return newPool(ctx, pc, dsn, opts)
}

// NewPoolWithConfig equips cfg, which must come from pgxpool.ParseConfig, with
// pgfast's protection and makes the pool, as NewPool does. cfg itself is not
// changed (a copy is equipped). pgfast's keys are read from cfg's connection
// string and taken out of cfg.ConnConfig.RuntimeParams.
//
// The application's own hooks are kept: pgfast's BeforeConnect and
// PrepareConn (or a deprecated BeforeAcquire) run first, then the
// application's (a connection pgfast finds dead never reaches it). The
// application's BeforeConnect also runs before each connection pgfast itself
// makes for the pool (its background attempts), so one that supplies the password (IAM
// tokens) works for both; it is bounded by connect_timeout (one that ignores
// its context is abandoned and the attempt fails), and its error fails that
// attempt, wrapped, without counting against the server. Its
// AfterConnect, AfterRelease and BeforeClose are untouched; its ShouldPing,
// if set, is kept (otherwise nothing is pinged at checkout, except on Windows,
// which has no peek: there pgxpool's ping after a second idle stays); its Tracer is
// composed after pgfast's connection tracer (every interface it implements,
// pgxpool's AcquireTracer and ReleaseTracer included, keeps working). A
// DialFunc or LookupFunc of the application's own cannot be composed with
// pgfast's racing dialer and is refused with a *ConfigError.
func NewPoolWithConfig(ctx context.Context, cfg *pgxpool.Config, opts ...Option) (*pgxpool.Pool, error) {
	const what = "pgxpool config"
	if cfg == nil || cfg.ConnConfig == nil {
		return nil, &ConfigError{Reason: "pgxpool config must be created by pgxpool.ParseConfig", in: what}
	}
	pc := cfg.Copy()
	if !sameFunc(pc.ConnConfig.DialFunc, defaultDial) {
		return nil, &ConfigError{Key: "DialFunc", Reason: "pgfast dials itself (racing addresses, socket options); a custom DialFunc cannot be composed: leave it as pgxpool.ParseConfig set it (use WithResolver for name resolution)", in: what}
	}
	if !sameFunc(pc.ConnConfig.LookupFunc, defaultLookup) {
		return nil, &ConfigError{Key: "LookupFunc", Reason: "pgfast resolves itself; use WithResolver instead of a custom LookupFunc", in: what}
	}
	p, err := newPool(ctx, pc, pc.ConnString(), opts)
	// pgfast's keys come from the configuration's own connection string.
	return p, configErrorIn(err, what)
}

// defaultDial and defaultLookup stand for what pgconn.ParseConfig sets: a
// *net.Dialer's DialContext and net.DefaultResolver's LookupHost (method
// values of one method share their code pointer).
var (
	defaultDial   = pgconn.DialFunc((&net.Dialer{}).DialContext)
	defaultLookup = pgconn.LookupFunc(net.DefaultResolver.LookupHost)
)

// sameFunc reports whether f is nil or runs g's code: pgx's defaults are
// method values of a *net.Dialer and a *net.Resolver, whose code is the same
// whatever the receiver.
func sameFunc[F any](f, g F) bool {
	v := reflect.ValueOf(f)
	return v.IsNil() || v.Pointer() == reflect.ValueOf(g).Pointer()
}

// newPool starts a connector on pc's connection settings, equips pc and
// makes the pool.
func newPool(ctx context.Context, pc *pgxpool.Config, dsn string, opts []Option) (*pgxpool.Pool, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.backend != PGX {
		return nil, &ConfigError{Key: "WithBackend", Value: o.backend.String(), Reason: "a pgxpool is always pgx", in: "option"}
	}
	if err := checkPoolConfig(pc); err != nil {
		return nil, err
	}
	a, p, err := pgxAdapterFor(pc.ConnConfig, withPassword(secretFormsOf(dsn), pc.ConnConfig.Password))
	if err != nil {
		return nil, err
	}
	cfg, err := configure(a, p)
	if err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err // WithMinConns does not apply to a pool, but a bad one is still a mistake
	}
	// The pool keeps its own connections (pool_min_conns): the connector
	// keeps none warm, its attempts only say whether the database answers.
	cfg.MinConns, o.minConns = 0, 0
	// Every connection pgfast makes for the pool (background attempts, role
	// verifications) runs the application's BeforeConnect, as pgxpool runs
	// it for the pool's own: it may supply the password (IAM tokens).
	a.before = pc.BeforeConnect
	// The connector's attempts are pgfast's, not the pool's connections: the
	// application's tracer (like its AfterConnect) does not see them.
	userTracer := pc.ConnConfig.Tracer
	pc.ConnConfig.Tracer = nil
	c, err := newConnectorWith(a, cfg, o) // copies pc.ConnConfig for its attempts
	pc.ConnConfig.Tracer = userTracer
	if err != nil {
		return nil, err
	}
	equipPool(pc, a, c)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	registerPool(pool, c)
	return pool, nil
}

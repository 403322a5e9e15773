package pgfast

import (
	"cmp"
	"context"
	"net"
	"reflect"
	"time"
	"weak"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The pgxpool front end: pgx's own *pgxpool.Pool on the same core as the
// database/sql driver, equipped through pgxpool's public hooks only:
//
//   - ConnConfig: pgfast's dialer, hosts in the DSN's order, the error hook;
//   - BeforeConnect: fail fast while Down or wait (pgfast_wait_ready), order
//     the hosts, then the application's BeforeConnect;
//   - PrepareConn: the role check and the syscall-only liveness check;
//   - ShouldPing: never where the checkout peeks; without the peek
//     (Windows) pgxpool's own ping stays;
//   - Tracer: each attempt's end tells the connector, as a caller's dial does.
//
// PoolConnector finds the connector; it stops when the pool is closed or
// collected.

// NewPool is pgxpool.New with pgfast's protection: it parses dsn with
// pgxpool.ParseConfig, takes pgfast's keys out as the driver does (same
// defaults, same *ConfigError) and returns pgx's own *pgxpool.Pool. It never
// waits for the network. While the database is down, Acquire (and Query,
// Exec...) fails fast with ErrNotReady, or waits with pgfast_wait_ready=1.
// PoolConnector gives the pool's Ready, State and Stats.
//
// WithLogger, WithStateHook, WithResolver and WithWaitReady apply;
// WithMinConns and pgfast_min_conns do not (pool_min_conns does), and the
// backend is always pgx. The pool's hooks are the pgxpool.Config's
// (NewPoolWithConfig): WithOpenDBOptions and WithPQBeforeConnect are refused
// with a *ConfigError.
func NewPool(ctx context.Context, dsn string, opts ...Option) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, namePoolKey(configErrorFrom(dsn, err))
	}
	return newPool(ctx, pc, dsn, opts)
}

// NewPoolWithConfig equips a copy of cfg, which must come from
// pgxpool.ParseConfig, with pgfast's protection and makes the pool, as
// NewPool does. pgfast's keys are read from cfg's connection string and
// taken out of cfg.ConnConfig.RuntimeParams.
//
// The application's hooks are kept: pgfast's BeforeConnect and PrepareConn
// (or BeforeAcquire) run first, then the application's. Its BeforeConnect
// also runs before pgfast's own background attempts (so one supplying IAM
// tokens works for both), bounded by connect_timeout; its error fails that
// attempt without counting against the server; a hook that ignores its
// context is abandoned, and one that panics fails that attempt. A
// connection pgfast finds dead never reaches the application's PrepareConn.
// AfterConnect, AfterRelease, BeforeClose and a set ShouldPing are
// untouched; without a ShouldPing nothing is pinged at checkout (pgfast's
// check replaces it), except where the OS has no checkout peek (Windows),
// where pgxpool's own ping stays. Its Tracer is composed
// after pgfast's (every interface it implements keeps working). A DialFunc
// or LookupFunc of its own cannot be composed with pgfast's racing dialer
// and is refused with a *ConfigError.
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
	return p, configErrorIn(err, what)
}

// defaultDial and defaultLookup stand for what pgconn.ParseConfig sets
// (method values of one method share their code pointer).
var (
	defaultDial   = pgconn.DialFunc((&net.Dialer{}).DialContext)
	defaultLookup = pgconn.LookupFunc(net.DefaultResolver.LookupHost)
)

// sameFunc reports whether f is nil or runs g's code, whatever the receiver.
func sameFunc[F any](f, g F) bool {
	v := reflect.ValueOf(f)
	return v.IsNil() || v.Pointer() == reflect.ValueOf(g).Pointer()
}

func newPool(ctx context.Context, pc *pgxpool.Config, dsn string, opts []Option) (*pgxpool.Pool, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.backend != PGX {
		return nil, &ConfigError{Key: "WithBackend", Value: o.backend.String(), Reason: "a pgxpool is always pgx", in: "option"}
	}
	if err := o.checkHooks("NewPool"); err != nil {
		return nil, err
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
	// The pool keeps its own connections: the connector's attempt is the
	// pool's (poolLogin), none is kept warm beside it.
	cfg.MinConns, o.minConns = 0, 0
	// pgfast's own connections run the application's BeforeConnect too: it
	// may supply the password.
	a.before = pc.BeforeConnect
	// The backend's connector (a copy of pc.ConnConfig) serves only
	// Connector.Connect; without the application's tracer.
	userTracer := pc.ConnConfig.Tracer
	pc.ConnConfig.Tracer = nil
	c, err := buildConnector(a, cfg, o)
	pc.ConnConfig.Tracer = userTracer
	if err != nil {
		return nil, err
	}
	probe := &poolProbe{}
	equipPool(pc, a, c, probe)
	closeWithPool(pc, c)
	ctx, eager := eagerFor(ctx, pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		c.start()
		_ = c.Close()
		return nil, err
	}
	registerPool(pool, c)
	login := poolLogin(weak.Make(pool), probe, eager, c.ctx, c.cfg.ConnectTimeout)
	c.poolLogin.Store(&login)
	c.start() // after poolLogin: the first attempt is the pool's first connection
	return pool, nil
}

// poolLogin is a pool connector's attempt (cause A9): Acquire, Ping,
// Release through the pool itself, so the login stays in the pool, idle, as
// after a raw pool.Ping, and the application's BeforeConnect, AfterConnect
// and tracer see it. The pool is held weakly (it stays collectable). With
// eager connects (pool_min_conns) the first attempt takes one of those
// (pool_eager.go).
func poolLogin(key weak.Pointer[pgxpool.Pool], probe *poolProbe, eager *eagerConnects, closed context.Context, bound time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		p := key.Value()
		if p == nil {
			return ErrClosed
		}
		if eager != nil {
			if err := eager.await(ctx); eagerOutcome(err) {
				return err
			} else if err != nil {
				return &noEvidenceError{err: err}
			}
		}
		conn, err := p.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil && !loginRecordOf(ctx).handshaken() {
				// Cancelled while it waited for a slot, before any socket.
				return &noEvidenceError{err: err}
			}
			return err
		}
		if ctx.Err() != nil {
			// Cancelled (another report made the connector Ready: an
			// eager connect's login; Close) once the connection was
			// ours: give it back unpinged rather than let pgx close it
			// mid-ping, a login wasted.
			probe.releasing(conn.Conn())
			conn.Release()
			return &noEvidenceError{err: ctx.Err()}
		}
		// The ping follows Close, not the attempt's cancellation: pgx
		// closes a connection whose ping is cancelled, a login wasted.
		pctx, cancel := pingContext(closed, bound)
		err = conn.Ping(pctx)
		cancel()
		probe.releasing(conn.Conn())
		conn.Release()
		return err
	}
}

// pingContext bounds the attempt's ping by Close (closed) and
// connect_timeout (its default when unset: a backend that hangs while its
// kernel ACKs must not hold the attempt until Close).
func pingContext(closed context.Context, bound time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(closed, cmp.Or(bound, DefaultConnectTimeout))
}

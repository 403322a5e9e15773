package pgfast

import (
	"context"
	"reflect"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
)

// The application's connection hooks on the database/sql front ends: pgx's
// own stdlib.OptionOpenDB values (WithOpenDBOptions) and lib/pq's
// before-connect hook (WithPQBeforeConnect). pgfast sets pgx's hooks itself
// (its checkout check, its host order), and each stdlib.OptionOpenDB sets
// one field, the last one winning: appended to pgfast's, the application's
// would silently remove pgfast's. So pgfast reads what they set and composes
// it with its own, pgfast's first.

// WithOpenDBOptions passes pgx's stdlib.OptionOpenDB hooks to a pgx
// connector (NewConnector, NewConnectorFromConfig), so that
//
//	db := stdlib.OpenDB(*cc, opts...)
//
// becomes
//
//	c, err := pgfast.NewConnectorFromConfig(cc, pgfast.WithOpenDBOptions(opts...))
//	db := sql.OpenDB(c)
//
// Each hook is composed with pgfast's own:
//
//   - OptionBeforeConnect runs before every connection pgfast makes (callers'
//     dials, its background attempts, warm connections, role verifications),
//     after pgfast ordered the hosts and before the attempt takes an admission
//     slot, on the attempt's own deep copy of the configuration (stdlib's is
//     shallow). It may set the user and password (an IAM token, a Vault
//     secret) and anything else pgx reads from the configuration. It gets at
//     most connect_timeout: one that ignores its context is abandoned. Its
//     error fails that attempt only (never evidence against the server, never
//     permanent) and carries no spelling of the password it set. With it, a
//     failed login (28P01, 28000) is retried at once, once, with a fresh
//     credential before pgfast's limit of failed logins applies.
//   - OptionAfterConnect runs after the login, as in pgx, once the connection
//     no longer holds its admission slot nor connect_timeout's deadline; its
//     error (or panic) fails the attempt without counting against the server,
//     and the connection is closed.
//   - OptionResetSession runs at each reuse after pgfast's role and liveness
//     checks, which may already have discarded the connection.
//   - OptionShouldPing is asked at each reuse, as pgx asks it, and pgx pings
//     when it says so. Without it pgfast's syscall-only liveness check
//     replaces pgx's ping where the OS allows (everywhere but Windows); with
//     it, a connection that check finds dead is not pinged (nor is the hook
//     asked) and is discarded.
//
// An option that sets anything else is refused with a *ConfigError, as are
// these options with WithBackend(LibPQ) and with NewPool (a pgxpool.Config
// has its own BeforeConnect, AfterConnect, PrepareConn and ShouldPing).
// Several calls add up; within them the last option of a kind wins, as in
// stdlib.OpenDB.
func WithOpenDBOptions(opts ...stdlib.OptionOpenDB) Option {
	return func(o *options) {
		o.openDB = append(o.openDB, opts...)
		o.openDBGiven = true
	}
}

// WithPQBeforeConnect runs hook before every connection a lib/pq connector
// (WithBackend(LibPQ)) makes: callers' dials, background attempts, warm
// connections. It gets the attempt's own copy of lib/pq's configuration, as
// parsed from the DSN, and may set the user and password (an IAM token, a
// Vault secret), the application name, runtime parameters (cfg.Runtime) and
// the other settings lib/pq reads from it; what pgfast owns is put back
// after it returns: the hosts (Host, Hostaddr, Port, Multi),
// target_session_attrs, load_balance_hosts and connect_timeout. It is
// bounded, fails, and makes failed logins retried exactly as WithOpenDBOptions'
// OptionBeforeConnect. Refused (*ConfigError) with the pgx backend and
// NewPool. lib/pq's Listener (NewPQListener) takes a DSN and does not run it.
func WithPQBeforeConnect(hook func(ctx context.Context, cfg *pq.Config) error) Option {
	return func(o *options) {
		o.pqBefore = hook
		o.pqBeforeGiven = true
	}
}

// pqBeforeFunc is WithPQBeforeConnect's hook.
type pqBeforeFunc = func(context.Context, *pq.Config) error

// openDBHooks are the application's stdlib.OptionOpenDB hooks, nil where
// none was given (or pgx's no-op default).
type openDBHooks struct {
	before     beforeConnectFunc
	after      func(context.Context, *pgx.Conn) error
	reset      func(context.Context, *pgx.Conn) error
	shouldPing func(context.Context, stdlib.ShouldPingParams) bool
}

// checkHooks refuses hooks the chosen backend cannot run (front names the
// constructor for NewPool, "" otherwise).
func (o *options) checkHooks(front string) error {
	switch {
	case front != "" && o.openDBGiven:
		return &ConfigError{Key: "WithOpenDBOptions", Reason: front + " takes its hooks from the pgxpool.Config (BeforeConnect, AfterConnect, PrepareConn, ShouldPing), not stdlib.OptionOpenDB", in: "option"}
	case front != "" && o.pqBeforeGiven:
		return &ConfigError{Key: "WithPQBeforeConnect", Reason: front + " is always pgx: set the pgxpool.Config's BeforeConnect", in: "option"}
	case o.openDBGiven && o.backend != PGX:
		return &ConfigError{Key: "WithOpenDBOptions", Reason: "stdlib.OptionOpenDB hooks need the pgx backend (WithPQBeforeConnect for lib/pq)", in: "option"}
	case o.pqBeforeGiven && o.backend != LibPQ:
		return &ConfigError{Key: "WithPQBeforeConnect", Reason: "needs WithBackend(LibPQ) (WithOpenDBOptions(stdlib.OptionBeforeConnect(...)) for pgx)", in: "option"}
	}
	return nil
}

// equip gives the adapter the application's hooks (after checkHooks).
func (o *options) equip(a adapter) error {
	if err := o.checkHooks(""); err != nil {
		return err
	}
	switch a := a.(type) {
	case *pgxAdapter:
		if !o.openDBGiven {
			return nil
		}
		h, err := readOpenDBOptions(o.openDB)
		if err != nil {
			return err
		}
		a.before, a.hooks = h.before, h
	case *pqAdapter:
		a.before = o.pqBefore
	}
	return nil
}

// openDBHookFields are the stdlib connector's fields the options set
// (pgx v5.12's stdlib.connector, read with reflect: the type is unexported,
// its hook fields are exported).
var openDBHookFields = [...]string{"BeforeConnect", "AfterConnect", "ResetSession", "ShouldPing"}

// readOpenDBOptions applies opts to a connector of pgx's own and reads back
// the hooks they set. An option setting any other field, or a pgx whose
// connector no longer has these fields, is a *ConfigError (and fails
// TestUpstreamLayout).
func readOpenDBOptions(opts []stdlib.OptionOpenDB) (openDBHooks, error) {
	var h openDBHooks
	got := reflect.ValueOf(stdlib.GetConnector(pgx.ConnConfig{}, opts...))
	def := reflect.ValueOf(stdlib.GetConnector(pgx.ConnConfig{}))
	refuse := func(reason string) (openDBHooks, error) {
		return openDBHooks{}, &ConfigError{Key: "WithOpenDBOptions", Reason: reason, in: "option"}
	}
	if got.Kind() != reflect.Struct || got.Type() != def.Type() {
		return refuse("pgx's stdlib connector is not the struct pgfast knows: upgrade pgfast")
	}
	found := 0
	for i := range got.NumField() {
		name := got.Type().Field(i).Name
		g, d := got.Field(i), def.Field(i)
		var ok bool
		switch name {
		case "BeforeConnect":
			h.before, ok = hookField[beforeConnectFunc](g, d)
		case "AfterConnect":
			h.after, ok = hookField[func(context.Context, *pgx.Conn) error](g, d)
		case "ResetSession":
			h.reset, ok = hookField[func(context.Context, *pgx.Conn) error](g, d)
		case "ShouldPing":
			h.shouldPing, ok = hookField[func(context.Context, stdlib.ShouldPingParams) bool](g, d)
		default:
			if changedField(g, d) {
				return refuse("an stdlib.OptionOpenDB sets the connector's " + name + ", which pgfast cannot compose")
			}
			continue
		}
		if !ok {
			return refuse("pgx's stdlib connector field " + name + " is not the function pgfast knows: upgrade pgfast")
		}
		found++
	}
	if found != len(openDBHookFields) {
		return refuse("pgx's stdlib connector lacks a hook field pgfast knows: upgrade pgfast")
	}
	return h, nil
}

// hookField reads a hook field: nil when unset or still pgx's no-op default
// (the same code as d's); ok is false for a field of another type.
func hookField[F any](g, d reflect.Value) (f F, ok bool) {
	if g.Kind() != reflect.Func || !g.CanInterface() {
		return f, false
	}
	if g.IsNil() || !d.IsNil() && g.Pointer() == d.Pointer() {
		return f, g.Type() == reflect.TypeFor[F]()
	}
	f, ok = g.Interface().(F)
	return f, ok
}

// changedField reports whether an option changed a field pgfast does not
// compose (compared by identity for references, by zeroness otherwise).
func changedField(g, d reflect.Value) bool {
	switch g.Kind() {
	case reflect.Func, reflect.Pointer, reflect.Map, reflect.Chan, reflect.Slice, reflect.UnsafePointer:
		return g.Pointer() != d.Pointer()
	}
	return g.IsZero() != d.IsZero()
}

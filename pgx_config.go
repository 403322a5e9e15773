package pgfast

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// NewConnectorFromConfig starts a connector (pgx backend) on a copy of cc,
// which must come from pgx.ParseConfig. Everything cc holds is used as pgx
// would, except: pgfast's settings are taken out of cc.RuntimeParams; a
// DialFunc other than pgx's default is refused (*ConfigError, Key
// "DialFunc"), as pgfast dials itself; a custom LookupFunc resolves for
// pgfast's dialer unless WithResolver is given. Use it with sql.OpenDB;
// stdlib.OpenDB's hooks (stdlib.OptionOpenDB) go in WithOpenDBOptions.
func NewConnectorFromConfig(cc *pgx.ConnConfig, opts ...Option) (*Connector, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.backend != PGX {
		return nil, &ConfigError{Key: "WithBackend", Value: o.backend.String(), Reason: "a *pgx.ConnConfig needs the pgx backend", in: "option"}
	}
	a, p, err := pgxAdapterFromConfig(cc)
	if err != nil {
		return nil, err
	}
	cfg, err := configure(a, p)
	if err != nil {
		return nil, configErrorIn(err, pgxConnConfigName)
	}
	return newConnectorWith(a, cfg, o)
}

// pgxConnConfigName is what a *ConfigError about a *pgx.ConnConfig calls it.
const pgxConnConfigName = "*pgx.ConnConfig"

// pgxAdapterFromConfig checks cc and makes the adapter for a copy of it.
func pgxAdapterFromConfig(cc *pgx.ConnConfig) (*pgxAdapter, *parsedDSN, error) {
	if cc == nil {
		return nil, nil, &ConfigError{Reason: "nil *pgx.ConnConfig", in: pgxConnConfigName}
	}
	if !madeByParseConfig(cc) {
		return nil, nil, &ConfigError{Reason: "the *pgx.ConnConfig must be made by pgx.ParseConfig (pgx refuses one built by hand)", in: pgxConnConfigName}
	}
	if !sameFunc(cc.DialFunc, defaultDial) {
		return nil, nil, &ConfigError{Key: "DialFunc", Reason: "pgfast dials every connection itself (address racing, TCP keepalives, dead-peer detection) " +
			"and cannot compose a custom DialFunc: leave DialFunc as pgx.ParseConfig set it, or open this configuration with pgx's stdlib", in: pgxConnConfigName}
	}
	cc = cc.Copy()
	var lookup pgconn.LookupFunc
	if !sameFunc(cc.LookupFunc, defaultLookup) {
		lookup = cc.LookupFunc
	}
	a, p, err := pgxAdapterFor(cc, pgxPasswordForms(cc.Password))
	if err != nil {
		return nil, nil, configErrorIn(err, pgxConnConfigName)
	}
	a.lookup = lookup
	return a, p, nil
}

// madeByParseConfig reports whether pgx.ParseConfig made cc (pgx panics on a
// hand-built one), from an unexported field; a pgx without it passes.
func madeByParseConfig(cc *pgx.ConnConfig) bool {
	for _, v := range []reflect.Value{reflect.ValueOf(cc).Elem(), reflect.ValueOf(&cc.Config).Elem()} {
		f := v.FieldByName("createdByParseConfig")
		if f.IsValid() && f.Kind() == reflect.Bool && !f.Bool() {
			return false
		}
	}
	return true
}

func pgxPasswordForms(pw string) []string {
	return withPassword(nil, pw)
}

// resolver makes a configuration's own LookupFunc pgfast's resolver.
func (a *pgxAdapter) resolver() Resolver {
	if a.lookup == nil {
		return nil
	}
	return lookupResolver(a.lookup)
}

type lookupResolver pgconn.LookupFunc

// LookupNetIP asks the LookupFunc; every answer must be an IP address.
func (f lookupResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	names, err := f(ctx, host)
	if err != nil {
		return nil, err
	}
	ips := make([]netip.Addr, 0, len(names))
	for _, n := range names {
		ip, err := netip.ParseAddr(n)
		if err != nil {
			return nil, &net.DNSError{Err: "LookupFunc returned " + n + ", not an IP address", Name: host}
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

// pgxRegistry holds the configurations of RegisterConnConfig by name.
var pgxRegistry = struct {
	sync.Mutex
	m map[string]*pgx.ConnConfig
}{m: make(map[string]*pgx.ConnConfig)}

// RegisterConnConfig registers cc under a name that both sql.Open("pgfast",
// name) and sql.Open("pgx", name) accept (stdlib.RegisterConnConfig's, which
// it replaces: pgx keeps its registry to itself). sql.Open("pgfast", name)
// uses a copy of cc taken now.
func RegisterConnConfig(cc *pgx.ConnConfig) string {
	name := stdlib.RegisterConnConfig(cc)
	pgxRegistry.Lock()
	pgxRegistry.m[name] = cc
	pgxRegistry.Unlock()
	return name
}

// UnregisterConnConfig removes the registration of name from pgfast and from
// pgx's stdlib. Connectors already open keep their copy.
func UnregisterConnConfig(name string) {
	pgxRegistry.Lock()
	delete(pgxRegistry.m, name)
	pgxRegistry.Unlock()
	stdlib.UnregisterConnConfig(name)
}

// stdlibRegisteredName matches the names stdlib.RegisterConnConfig makes.
var stdlibRegisteredName = regexp.MustCompile(`^registeredConnConfig[0-9]+$`)

// registeredPgxAdapter makes the adapter for a RegisterConnConfig name (ok
// set); a name only pgx's registry knows is a *ConfigError saying what to do.
func registeredPgxAdapter(name string) (a *pgxAdapter, p *parsedDSN, ok bool, err error) {
	pgxRegistry.Lock()
	cc := pgxRegistry.m[name]
	pgxRegistry.Unlock()
	switch {
	case cc != nil:
		a, p, err = pgxAdapterFromConfig(cc)
		return a, p, true, err
	case stdlibRegisteredName.MatchString(name):
		return nil, nil, true, &ConfigError{Reason: strconv.Quote(name) + " is a name from stdlib.RegisterConnConfig, whose configuration pgx keeps to itself: " +
			"register it with pgfast.RegisterConnConfig instead (its names work with both \"pgx\" and \"pgfast\"), or use pgfast.NewConnectorFromConfig"}
	}
	return nil, nil, false, nil
}

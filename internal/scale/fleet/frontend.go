//go:build linux

// Package fleet is what the scale harness (internal/scale, scripts/scale) and
// the root's TestScaleCounts share: the front ends compared in pairs (a raw
// driver and pgfast's wrapping of it), one measured run of N tenants, the
// server-log counts and the process footprint it is judged by, and the
// bounds of issue 19 that pgfast must keep against the raw driver.
//
// A tenant is what a multi-tenant service holds per customer database: one
// *sql.DB or one *pgxpool.Pool, opened with a new user's DSN (no pgfast_
// keys, a SCRAM password, the host name "localhost").
package fleet

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "github.com/lib/pq"              // registers "postgres"

	"github.com/pgfast/pgfast"
)

// Tenant is one open tenant: a *sql.DB or a pool.
type Tenant interface {
	// Ready is the tenant's first call, bounded by ctx: pgfast.Ready for a
	// *sql.DB (db.PingContext for a raw one, which is what pgfast.Ready
	// falls back to), Ping for a pool.
	Ready(ctx context.Context) error
	// Exec runs "SELECT 1", the tenant's everyday query.
	Exec(ctx context.Context) error
	// Close closes the tenant.
	Close()
}

// FrontEnd is one way of opening a tenant.
type FrontEnd struct {
	// Name names the front end in flags, tables and server roles.
	Name string
	// Label is the column heading (the wording).
	Label string
	// Raw is true for the raw drivers, the baselines.
	Raw bool
	// LibPQ is true for lib/pq and pgfast-pq, whose default sslmode is
	// "require": against a server without TLS their DSN needs
	// sslmode=disable (see DSN).
	LibPQ bool
	open  func(ctx context.Context, dsn string) (Tenant, error)
}

// Open opens one tenant with dsn. It does not wait for the network.
func (f *FrontEnd) Open(ctx context.Context, dsn string) (Tenant, error) {
	t, err := f.open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: open: %w", f.Name, err)
	}
	return t, nil
}

// Role is the server role this front end's tenants log in as, so that the
// server log attributes every login to one front end even when a straggler
// of an earlier run lands late.
func (f *FrontEnd) Role() string {
	return "scale_" + strings.ReplaceAll(f.Name, "-", "_")
}

// DSN is a new user's DSN for this front end: postgres://role:Password@
// localhost:port/db, no pgfast_ keys and no connect_timeout. lib/pq's
// default sslmode is require, so without TLS on the server the lib/pq pair
// (both sides alike) gets sslmode=disable. extra (key=value&...) is appended
// when not empty.
func (f *FrontEnd) DSN(port int, database string, serverTLS bool, extra string) string {
	dsn := fmt.Sprintf("postgres://%s:%s@localhost:%d/%s", f.Role(), Password, port, database)
	var q []string
	if f.LibPQ && !serverTLS {
		q = append(q, "sslmode=disable")
	}
	if extra != "" {
		q = append(q, extra)
	}
	if len(q) > 0 {
		dsn += "?" + strings.Join(q, "&")
	}
	return dsn
}

// Password is the SCRAM password of every front end's role.
const Password = "scale-pw"

// RolesSQL creates every front end's role (see Role), with Password stored
// as a SCRAM verifier (the server's password_encryption).
func RolesSQL() string {
	var b strings.Builder
	for _, p := range Pairs {
		for _, f := range []*FrontEnd{p.Raw, p.Fast} {
			fmt.Fprintf(&b, "CREATE ROLE %s LOGIN PASSWORD '%s';\n", f.Role(), Password)
		}
	}
	return b.String()
}

// Pair is a raw driver and the pgfast front end that wraps it.
type Pair struct{ Raw, Fast *FrontEnd }

// The front ends, in pairs.
var (
	PGX = &FrontEnd{Name: "pgx", Label: "raw pgx", Raw: true, open: openDB("pgx")}
	// PGFast is sql.Open("pgfast").
	PGFast = &FrontEnd{Name: "pgfast", Label: "pgfast", open: openDB("pgfast")}
	PQ     = &FrontEnd{Name: "pq", Label: "raw lib/pq", Raw: true, LibPQ: true, open: openDB("postgres")}
	// PGFastPQ is sql.Open("pgfast-pq").
	PGFastPQ = &FrontEnd{Name: "pgfast-pq", Label: "pgfast-pq", LibPQ: true, open: openDB("pgfast-pq")}
	PGXPool  = &FrontEnd{Name: "pgxpool", Label: "raw pgxpool", Raw: true, open: openPool(pgxpool.New)}
	// NewPool is pgfast.NewPool.
	NewPool = &FrontEnd{Name: "newpool", Label: "NewPool", open: openPool(func(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
		return pgfast.NewPool(ctx, dsn)
	})}

	// Pairs are the comparisons of issue 19, raw first.
	Pairs = []Pair{{PGX, PGFast}, {PQ, PGFastPQ}, {PGXPool, NewPool}}
)

// ByName returns the front end called name, or nil.
func ByName(name string) *FrontEnd {
	for _, p := range Pairs {
		for _, f := range []*FrontEnd{p.Raw, p.Fast} {
			if f.Name == name {
				return f
			}
		}
	}
	return nil
}

func openDB(driverName string) func(context.Context, string) (Tenant, error) {
	return func(_ context.Context, dsn string) (Tenant, error) {
		db, err := sql.Open(driverName, dsn)
		if err != nil {
			return nil, err
		}
		return dbTenant{db}, nil
	}
}

type dbTenant struct{ db *sql.DB }

func (t dbTenant) Ready(ctx context.Context) error { return pgfast.Ready(ctx, t.db) }
func (t dbTenant) Close()                          { t.db.Close() }
func (t dbTenant) Exec(ctx context.Context) error {
	_, err := t.db.ExecContext(ctx, "SELECT 1")
	return err
}

func openPool(newPool func(context.Context, string) (*pgxpool.Pool, error)) func(context.Context, string) (Tenant, error) {
	return func(ctx context.Context, dsn string) (Tenant, error) {
		p, err := newPool(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return poolTenant{p}, nil
	}
}

type poolTenant struct{ p *pgxpool.Pool }

func (t poolTenant) Ready(ctx context.Context) error { return t.p.Ping(ctx) }
func (t poolTenant) Close()                          { t.p.Close() }
func (t poolTenant) Exec(ctx context.Context) error {
	_, err := t.p.Exec(ctx, "SELECT 1")
	return err
}

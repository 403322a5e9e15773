package main

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/pgfast/pgfast"
)

// TenantSpec is one tenant of the configuration: an id and its DSN.
type TenantSpec struct {
	ID  string
	DSN string
}

// validID is what a tenant id may look like: it appears in URLs.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ParseSpec parses one "id=dsn" entry.
func ParseSpec(s string) (TenantSpec, error) {
	id, dsn, ok := strings.Cut(strings.TrimSpace(s), "=")
	id, dsn = strings.TrimSpace(id), strings.TrimSpace(dsn)
	if !ok || dsn == "" {
		return TenantSpec{}, fmt.Errorf("tenant %q: want id=dsn", id)
	}
	if !validID.MatchString(id) {
		return TenantSpec{}, fmt.Errorf("tenant %q: an id is 1-64 letters, digits, '_', '.' or '-'", id)
	}
	return TenantSpec{ID: id, DSN: dsn}, nil
}

// ParseSpecs reads one "id=dsn" per line; blank lines and lines starting
// with # are skipped.
func ParseSpecs(r io.Reader) ([]TenantSpec, error) {
	var specs []TenantSpec
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, err := ParseSpec(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		specs = append(specs, spec)
	}
	return specs, sc.Err()
}

// Tenant is one tenant's database: its own *sql.DB over its own pgfast
// connector.
type Tenant struct {
	ID        string
	DB        *sql.DB
	Connector *pgfast.Connector
}

// Tenants is the server's set of tenants, fixed once opened.
type Tenants struct {
	list    []*Tenant // in configuration order
	byID    map[string]*Tenant
	closing atomic.Bool // set by Close
}

// Options configures OpenTenants.
type Options struct {
	// Backend is the driver pgfast wraps (pgfast.PGX or pgfast.LibPQ).
	Backend pgfast.Backend
	// Logger, if set, logs each tenant's state changes with a "tenant" attribute.
	Logger *slog.Logger
}

// OpenTenants opens a *sql.DB per tenant. It never waits for a database:
// pgfast connects in the background, so a tenant that is down delays
// neither the others nor the server's start. It fails only on a bad
// configuration (a duplicate id, a DSN pgfast cannot parse), closing what it
// had opened.
func OpenTenants(specs []TenantSpec, o Options) (*Tenants, error) {
	ts := &Tenants{byID: make(map[string]*Tenant, len(specs))}
	for _, spec := range specs {
		if _, dup := ts.byID[spec.ID]; dup {
			ts.Close()
			return nil, fmt.Errorf("tenant %q: configured twice", spec.ID)
		}
		opts := []pgfast.Option{pgfast.WithBackend(o.Backend)}
		if o.Logger != nil {
			opts = append(opts, pgfast.WithLogger(o.Logger.With("tenant", spec.ID)))
		}
		c, err := pgfast.NewConnector(spec.DSN, opts...)
		if err != nil {
			ts.Close()
			return nil, fmt.Errorf("tenant %q: %w", spec.ID, err) // a *pgfast.ConfigError: never the password
		}
		t := &Tenant{ID: spec.ID, DB: sql.OpenDB(c), Connector: c}
		ts.list = append(ts.list, t)
		ts.byID[t.ID] = t
	}
	return ts, nil
}

// Get returns the tenant with id, or nil.
func (ts *Tenants) Get(id string) *Tenant { return ts.byID[id] }

// All returns the tenants in configuration order.
func (ts *Tenants) All() []*Tenant { return ts.list }

// Closing reports whether Close has been called.
func (ts *Tenants) Closing() bool { return ts.closing.Load() }

// Close closes every tenant's *sql.DB, which stops its connector's
// background work.
func (ts *Tenants) Close() error {
	ts.closing.Store(true)
	var errs []error
	for _, t := range ts.list {
		if err := t.DB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", t.ID, err))
		}
	}
	return errors.Join(errs...)
}

package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
)

// PQConn is the connection "pgfast-pq" hands to database/sql: lib/pq's own
// connection, passed through unchanged, with pgfast's health checks around
// it. lib/pq's connection type is unexported and has no hooks, so unlike the
// pgx backend (which hands out pgx's *stdlib.Conn itself) this one is wrapped.
// Code that needs lib/pq's connection in sql.Conn.Raw reaches it with Unwrap:
//
//	conn.Raw(func(dc any) error { inner := dc.(*pgfast.PQConn).Unwrap(); ... })
type PQConn struct {
	inner driver.Conn
	sock  net.Conn
	seam  *seam
}

var (
	_ driver.Conn               = (*PQConn)(nil)
	_ driver.Pinger             = (*PQConn)(nil)
	_ driver.SessionResetter    = (*PQConn)(nil)
	_ driver.Validator          = (*PQConn)(nil)
	_ driver.ExecerContext      = (*PQConn)(nil)
	_ driver.QueryerContext     = (*PQConn)(nil)
	_ driver.ConnPrepareContext = (*PQConn)(nil)
	_ driver.ConnBeginTx        = (*PQConn)(nil)
	_ driver.NamedValueChecker  = (*PQConn)(nil)
)

// Unwrap returns lib/pq's connection.
func (c *PQConn) Unwrap() driver.Conn { return c.inner }

// NetConn returns the socket pgfast's dialer made for this connection.
func (c *PQConn) NetConn() net.Conn { return c.sock }

// Prepare passes through.
func (c *PQConn) Prepare(query string) (driver.Stmt, error) { return c.inner.Prepare(query) }

// Close passes through.
func (c *PQConn) Close() error { return c.inner.Close() }

// Begin passes through.
//
// Deprecated: database/sql calls BeginTx; Begin is part of driver.Conn.
func (c *PQConn) Begin() (driver.Tx, error) {
	return c.inner.Begin() //nolint:staticcheck // required by driver.Conn
}

// PrepareContext passes through, or falls back to Prepare as database/sql does.
func (c *PQConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.inner.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.inner.Prepare(query)
}

// BeginTx passes through, or falls back to Begin as database/sql does.
func (c *PQConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.inner.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	if opts.Isolation != 0 || opts.ReadOnly {
		return nil, errors.New("pgfast: driver does not support non-default isolation level or read-only transactions")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.inner.Begin() //nolint:staticcheck // the documented fallback
}

// ExecContext passes through; driver.ErrSkip makes database/sql prepare instead.
func (c *PQConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := c.inner.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

// QueryContext passes through; driver.ErrSkip makes database/sql prepare instead.
func (c *PQConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := c.inner.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

// Ping passes through (no Pinger: nil, as database/sql).
func (c *PQConn) Ping(ctx context.Context) error {
	if p, ok := c.inner.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// CheckNamedValue passes through; driver.ErrSkip selects database/sql's default conversion.
func (c *PQConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.inner.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// ResetSession runs pgfast's checkout check, then lib/pq's own.
func (c *PQConn) ResetSession(ctx context.Context) error {
	if c.seam.checkout != nil && c.sock != nil {
		if err := c.seam.checkout(ctx, c.sock); err != nil {
			return err
		}
	}
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid reports false when pgfast's liveness check or lib/pq finds the
// connection unusable.
func (c *PQConn) IsValid() bool {
	if c.seam.alive != nil && c.sock != nil && !c.seam.alive(c.sock) {
		return false
	}
	if v, ok := c.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

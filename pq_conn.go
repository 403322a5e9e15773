package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"sync/atomic"

	"github.com/pgfast/pgfast/internal/netx"
)

// PQConn is the connection "pgfast-pq" hands to database/sql: lib/pq's own
// connection with pgfast's health checks around it. lib/pq offers no hooks,
// so unlike "pgfast" the connection is wrapped; in sql.Conn.Raw, Unwrap
// returns lib/pq's connection:
//
//	conn.Raw(func(dc any) error { inner := dc.(*pgfast.PQConn).Unwrap(); ... })
//
// A call's context always unblocks it: pgfast sends the cancel request and
// returns the server's answer (SQLSTATE 57014) if it comes in time, else
// the call returns shortly after and the connection is discarded. A
// statement whose bytes reached the socket is never run again (ErrConnLost).
type PQConn struct {
	inner driver.Conn
	sock  net.Conn
	core  core // nil in some tests: no hooks, no cancel requests

	// interrupted holds the ended context's error once a past deadline was
	// put on sock: the connection is unusable from then on.
	interrupted atomic.Pointer[error]

	// cancelPID and cancelKey identify the backend in a cancel request;
	// cancelKey is nil when unknown.
	cancelPID uint32
	cancelKey []byte

	// txWatches counts watched transactions: while any is, a query's rows
	// stay wrapped (rowsFor).
	txWatches atomic.Int32
	// rowErrs caches quietRowErrors.
	rowErrs atomic.Uint32
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

// Prepare passes through; the statement is wrapped.
func (c *PQConn) Prepare(query string) (driver.Stmt, error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	st, err := c.inner.Prepare(query)
	if err != nil {
		return nil, c.check(err)
	}
	return c.wrapStmt(st), nil
}

// Close passes through. It never waits on the network once a context ended a
// call.
func (c *PQConn) Close() error {
	err := c.inner.Close()
	if err != nil && c.interrupted.Load() == nil {
		c.report(err)
	}
	return err
}

// Begin passes through.
//
// Deprecated: database/sql calls BeginTx; Begin is part of driver.Conn.
func (c *PQConn) Begin() (driver.Tx, error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	tx, err := c.inner.Begin() //nolint:staticcheck // required by driver.Conn
	if err != nil {
		return nil, c.check(err)
	}
	return &pqTx{c: c, inner: tx, ctx: context.Background()}, nil
}

// PrepareContext passes through, or falls back to Prepare as database/sql
// does. ctx is watched as for ExecContext.
func (c *PQConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	p, ok := c.inner.(driver.ConnPrepareContext)
	if !ok {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return c.Prepare(query)
	}
	w, err := c.watchCall(ctx)
	if err != nil {
		return nil, err
	}
	st, err := p.PrepareContext(context.Background(), query)
	ended := w.end()
	if err != nil {
		return nil, c.checkStatement(ctx, ended, err)
	}
	return c.wrapStmt(st), nil
}

// BeginTx passes through, or falls back to Begin as database/sql does. ctx
// is watched until Commit or Rollback.
func (c *PQConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.inner.(driver.ConnBeginTx)
	if !ok && (opts.Isolation != 0 || opts.ReadOnly) {
		return nil, errors.New("pgfast: driver does not support non-default isolation level or read-only transactions")
	}
	stop, err := c.watch(ctx)
	if err != nil {
		return nil, err
	}
	var tx driver.Tx
	if ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.inner.Begin() //lint:ignore SA1019 database/sql's documented fallback for drivers without BeginTx
	}
	if err != nil {
		c.unwatch(ctx, stop)
		return nil, c.check(err)
	}
	if stop != nil {
		c.txWatches.Add(1) // until pqTx.end
	}
	return &pqTx{c: c, inner: tx, ctx: ctx, stop: stop}, nil
}

// ExecContext passes through; driver.ErrSkip makes database/sql prepare
// instead. When ctx ends during the call pgfast sends the cancel request.
func (c *PQConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.inner.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	res, w, err := callWatched(c, ctx, args, func(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
		return e.ExecContext(ctx, query, args)
	}, nil)
	if err != nil {
		return nil, err
	}
	w.end()
	return res, nil
}

// QueryContext passes through; driver.ErrSkip makes database/sql prepare
// instead. ctx is watched as for ExecContext, until the rows are closed.
func (c *PQConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.inner.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, w, err := callWatched(c, ctx, args, func(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
		return q.QueryContext(ctx, query, args)
	}, nil)
	if err != nil {
		return nil, err
	}
	return c.rowsFor(rows, ctx, w), nil
}

// Ping passes through (no Pinger: nil, as database/sql); ctx is watched as
// for ExecContext.
func (c *PQConn) Ping(ctx context.Context) error {
	p, ok := c.inner.(driver.Pinger)
	if !ok {
		return nil
	}
	w, err := c.watchCall(ctx)
	if err != nil {
		return err
	}
	err = p.Ping(context.Background())
	ended := w.end()
	return c.checkStatement(ctx, ended, err)
}

// CheckNamedValue passes through; driver.ErrSkip selects database/sql's default conversion.
func (c *PQConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.inner.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// ResetSession reports a connection a context interrupted as bad, then runs
// pgfast's checkout check, then lib/pq's own. No role check: lib/pq does not
// expose ParameterStatus (it enforces target_session_attrs at connect, and a
// 25006 answer on a read-write pool dooms the connection).
func (c *PQConn) ResetSession(ctx context.Context) error {
	if c.interrupted.Load() != nil {
		return driver.ErrBadConn
	}
	if c.core != nil && c.sock != nil {
		if err := c.core.checkout(ctx, c.sock); err != nil {
			return err
		}
	}
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid reports false when a context interrupted a call, or pgfast's or
// lib/pq's check finds the connection unusable. One that read its server's
// reply since its checkout check skips pgfast's (the next checkout checks
// anyway before use; raw lib/pq checks nothing here).
func (c *PQConn) IsValid() bool {
	if c.interrupted.Load() != nil {
		return false
	}
	if c.core != nil && c.sock != nil && !netx.ReadSinceCheck(c.sock) && !c.core.alive(c.sock) {
		return false
	}
	if v, ok := c.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

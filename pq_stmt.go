package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/pgfast/pgfast/internal/netx"
)

// pqStmt wraps a lib/pq prepared statement: each call's context is watched
// (a query's until its rows close) and errors are told to the core. lib/pq
// is called with context.Background() and pgfast sends the cancel itself
// (see "Cancel requests").
//
// lib/pq's statements implement driver.Stmt (*stmt also StmtExecContext and
// StmtQueryContext; *copyin CopyData), not ColumnConverter or
// NamedValueChecker, so neither does pqStmt: database/sql converts with the
// connection's CheckNamedValue as with raw lib/pq (and pq.CopyIn's NumInput
// of -1 keeps disabling the argument count check).
type pqStmt struct {
	c     *PQConn
	inner driver.Stmt
}

// pqCopyStmt is a pqStmt around pq.CopyIn's statement (which has CopyData).
type pqCopyStmt struct {
	pqStmt
}

type copyDataer interface {
	CopyData(ctx context.Context, line string) (driver.Result, error)
}

var (
	_ driver.Stmt             = (*pqStmt)(nil)
	_ driver.StmtExecContext  = (*pqStmt)(nil)
	_ driver.StmtQueryContext = (*pqStmt)(nil)
	_ driver.Stmt             = (*pqCopyStmt)(nil)
	_ driver.StmtExecContext  = (*pqCopyStmt)(nil)
	_ copyDataer              = (*pqCopyStmt)(nil)
)

func (c *PQConn) wrapStmt(st driver.Stmt) driver.Stmt {
	if _, ok := st.(copyDataer); ok {
		return &pqCopyStmt{pqStmt{c: c, inner: st}}
	}
	return &pqStmt{c: c, inner: st}
}

// Close passes through.
func (s *pqStmt) Close() error { return s.c.check(s.inner.Close()) }

// NumInput passes through.
func (s *pqStmt) NumInput() int { return s.inner.NumInput() }

// Exec passes through.
//
// Deprecated: database/sql calls ExecContext; Exec is part of driver.Stmt.
func (s *pqStmt) Exec(args []driver.Value) (driver.Result, error) {
	if err := s.c.usable(); err != nil {
		return nil, err
	}
	sent := netx.Writes(s.c.sock)
	res, err := s.inner.Exec(args) //nolint:staticcheck // required by driver.Stmt
	if err != nil {
		return nil, s.c.check(s.c.noRetry(sent, err))
	}
	return res, nil
}

// Query passes through.
//
// Deprecated: database/sql calls QueryContext; Query is part of driver.Stmt.
func (s *pqStmt) Query(args []driver.Value) (driver.Rows, error) {
	if err := s.c.usable(); err != nil {
		return nil, err
	}
	sent := netx.Writes(s.c.sock)
	rows, err := s.inner.Query(args) //nolint:staticcheck // required by driver.Stmt
	if err != nil {
		return nil, s.c.check(s.c.noRetry(sent, err))
	}
	return s.c.rowsFor(rows, context.Background(), nil), nil
}

// ExecContext runs the statement with ctx watched; when ctx ends during the
// call, pgfast sends the cancel request.
func (s *pqStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	var viaCtx func(context.Context, []driver.NamedValue) (driver.Result, error)
	if e, ok := s.inner.(driver.StmtExecContext); ok {
		viaCtx = e.ExecContext
	}
	res, w, err := callWatched(s.c, ctx, args, viaCtx, s.inner.Exec) //lint:ignore SA1019 database/sql's fallback for statements without the context methods
	if err != nil {
		return nil, err
	}
	w.end()
	return res, nil
}

// QueryContext runs the statement with ctx watched until the rows are closed.
func (s *pqStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	var viaCtx func(context.Context, []driver.NamedValue) (driver.Rows, error)
	if q, ok := s.inner.(driver.StmtQueryContext); ok {
		viaCtx = q.QueryContext
	}
	rows, w, err := callWatched(s.c, ctx, args, viaCtx, s.inner.Query) //lint:ignore SA1019 database/sql's fallback for statements without the context methods
	if err != nil {
		return nil, err
	}
	return s.c.rowsFor(rows, ctx, w), nil
}

// callWatched makes one lib/pq call on c with ctx watched: through viaCtx
// with a Background context (so lib/pq never starts its own blocking
// cancel), else through viaValues, database/sql's fallback. On success the
// watch is returned still armed (QueryContext ends it when the rows close);
// on error it is ended and the error checked (noRetry).
func callWatched[T any](c *PQConn, ctx context.Context, args []driver.NamedValue,
	viaCtx func(context.Context, []driver.NamedValue) (T, error),
	viaValues func([]driver.Value) (T, error),
) (T, *cancelWatch, error) {
	var zero T
	var vals []driver.Value
	if viaCtx == nil {
		var err error
		if vals, err = namedValuesToValues(args); err != nil {
			return zero, nil, err
		}
	}
	w, err := c.watchCall(ctx)
	if err != nil {
		return zero, nil, err
	}
	sent := netx.Writes(c.sock)
	var out T
	if viaCtx != nil {
		out, err = viaCtx(context.Background(), args)
	} else {
		out, err = viaValues(vals)
	}
	if err != nil {
		ended := w.end()
		return zero, nil, c.checkStatement(ctx, ended, c.noRetry(sent, err))
	}
	return out, w, nil
}

// checkStatement is check for a statement whose context may have ended
// during the call: when the server answered the cancel in time, lib/pq's
// error is returned with the context's error also in its chain.
func (c *PQConn) checkStatement(ctx context.Context, ended bool, err error) error {
	if ended && err != nil && c.interrupted.Load() == nil && !isSentinel(err) {
		if cause := ctx.Err(); cause != nil {
			err = &canceledError{cause: cause, err: err}
		}
	}
	return c.check(err)
}

// CopyData passes through with ctx watched (lib/pq's watch here is
// connection-level, which never waits for its cancel).
func (s *pqCopyStmt) CopyData(ctx context.Context, line string) (driver.Result, error) {
	stop, err := s.c.watch(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.inner.(copyDataer).CopyData(ctx, line)
	s.c.unwatch(ctx, stop)
	if err != nil {
		return nil, s.c.check(err)
	}
	return res, nil
}

// errNamedParams is database/sql's answer to named arguments for a statement
// without StmtExecContext/StmtQueryContext.
var errNamedParams = errors.New("sql: driver does not support the use of Named Parameters")

// namedValuesToValues converts arguments as database/sql does for a
// statement taking driver.Values.
func namedValuesToValues(named []driver.NamedValue) ([]driver.Value, error) {
	vals := make([]driver.Value, len(named))
	for i, nv := range named {
		if nv.Name != "" {
			return nil, errNamedParams
		}
		vals[i] = nv.Value
	}
	return vals, nil
}

package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"

	"github.com/lib/pq"
)

// pqRows wraps lib/pq's rows: a query's context stays watched until its rows
// close, and errors met while reading are told to the core. It implements
// exactly the optional interfaces lib/pq's rows do; when the inner rows lack
// one at run time, the answer is database/sql's default.
type pqRows struct {
	c     *PQConn
	inner driver.Rows
	ctx   context.Context
	sw    *cancelWatch // the query's watch, ended at Close
}

var (
	_ driver.Rows                           = (*pqRows)(nil)
	_ driver.RowsNextResultSet              = (*pqRows)(nil)
	_ driver.RowsColumnTypeScanType         = (*pqRows)(nil)
	_ driver.RowsColumnTypeDatabaseTypeName = (*pqRows)(nil)
	_ driver.RowsColumnTypeLength           = (*pqRows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*pqRows)(nil)
	_ resultTagger                          = (*pqRows)(nil)
)

// resultTagger is lib/pq's rows' Result and Tag (its tests call it ResultTag).
type resultTagger interface {
	Result() driver.Result
	Tag() string
}

func isPQError(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe)
}

// rowsFor returns lib/pq's rows themselves when the wrapper would have
// nothing to do, else the wrapper (one 48-byte allocation and a forwarding
// call per method: ~1 % of a cheap query's CPU, BENCHMARKS.md). w is the
// query's watch, ended when the rows close.
//
// The wrapper has nothing to do when, at the query's return:
//   - no watch can interrupt the connection while the rows are open (w ==
//     nil and no transaction's context is watched: txWatches);
//   - and the core ignores every error (quietRowErrors).
//
// The socket's own errors reach the core either way (trackedConn).
func (c *PQConn) rowsFor(rows driver.Rows, ctx context.Context, w *cancelWatch) driver.Rows {
	if w == nil && c.txWatches.Load() == 0 && c.quietRowErrors() {
		return rows
	}
	return &pqRows{c: c, inner: rows, ctx: ctx, sw: w}
}

// quietRowErrors reports whether the core ignores the errors of lib/pq calls
// on this connection; worked out once per connection.
func (c *PQConn) quietRowErrors() bool {
	switch c.rowErrs.Load() {
	case rowErrsQuiet:
		return true
	case rowErrsHeard:
		return false
	}
	quiet := c.core == nil || c.core.ignoresErrors()
	v := uint32(rowErrsHeard)
	if quiet {
		v = rowErrsQuiet
	}
	c.rowErrs.Store(v)
	return quiet
}

const (
	rowErrsUnknown = iota
	rowErrsQuiet
	rowErrsHeard
)

func (r *pqRows) Columns() []string { return r.inner.Columns() }

// Close closes the inner rows (lib/pq reads the rest), then disarms the
// query's context.
func (r *pqRows) Close() error {
	err := r.inner.Close()
	ended := false
	if r.sw != nil {
		ended = r.sw.end()
		r.sw = nil
	}
	if err != nil && r.c.interrupted.Load() != nil && !isPQError(err) {
		// As raw lib/pq once a context ended the query: the context's
		// error, not the i/o timeout of pgfast's expired deadline.
		cause := *r.c.interrupted.Load()
		r.c.report(err)
		return cause
	}
	return r.c.checkStatement(r.ctx, ended, err)
}

// Result forwards lib/pq's Result; without it, no rows were affected.
func (r *pqRows) Result() driver.Result {
	if rt, ok := r.inner.(interface{ Result() driver.Result }); ok {
		return rt.Result()
	}
	return driver.RowsAffected(0)
}

// Tag forwards lib/pq's Tag ("" for a query that returned rows).
func (r *pqRows) Tag() string {
	if rt, ok := r.inner.(interface{ Tag() string }); ok {
		return rt.Tag()
	}
	return ""
}

func (r *pqRows) Next(dest []driver.Value) error {
	err := r.inner.Next(dest)
	if err != nil && err != io.EOF {
		return r.c.checkStatement(r.ctx, r.ctx != nil && r.ctx.Err() != nil, err)
	}
	return err
}

func (r *pqRows) HasNextResultSet() bool {
	if n, ok := r.inner.(driver.RowsNextResultSet); ok {
		return n.HasNextResultSet()
	}
	return false
}

func (r *pqRows) NextResultSet() error {
	n, ok := r.inner.(driver.RowsNextResultSet)
	if !ok {
		return io.EOF
	}
	err := n.NextResultSet()
	if err != nil && err != io.EOF {
		return r.c.check(err)
	}
	return err
}

var anyType = reflect.TypeFor[any]()

func (r *pqRows) ColumnTypeScanType(index int) reflect.Type {
	if t, ok := r.inner.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(index)
	}
	return anyType
}

func (r *pqRows) ColumnTypeDatabaseTypeName(index int) string {
	if t, ok := r.inner.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(index)
	}
	return ""
}

func (r *pqRows) ColumnTypeLength(index int) (length int64, ok bool) {
	if t, ok := r.inner.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(index)
	}
	return 0, false
}

func (r *pqRows) ColumnTypePrecisionScale(index int) (precision, scale int64, ok bool) {
	if t, ok := r.inner.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(index)
	}
	return 0, 0, false
}

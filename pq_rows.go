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
// are closed (database/sql closes them when the caller is done, or when the
// context ends), and errors met while reading rows are told to the core.
//
// It implements exactly the optional interfaces lib/pq's rows implement:
// RowsNextResultSet and RowsColumnTypeScanType, ...DatabaseTypeName,
// ...Length and ...PrecisionScale (not RowsColumnTypeNullable), and
// lib/pq's Result and Tag (resultTagger). When the
// inner rows lack one at run time, the answer is database/sql's default for a
// driver without it.
type pqRows struct {
	c     *PQConn
	inner driver.Rows
	ctx   context.Context
	stop  func() bool
	sw    *cancelWatch // a prepared statement's watch, ended at Close
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

// resultTagger is the interface lib/pq's rows offer for the command's result
// and tag (lib/pq's own tests call it ResultTag).
type resultTagger interface {
	Result() driver.Result
	Tag() string
}

// isPQError reports whether the server's error is in err's chain.
func isPQError(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe)
}

// wrapRows wraps rows; stop (from watch(ctx), may be nil) is disarmed at Close.
func (c *PQConn) wrapRows(rows driver.Rows, ctx context.Context, stop func() bool) *pqRows {
	return &pqRows{c: c, inner: rows, ctx: ctx, stop: stop}
}

func (r *pqRows) Columns() []string { return r.inner.Columns() }

// Close closes the inner rows (lib/pq reads the rest of the result), then
// disarms the query's context.
func (r *pqRows) Close() error {
	err := r.inner.Close()
	if r.stop != nil {
		r.c.unwatch(r.ctx, r.stop)
		r.stop = nil
	}
	ended := false
	if r.sw != nil {
		ended = r.sw.end()
		r.sw = nil
	}
	if err != nil && r.c.interrupted.Load() != nil && !isPQError(err) {
		// What raw lib/pq returns once a context ended the query: the
		// context's error (its connection keeps it), not the i/o timeout of
		// pgfast's expired deadline.
		cause := *r.c.interrupted.Load()
		r.c.report(err)
		return cause
	}
	return r.c.checkStatement(r.ctx, ended, err)
}

// Result forwards lib/pq's Result (the command's result); without it,
// no rows were affected.
func (r *pqRows) Result() driver.Result {
	if rt, ok := r.inner.(interface{ Result() driver.Result }); ok {
		return rt.Result()
	}
	return driver.RowsAffected(0)
}

// Tag forwards lib/pq's Tag (the command tag, "" for a query that
// returned rows).
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

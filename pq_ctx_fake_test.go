package pgfast

import (
	"context"
	"database/sql/driver"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// ---------------------------------------------------------------------------
// Unit tests of the context watch, on a fake backend whose calls block on a
// net.Pipe, as lib/pq blocks reading a socket from a server gone silent.

// pipeBackend is a driver.Conn (with the context interfaces lib/pq has) whose
// calls block reading sock when their query is "block" (rows: "blockrows",
// which blocks in Next). Nothing ever writes to the pipe's other end.
type pipeBackend struct {
	sock      net.Conn
	calls     atomic.Int32
	stmtCtxes []context.Context // contexts the statements were given
	mu        sync.Mutex
}

func newPipeConn(t *testing.T, s *fakeCore) (*PQConn, *pipeBackend) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	sock := &deadlineConn{Conn: a}
	pb := &pipeBackend{sock: sock}
	if s == nil {
		s = &fakeCore{}
	}
	return &PQConn{inner: pb, sock: sock, core: s}, pb
}

// deadlineConn counts the deadlines set on a connection.
type deadlineConn struct {
	net.Conn
	deadlines atomic.Int32
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.Conn.SetDeadline(t)
}

func (p *pipeBackend) do(query string) error {
	p.calls.Add(1)
	if query != "block" {
		return nil
	}
	var buf [1]byte
	_, err := p.sock.Read(buf[:])
	return err
}

func (p *pipeBackend) Prepare(query string) (driver.Stmt, error) {
	return &pipeStmt{p: p, query: query}, p.do("")
}
func (p *pipeBackend) Close() error              { return nil }
func (p *pipeBackend) Begin() (driver.Tx, error) { return p, p.do("") }
func (p *pipeBackend) Commit() error             { return p.do("") }
func (p *pipeBackend) Rollback() error           { return p.do("") }
func (p *pipeBackend) BeginTx(_ context.Context, _ driver.TxOptions) (driver.Tx, error) {
	return p, p.do("")
}
func (p *pipeBackend) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return p.Prepare(query)
}
func (p *pipeBackend) Ping(context.Context) error { return p.do("") }
func (p *pipeBackend) ExecContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Result, error) {
	if err := p.do(query); err != nil {
		return nil, err
	}
	return driver.RowsAffected(1), nil
}
func (p *pipeBackend) QueryContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	if err := p.do(query); err != nil {
		return nil, err
	}
	return &pipeRows{p: p, block: query == "blockrows"}, nil
}

type pipeStmt struct {
	p     *pipeBackend
	query string
}

func (s *pipeStmt) Close() error  { return nil }
func (s *pipeStmt) NumInput() int { return -1 }
func (s *pipeStmt) Exec([]driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), nil)
}
func (s *pipeStmt) Query([]driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), nil)
}
func (s *pipeStmt) ExecContext(ctx context.Context, _ []driver.NamedValue) (driver.Result, error) {
	s.p.mu.Lock()
	s.p.stmtCtxes = append(s.p.stmtCtxes, ctx)
	s.p.mu.Unlock()
	return s.p.ExecContext(ctx, s.query, nil)
}
func (s *pipeStmt) QueryContext(ctx context.Context, _ []driver.NamedValue) (driver.Rows, error) {
	s.p.mu.Lock()
	s.p.stmtCtxes = append(s.p.stmtCtxes, ctx)
	s.p.mu.Unlock()
	return s.p.QueryContext(ctx, s.query, nil)
}

type pipeRows struct {
	p     *pipeBackend
	block bool
}

func (r *pipeRows) Columns() []string { return []string{"x"} }
func (r *pipeRows) Close() error      { return nil }
func (r *pipeRows) Next(dest []driver.Value) error {
	if r.block {
		if err := r.p.do("block"); err != nil {
			return err
		}
	}
	return io.EOF
}

// errRecorder is a core onError hook that remembers what it was told.
type errRecorder struct {
	mu   sync.Mutex
	errs []error
	socs []net.Conn
}

func (r *errRecorder) onError(nc net.Conn, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.socs = append(r.socs, nc)
	r.mu.Unlock()
}

func (r *errRecorder) snapshot() ([]error, []net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...), append([]net.Conn(nil), r.socs...)
}

func (r *errRecorder) reset() {
	r.mu.Lock()
	r.errs, r.socs = nil, nil
	r.mu.Unlock()
}

// leakCheck verifies at the very end of the test that it left no goroutine
// behind. Call it first so that its check runs after every other cleanup.
func leakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

package pgfast

import (
	"context"
	"database/sql/driver"
)

// pqTx wraps a lib/pq transaction: BeginTx's context stays watched until
// Commit or Rollback, and their errors are told to the core. Commit and
// Rollback always reach lib/pq (it ends its own watch of the transaction
// there); on a connection a context interrupted they fail at once.
type pqTx struct {
	c     *PQConn
	inner driver.Tx
	ctx   context.Context
	stop  func() bool
}

var _ driver.Tx = (*pqTx)(nil)

func (t *pqTx) Commit() error {
	err := t.inner.Commit()
	t.end()
	return t.c.check(err)
}

func (t *pqTx) Rollback() error {
	err := t.inner.Rollback()
	t.end()
	return t.c.check(err)
}

func (t *pqTx) end() {
	if t.stop != nil {
		t.c.unwatch(t.ctx, t.stop)
		t.stop = nil
	}
}

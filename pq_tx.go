package pgfast

import (
	"context"
	"database/sql/driver"

	"github.com/pgfast/pgfast/internal/netx"
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

// Commit passes through. A COMMIT whose bytes left may have committed: lib/pq's
// driver.ErrBadConn then becomes ErrConnLost (noRetry), as for a statement;
// database/sql never retries a Commit, but ErrBadConn tells the application
// that nothing happened.
func (t *pqTx) Commit() error {
	sent := netx.Writes(t.c.sock)
	err := t.inner.Commit()
	t.end()
	if t.c.interrupted.Load() == nil {
		err = t.c.noRetry(sent, err)
	}
	return t.c.check(t.badConn(err))
}

func (t *pqTx) Rollback() error {
	err := t.inner.Rollback()
	t.end()
	return t.c.check(t.badConn(err))
}

// badConn returns driver.ErrBadConn, as raw lib/pq does on a connection a
// context ended, for an error on a connection a context interrupted (the
// i/o timeout of pgfast's expired deadline); the server's own errors stay.
func (t *pqTx) badConn(err error) error {
	if err != nil && t.c.interrupted.Load() != nil && !isPQError(err) {
		return driver.ErrBadConn
	}
	return err
}

func (t *pqTx) end() {
	if t.stop != nil {
		t.c.unwatch(t.ctx, t.stop)
		t.stop = nil
		t.c.txWatches.Add(-1)
	}
}

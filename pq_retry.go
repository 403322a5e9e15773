package pgfast

import (
	"database/sql/driver"
	"errors"

	"github.com/pgfast/pgfast/internal/netx"
)

// A statement never runs twice (pgfast-pq).
//
// lib/pq turns a FATAL mid-statement (pg_terminate_backend: 57P01) or an EOF
// into driver.ErrBadConn, which database/sql answers by running the
// statement again elsewhere, though the server may have run it. pgfast owns
// every socket (trackedConn, on every transport) and counts writes that sent
// bytes: once any byte of a statement or Commit left, ErrBadConn becomes
// ErrConnLost, which database/sql does not retry. TestNeverTwice checks this
// over every transport, backend, way of dying and statement kind.
//
// lib/pq keeps no trace of the FATAL it replaced, so its message is lost.
// pgx never needs this: its stdlib returns ErrBadConn only when
// pgconn.SafeToRetry says nothing was sent.

// ErrConnLost is returned (wrapped) by a pgfast-pq statement whose
// connection failed after it was sent: the server may have run it, so
// database/sql must not run it again. Typically the backend was terminated
// (57P01) or the server closed the connection.
var ErrConnLost = errors.New("pgfast: connection lost after the statement was sent (it may have run on the server; not retried)")

// noRetry replaces driver.ErrBadConn by ErrConnLost when the write count
// moved past sent, or the socket is untracked: a retry lost is an error the
// caller sees, a retry too many a statement run twice.
func (c *PQConn) noRetry(sent uint64, err error) error {
	if err == nil || !errors.Is(err, driver.ErrBadConn) {
		return err
	}
	if netx.Tracked(c.sock) && netx.Writes(c.sock) == sent {
		return err // nothing of the statement left: database/sql may retry
	}
	return ErrConnLost
}

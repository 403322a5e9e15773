package pgfast

import (
	"database/sql/driver"
	"errors"

	"github.com/pgfast/pgfast/internal/netx"
)

// A statement never runs twice (pgfast-pq).
//
// lib/pq turns a FATAL error the server sends while a statement runs (a DBA's
// pg_terminate_backend: 57P01), and an EOF, into driver.ErrBadConn, and
// database/sql answers driver.ErrBadConn by running the statement again on
// another connection, although the server may already have run it. pgfast
// owns the socket, whatever the transport (TCP, TLS over TCP, a unix socket:
// every socket its dialer makes is a trackedConn), and counts the writes that
// sent bytes (writesOf): when a statement call or a Commit fails with
// driver.ErrBadConn after any byte of it left, pgfast returns ErrConnLost
// instead, which database/sql does not retry and which tells the application
// that the statement may have run. Before any byte left, driver.ErrBadConn
// stays (the retry is safe). TestNeverTwice checks this over every transport,
// backend, way of dying and statement kind.
//
// lib/pq keeps no trace of the FATAL error it replaced, so the server's
// message cannot be returned. pgx never needs this: its stdlib returns
// driver.ErrBadConn only when pgconn.SafeToRetry says nothing was sent.

// ErrConnLost is returned (wrapped) by a pgfast-pq statement whose
// connection failed after the statement was sent: the server may have run
// it, so database/sql must not run it again (as it would for
// driver.ErrBadConn). Typically the backend was terminated
// (pg_terminate_backend, 57P01) or the server closed the connection.
var ErrConnLost = errors.New("pgfast: connection lost after the statement was sent (it may have run on the server; not retried)")

// noRetry replaces driver.ErrBadConn by ErrConnLost when the socket's write
// count moved past sent (writesOf before the call), or when the socket is not
// one pgfast's dialer tracks: without a count nobody can tell that nothing
// left, and a retry lost is an error the caller sees, a retry too many a
// statement run twice.
func (c *PQConn) noRetry(sent uint64, err error) error {
	if err == nil || !errors.Is(err, driver.ErrBadConn) {
		return err
	}
	if netx.Tracked(c.sock) && netx.Writes(c.sock) == sent {
		return err // nothing of the statement left: database/sql may retry
	}
	return ErrConnLost
}

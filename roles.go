package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"

	"github.com/pgfast/pgfast/internal/netx"
)

// ErrWrongRole is the cause recorded when a server no longer has the role
// target_session_attrs asked for (a demoted primary, a promoted standby).
var ErrWrongRole = errors.New("pgfast: server no longer matches target_session_attrs")

// serverParams is what a server reported in ParameterStatus messages
// (*pgconn.PgConn has it).
type serverParams interface {
	ParameterStatus(key string) string
}

// wantsWritable reports whether tsa asks for a server that takes writes
// (read-write, primary). It is the one statement of which roles read-only
// evidence disqualifies: in_hot_standby=on at checkout (roleViolation), a
// SQLSTATE 25006 answer on the query path (onBackendError).
func wantsWritable(tsa string) bool { return tsa == "read-write" || tsa == "primary" }

// roleViolation says why a server whose reported parameters are params no
// longer suits tsa, or "" when it does; serverWide tells whether the reason
// holds for the whole server (in_hot_standby) or may be this session's own
// (default_transaction_read_only can be SET per session). in_hot_standby is
// reported by PostgreSQL 14 and later; older servers are not judged by it.
func roleViolation(tsa string, params serverParams) (why string, serverWide bool) {
	switch tsa {
	case "", "any", "prefer-standby":
		return "", false // nothing to judge: no lookups on the checkout path
	}
	standby := params.ParameterStatus("in_hot_standby")
	readOnly := params.ParameterStatus("default_transaction_read_only")
	switch {
	case wantsWritable(tsa):
		if standby == "on" {
			return "server is in hot standby", true
		}
		// primary asks about the server, not the session's default.
		if tsa == "read-write" && readOnly == "on" {
			return "default_transaction_read_only is on", false
		}
	case tsa == "standby":
		if standby == "off" {
			return "server is no longer a standby", true
		}
	case tsa == "read-only":
		if standby == "off" && readOnly == "off" {
			return "server is no longer read-only", false
		}
	}
	return "", false
}

// checkRole judges a connection by the parameters its server reported (at
// checkout, no round trip). A server-wide change that a live session can
// really see (a standby promoted under target_session_attrs=standby or
// read-only) evicts the address at once. Anything else drops just this
// connection, whose replacement validates target_session_attrs afresh, and
// verifies the server with a fresh connection before evicting the address:
// a session-level setting (default_transaction_read_only can be SET per
// session), or a verdict taken while the server was being promoted.
func (c *Connector) checkRole(nc net.Conn, params serverParams) error {
	why, serverWide := roleViolation(c.cfg.TargetSessionAttrs, params)
	if why == "" {
		return nil
	}
	cause := fmt.Errorf("%w: %s", ErrWrongRole, why)
	if evictAtOnce(c.cfg.TargetSessionAttrs, serverWide) {
		c.evictSocket(nc, cause)
	} else {
		c.verifyRole(nc, cause)
	}
	return driver.ErrBadConn
}

// evictAtOnce tells whether a role violation found at checkout proves the
// server's role changed. A server cannot become a standby while its
// sessions live (demotion is a restart, which ends them), so a session of a
// connection that asked for a writable server and still reports
// in_hot_standby=on saw the server before a promotion that its validation
// raced (its ParameterStatus update not read yet): re-checked, not kept.
func evictAtOnce(tsa string, serverWide bool) bool {
	return serverWide && !wantsWritable(tsa)
}

// onBackendError looks at an error a connection returned: SQLSTATE 25006
// (read-only transaction) on a connection that asked for a writable server
// may mean the primary was demoted, or only that the application wrote in a
// read-only transaction. The connection is dropped at its next checkout (the
// error itself reaches the caller unchanged) and the server is verified with
// a fresh connection.
func (c *Connector) onBackendError(nc net.Conn, err error) {
	if c.ignoresBackendErrors() {
		return
	}
	var coded interface{ SQLState() string }
	if !errors.As(err, &coded) || coded.SQLState() != "25006" {
		return
	}
	netx.Doom(nc)
	c.verifyRole(nc, fmt.Errorf("%w: %w", ErrWrongRole, err))
}

// ignoresBackendErrors reports whether onBackendError does nothing with any
// error (it returns at once when this holds): only a connection that asked
// for a writable server has anything to learn from one.
func (c *Connector) ignoresBackendErrors() bool {
	return !wantsWritable(c.cfg.TargetSessionAttrs)
}

// evictSocket evicts the generation of the address nc is connected to.
func (c *Connector) evictSocket(nc net.Conn, cause error) {
	if g, ok := netx.GenOf(nc); ok {
		g.EvictRole(cause)
	}
}

// verifyRole checks, in the background, whether the server behind nc still
// suits target_session_attrs: it opens a fresh connection through the backend
// (which validates target_session_attrs itself). Landing on the same address
// clears the server; landing elsewhere or failing evicts its address. One
// verification per address generation runs at a time.
func (c *Connector) verifyRole(nc net.Conn, cause error) {
	g, ok := netx.GenOf(nc)
	if !ok || !c.book.StartVerify(g) {
		return
	}
	if !c.bg.goIfOpen(func() {
		defer c.book.EndVerify(g)
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.connectBudget())
		defer cancel()
		dc, err := c.backend.Connect(ctx)
		if err == nil {
			// A fresh connection passed target_session_attrs: the
			// database is usable whatever this address turns out to be.
			c.post(event{kind: evVerified, fresh: true})
			landed, ok := netx.GenOf(c.adapter.socket(dc))
			_ = dc.Close()
			if ok && landed.Addr == g.Addr {
				return // the same server passed validation: a session's own setting
			}
		}
		if c.ctx.Err() != nil || hookFailed(err) {
			return // a before-connect hook's failure is no verdict on the server
		}
		g.EvictRole(cause)
	}) {
		c.book.EndVerify(g)
	}
}

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

// serverParams is what a server reported in ParameterStatus messages.
type serverParams interface {
	ParameterStatus(key string) string
}

// wantsWritable reports whether tsa asks for a writable server: the one
// kind read-only evidence disqualifies (in_hot_standby=on at checkout,
// SQLSTATE 25006 on the query path).
func wantsWritable(tsa string) bool { return tsa == "read-write" || tsa == "primary" }

// roleViolation says why a server with params no longer suits tsa, or "";
// serverWide tells whether it holds for the whole server (in_hot_standby,
// PostgreSQL 14+) or may be the session's (default_transaction_read_only can
// be SET per session).
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

// checkRole judges a connection by its server's parameters at checkout (no
// round trip). A server-wide change a live session can really see (a standby
// promoted) evicts the address at once. Anything else (a session-level
// setting, a verdict taken mid-promotion) drops just this connection and
// verifies the server with a fresh one before evicting.
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

// evictAtOnce tells whether a role violation at checkout proves the role
// changed. Demotion is a restart, which ends sessions, so a writable-asking
// session still reporting in_hot_standby=on saw the server before a
// promotion its validation raced: re-checked, not trusted.
func evictAtOnce(tsa string, serverWide bool) bool {
	return serverWide && !wantsWritable(tsa)
}

// onBackendError: SQLSTATE 25006 on a connection that asked for a writable
// server may mean a demoted primary, or just a write in a read-only
// transaction. The connection is dropped at its next checkout (the error
// reaches the caller unchanged) and the server is verified afresh.
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

// ignoresBackendErrors reports whether onBackendError ignores every error:
// only a connection that asked for a writable server learns from one.
func (c *Connector) ignoresBackendErrors() bool {
	return !wantsWritable(c.cfg.TargetSessionAttrs)
}

func (c *Connector) evictSocket(nc net.Conn, cause error) {
	if g, ok := netx.GenOf(nc); ok {
		g.EvictRole(cause)
	}
}

// verifyRole checks in the background, with a fresh connection (the backend
// validates target_session_attrs), whether nc's server still suits: the same
// address clears it, elsewhere or failure evicts it. One per generation.
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

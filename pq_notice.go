package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/lib/pq"
)

// Notices and notifications on lib/pq connections, raw or through pgfast-pq.
//
// lib/pq's pq.SetNoticeHandler and pq.SetNotificationHandler assert lib/pq's
// own connection type, so they panic on the *PQConn that sql.Conn.Raw gives
// with "pgfast-pq". SetNoticeHandler and SetNotificationHandler here accept
// both (one code path serves both drivers), and ConnectorWithNoticeHandler
// and ConnectorWithNotificationHandler wrap a pgfast *Connector (LibPQ
// backend) as well as a lib/pq connector. lib/pq calls the handlers
// synchronously while it reads the connection: keep them short.
//
// On pgx, notices and notifications come through pgconn's OnNotice and
// OnNotification, and LISTEN works through sql.Conn.Raw's *stdlib.Conn.

// ErrNotLibPQ is returned by SetNoticeHandler and SetNotificationHandler for
// a connection that is neither lib/pq's nor a *PQConn (pgx's, for example).
var ErrNotLibPQ = errors.New("pgfast: not a lib/pq connection")

// SetNoticeHandler sets lib/pq's notice handler (see pq.SetNoticeHandler) on
// driverConn, the value sql.Conn.Raw passes to its function: a *PQConn from
// "pgfast-pq" or lib/pq's own connection from "postgres". nil removes the
// handler. Any other connection is ErrNotLibPQ.
//
//	err := conn.Raw(func(dc any) error { return pgfast.SetNoticeHandler(dc, h) })
func SetNoticeHandler(driverConn any, handler func(*pq.Error)) error {
	dc, err := libpqConn(driverConn)
	if err != nil {
		return err
	}
	pq.SetNoticeHandler(dc, handler)
	return nil
}

// SetNotificationHandler sets lib/pq's notification handler (see
// pq.SetNotificationHandler) on driverConn, as SetNoticeHandler does.
func SetNotificationHandler(driverConn any, handler func(*pq.Notification)) error {
	dc, err := libpqConn(driverConn)
	if err != nil {
		return err
	}
	pq.SetNotificationHandler(dc, handler)
	return nil
}

// libpqConn returns lib/pq's own connection behind v.
func libpqConn(v any) (driver.Conn, error) {
	if pc, ok := v.(*PQConn); ok {
		v = pc.Unwrap()
	}
	dc, ok := v.(driver.Conn)
	if !ok || !isLibPQConn(dc) {
		return nil, fmt.Errorf("%w: %T", ErrNotLibPQ, v)
	}
	return dc, nil
}

// isLibPQConn reports whether dc is lib/pq's (unexported) connection type:
// lib/pq has no public way to tell (pq.SetNoticeHandler panics on another
// type). TestUpstreamLayout fails, naming lib/pq's version, when an upgrade
// renames it.
func isLibPQConn(dc driver.Conn) bool {
	t := reflect.TypeOf(dc)
	return t != nil && t.Kind() == reflect.Pointer &&
		t.Elem().PkgPath() == "github.com/lib/pq" && t.Elem().Name() == "conn"
}

// ConnectorWithNoticeHandler returns a connector whose connections get
// handler as their lib/pq notice handler (pgfast's pq.ConnectorWithNoticeHandler):
// c is a pgfast *Connector made with WithBackend(LibPQ), a lib/pq connector,
// or a connector these functions returned. Closing it (sql.DB.Close does)
// closes c.
func ConnectorWithNoticeHandler(c driver.Connector, handler func(*pq.Error)) driver.Connector {
	h := handlersOf(c)
	h.notice = handler
	return h
}

// ConnectorWithNotificationHandler returns a connector whose connections get
// handler as their lib/pq notification handler (pgfast's
// pq.ConnectorWithNotificationHandler), as ConnectorWithNoticeHandler does.
func ConnectorWithNotificationHandler(c driver.Connector, handler func(*pq.Notification)) driver.Connector {
	h := handlersOf(c)
	h.notification = handler
	return h
}

// handlersOf returns a copy of c's handlers when c is already one of ours, so
// that the two wrappers compose.
func handlersOf(c driver.Connector) *handlerConnector {
	if h, ok := c.(*handlerConnector); ok {
		cp := *h
		return &cp
	}
	return &handlerConnector{Connector: c}
}

// handlerConnector sets lib/pq handlers on every connection its connector
// makes. Driver is the inner connector's, so pgfast.ConnectorOf and Ready
// still find a pgfast connector behind it.
type handlerConnector struct {
	driver.Connector
	notice       func(*pq.Error)
	notification func(*pq.Notification)
}

var (
	_ driver.Connector = (*handlerConnector)(nil)
	_ io.Closer        = (*handlerConnector)(nil)
)

// Connect connects through the inner connector, then sets the handlers. A
// connection that is not lib/pq's is closed and the error is ErrNotLibPQ.
func (h *handlerConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := h.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	inner, err := libpqConn(dc)
	if err != nil {
		_ = dc.Close()
		return nil, err
	}
	if h.notice != nil {
		pq.SetNoticeHandler(inner, h.notice)
	}
	if h.notification != nil {
		pq.SetNotificationHandler(inner, h.notification)
	}
	return dc, nil
}

// Close closes the inner connector when it is an io.Closer (pgfast's is).
func (h *handlerConnector) Close() error {
	if c, ok := h.Connector.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

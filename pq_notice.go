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
// own connection type, so they panic on a *PQConn; the functions here accept
// both. lib/pq calls the handlers synchronously while it reads: keep them
// short. On pgx, use pgconn's OnNotice and OnNotification.

// ErrNotLibPQ is returned by SetNoticeHandler and SetNotificationHandler for
// a connection that is neither lib/pq's nor a *PQConn (pgx's, for example).
var ErrNotLibPQ = errors.New("pgfast: not a lib/pq connection")

// SetNoticeHandler sets lib/pq's notice handler (see pq.SetNoticeHandler) on
// driverConn, sql.Conn.Raw's value: a *PQConn or lib/pq's own connection.
// nil removes the handler; another connection is ErrNotLibPQ.
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

// isLibPQConn reports whether dc is lib/pq's unexported connection type
// (lib/pq has no public test; TestUpstreamLayout catches a rename).
func isLibPQConn(dc driver.Conn) bool {
	t := reflect.TypeOf(dc)
	return t != nil && t.Kind() == reflect.Pointer &&
		t.Elem().PkgPath() == "github.com/lib/pq" && t.Elem().Name() == "conn"
}

// ConnectorWithNoticeHandler returns a connector whose connections get
// handler as their lib/pq notice handler. c is a LibPQ pgfast *Connector, a
// lib/pq connector, or one these functions returned; closing it closes c.
func ConnectorWithNoticeHandler(c driver.Connector, handler func(*pq.Error)) driver.Connector {
	h := handlersOf(c)
	h.notice = handler
	return h
}

// ConnectorWithNotificationHandler is ConnectorWithNoticeHandler for the
// notification handler.
func ConnectorWithNotificationHandler(c driver.Connector, handler func(*pq.Notification)) driver.Connector {
	h := handlersOf(c)
	h.notification = handler
	return h
}

// handlersOf returns a copy of c's handlers when c is ours, so the two
// wrappers compose.
func handlersOf(c driver.Connector) *handlerConnector {
	if h, ok := c.(*handlerConnector); ok {
		cp := *h
		return &cp
	}
	return &handlerConnector{Connector: c}
}

// handlerConnector sets lib/pq handlers on every connection. Driver is the
// inner connector's, so ConnectorOf and Ready still find pgfast's.
type handlerConnector struct {
	driver.Connector
	notice       func(*pq.Error)
	notification func(*pq.Notification)
}

var (
	_ driver.Connector = (*handlerConnector)(nil)
	_ io.Closer        = (*handlerConnector)(nil)
)

// Connect connects through the inner connector, then sets the handlers; a
// connection that is not lib/pq's is closed (ErrNotLibPQ).
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

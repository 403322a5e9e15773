package pgfast

import "errors"

// pgxRefusedTLS is pgconn's error when the server answers the SSLRequest with
// 'N' while sslmode requires TLS (pgconn makes it with errors.New, so only
// its text identifies it).
const pgxRefusedTLS = "server refused TLS connection"

// refusedTLS reports whether err itself (not what it wraps) is pgconn's
// "server refused TLS connection".
func (*pgxAdapter) refusedTLS(err error) bool {
	return errors.Unwrap(err) == nil && err.Error() == pgxRefusedTLS
}

package pgfast

import (
	"database/sql/driver"
	"fmt"
	"io"
	"net"
)

// Compile-time checks that the exported types implement what their docs
// promise; a change that breaks one fails the build here, not in a user's
// program.
var (
	_ driver.Driver        = (*Driver)(nil)
	_ driver.DriverContext = (*Driver)(nil)

	_ driver.Connector = (*Connector)(nil)
	_ io.Closer        = (*Connector)(nil)

	_ driver.Conn               = (*PQConn)(nil)
	_ driver.ConnPrepareContext = (*PQConn)(nil)
	_ driver.ConnBeginTx        = (*PQConn)(nil)
	_ driver.ExecerContext      = (*PQConn)(nil)
	_ driver.QueryerContext     = (*PQConn)(nil)
	_ driver.Pinger             = (*PQConn)(nil)
	_ driver.NamedValueChecker  = (*PQConn)(nil)
	_ driver.SessionResetter    = (*PQConn)(nil)
	_ driver.Validator          = (*PQConn)(nil)

	_ error = (*ConfigError)(nil)
	_ error = (*NotReadyError)(nil)
	_ error = (*DialError)(nil)

	_ fmt.Stringer = AddrStats{}
	_ fmt.Stringer = Backend(0)
	_ fmt.Stringer = HostPort{}
	_ fmt.Stringer = State(0)

	_ Resolver = (*net.Resolver)(nil)
)

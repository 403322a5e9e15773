package pgfast

import (
	"database/sql/driver"
	"net"
)

// socketOf returns the socket pgfast's dialer made for a connection of
// either backend (the core asks its own adapter instead).
func socketOf(dc driver.Conn) net.Conn {
	for _, a := range []adapter{(*pgxAdapter)(nil), (*pqAdapter)(nil)} {
		if nc := a.socket(dc); nc != nil {
			return nc
		}
	}
	return nil
}

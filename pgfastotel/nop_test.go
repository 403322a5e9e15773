package pgfastotel_test

import (
	"context"
	"database/sql/driver"
	"errors"
)

// nopConnector is a driver.Connector of another driver, for a *sql.DB that
// does not use pgfast. It never connects.
type nopConnector struct{}

func (nopConnector) Connect(context.Context) (driver.Conn, error) {
	return nil, errors.New("nop: no connections")
}

func (nopConnector) Driver() driver.Driver { return nopDriver{} }

type nopDriver struct{}

func (nopDriver) Open(string) (driver.Conn, error) { return nil, errors.New("nop: no connections") }

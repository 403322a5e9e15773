package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
)

// Driver is the driver registered as "pgfast" (pgx backend) and "pgfast-pq"
// (lib/pq backend). sql.Open calls OpenConnector, which starts connecting in
// the background and returns at once.
type Driver struct {
	backend Backend
}

var (
	_ driver.Driver        = (*Driver)(nil)
	_ driver.DriverContext = (*Driver)(nil)
)

var (
	pgxDriver = &Driver{backend: PGX}
	pqDriver  = &Driver{backend: LibPQ}
)

func init() {
	sql.Register("pgfast", pgxDriver)
	sql.Register("pgfast-pq", pqDriver)
}

// OpenConnector parses name and returns a connector that is already connecting
// in the background. A bad DSN is a *ConfigError, reported by sql.Open.
func (d *Driver) OpenConnector(name string) (driver.Connector, error) {
	return newConnector(name, options{backend: d.backend})
}

// Open makes one connection synchronously, without background work, bounded by
// connect_timeout per host. database/sql does not call it (it uses
// OpenConnector); it exists for code that uses the driver directly.
func (d *Driver) Open(name string) (driver.Conn, error) {
	c, err := newConnector(name, options{backend: d.backend, noBackground: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.connectBudget())
	defer cancel()
	return c.dial(ctx)
}

// connectorDriver is the driver value a Connector returns from Driver: it
// points back at its connector, which is how ConnectorOf finds it.
type connectorDriver struct{ c *Connector }

func (d *connectorDriver) Open(name string) (driver.Conn, error) {
	return (&Driver{backend: d.c.backendKind}).Open(name)
}

// ConnectorOf returns the pgfast connector behind db, or nil when db does not
// use pgfast.
func ConnectorOf(db *sql.DB) *Connector {
	if d, ok := db.Driver().(*connectorDriver); ok {
		return d.c
	}
	return nil
}

// Ready waits until db has a verified connection, or ctx ends (see
// (*Connector).Ready). For a *sql.DB that does not use pgfast it falls back to
// db.PingContext.
func Ready(ctx context.Context, db *sql.DB) error {
	if c := ConnectorOf(db); c != nil {
		return c.Ready(ctx)
	}
	return db.PingContext(ctx)
}

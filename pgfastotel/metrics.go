// Package pgfastotel reports a *sql.DB's connection pool and pgfast's
// connector as OpenTelemetry metrics.
//
// One call registers asynchronous instruments whose callback reads
// db.Stats() and, when db uses pgfast, the connector's Stats(): nothing is
// added to the query path, and nothing is read between collections.
//
//	reg, err := pgfastotel.Register(db, pgfastotel.WithPoolName("orders"))
//	if err != nil { ... }
//	defer reg.Unregister()
//
// It is a module of its own so that pgfast's users who do not use
// OpenTelemetry never download it.
//
// # Instruments
//
// From database/sql, with OpenTelemetry's semantic-convention names and the
// attribute db.client.connection.pool.name on every point:
//
//   - db.client.connection.count {connection}, by db.client.connection.state
//     (idle, used)
//   - db.client.connection.max {connection} (when SetMaxOpenConns was set)
//   - db.client.connection.idle.max {connection} (when WithIdleMax was given:
//     database/sql does not report SetMaxIdleConns)
//
// database/sql keeps totals, not per-request times, so the convention's
// histograms (create_time, wait_time, use_time) and its pending_requests
// cannot be derived without hooking every query; pgfastotel reports the
// totals database/sql keeps instead, under the pgfast. prefix:
//
//   - pgfast.sql.wait.count {request}, pgfast.sql.wait.duration (s):
//     requests that waited for a free connection, and the time they waited
//   - pgfast.sql.closed {connection}, by pgfast.close.reason (max_idle,
//     max_idle_time, max_lifetime)
//
// From the pgfast connector (absent for a *sql.DB that does not use pgfast):
//
//   - pgfast.connector.state {state}: 1 for the current pgfast.state
//     (connecting, ready, down, closed), 0 for the others
//   - pgfast.connector.state.duration (s): how long it has been in its current
//     state (time Down so far, while down)
//   - pgfast.connector.dials {attempt}, by pgfast.dial.outcome (ok, failed)
//   - pgfast.connector.evictions {eviction}: address generations evicted
//   - pgfast.connector.state_changes {change}
//   - pgfast.address.connections {connection}, by pgfast.address and
//     pgfast.address.status (up, pending, failed, evicted): open sockets of
//     each server address the connector knows
package pgfastotel

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgfast/pgfast"
)

// ScopeName is the instrumentation scope of the meter pgfastotel uses.
const ScopeName = "github.com/pgfast/pgfast/pgfastotel"

// Option configures Register.
type Option func(*options)

type options struct {
	provider metric.MeterProvider
	poolName string
	idleMax  int
}

// WithMeterProvider makes Register use mp instead of otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.provider = mp }
}

// WithPoolName sets db.client.connection.pool.name. Default: the first host of
// the pgfast connector's DSN ("host:port"), or "default" for another driver.
// Give every *sql.DB of a process its own name.
func WithPoolName(name string) Option {
	return func(o *options) { o.poolName = name }
}

// WithIdleMax reports n as db.client.connection.idle.max: pass what you gave
// db.SetMaxIdleConns (database/sql does not report it).
func WithIdleMax(n int) Option {
	return func(o *options) { o.idleMax = n }
}

// Register starts reporting db's metrics through the meter provider. The
// returned registration's Unregister stops it (call it before db.Close if the
// provider outlives db; after db.Close the connector reports state closed).
func Register(db *sql.DB, opts ...Option) (metric.Registration, error) {
	if db == nil {
		return nil, errors.New("pgfastotel: nil *sql.DB")
	}
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.provider == nil {
		o.provider = otel.GetMeterProvider()
	}
	conn := pgfast.ConnectorOf(db)
	if o.poolName == "" {
		o.poolName = defaultPoolName(conn)
	}
	r, err := newRecorder(o.provider.Meter(ScopeName), db, conn, o)
	if err != nil {
		return nil, err
	}
	return r.meter.RegisterCallback(r.observe, r.instruments()...)
}

func defaultPoolName(c *pgfast.Connector) string {
	if c == nil {
		return "default"
	}
	if hosts := c.Config().Hosts; len(hosts) > 0 {
		return hosts[0].String()
	}
	return "default"
}

// recorder holds the instruments of one registration and observes them.
type recorder struct {
	meter metric.Meter
	db    *sql.DB
	conn  *pgfast.Connector // nil when db does not use pgfast
	opts  options
	pool  attribute.KeyValue

	count, max, idleMax            metric.Int64ObservableUpDownCounter
	waitCount, closed              metric.Int64ObservableCounter
	waitDuration                   metric.Float64ObservableCounter
	state, addrConns               metric.Int64ObservableUpDownCounter
	dials, evictions, stateChanges metric.Int64ObservableCounter
	stateAge                       metric.Float64ObservableGauge
}

func newRecorder(m metric.Meter, db *sql.DB, conn *pgfast.Connector, o options) (*recorder, error) {
	r := &recorder{meter: m, db: db, conn: conn, opts: o,
		pool: attribute.String("db.client.connection.pool.name", o.poolName)}
	var errs []error
	upDown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		inst, err := m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return inst
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		inst, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return inst
	}
	r.count = upDown("db.client.connection.count", "{connection}",
		"The number of connections that are currently in state described by the state attribute.")
	r.max = upDown("db.client.connection.max", "{connection}", "The maximum number of open connections allowed.")
	r.idleMax = upDown("db.client.connection.idle.max", "{connection}", "The maximum number of idle open connections allowed.")
	r.waitCount = counter("pgfast.sql.wait.count", "{request}", "Requests that waited for a free connection (database/sql WaitCount).")
	var err error
	r.waitDuration, err = m.Float64ObservableCounter("pgfast.sql.wait.duration", metric.WithUnit("s"),
		metric.WithDescription("Total time requests waited for a free connection (database/sql WaitDuration)."))
	errs = append(errs, err)
	r.closed = counter("pgfast.sql.closed", "{connection}", "Connections database/sql closed, by reason.")
	if conn != nil {
		r.state = upDown("pgfast.connector.state", "{state}", "1 for the connector's current state, 0 for the others.")
		r.dials = counter("pgfast.connector.dials", "{attempt}", "Connection attempts through the backend, by outcome.")
		r.evictions = counter("pgfast.connector.evictions", "{eviction}", "Server address generations evicted.")
		r.stateChanges = counter("pgfast.connector.state_changes", "{change}", "Transitions between connector states.")
		r.stateAge, err = m.Float64ObservableGauge("pgfast.connector.state.duration", metric.WithUnit("s"),
			metric.WithDescription("How long the connector has been in its current state (pgfast.state)."))
		errs = append(errs, err)
		r.addrConns = upDown("pgfast.address.connections", "{connection}", "Open sockets of each server address, with its status.")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *recorder) instruments() []metric.Observable {
	out := []metric.Observable{r.count, r.max, r.idleMax, r.waitCount, r.waitDuration, r.closed}
	if r.conn != nil {
		out = append(out, r.state, r.stateAge, r.dials, r.evictions, r.stateChanges, r.addrConns)
	}
	return out
}

var states = []pgfast.State{pgfast.StateConnecting, pgfast.StateReady, pgfast.StateDown, pgfast.StateClosed}

// observe is the registration's callback: one db.Stats() and one connector
// Stats() per collection.
func (r *recorder) observe(_ context.Context, o metric.Observer) error {
	s := r.db.Stats()
	pool := metric.WithAttributes(r.pool)
	with := func(kv ...attribute.KeyValue) metric.ObserveOption {
		return metric.WithAttributes(append([]attribute.KeyValue{r.pool}, kv...)...)
	}
	o.ObserveInt64(r.count, int64(s.Idle), with(attribute.String("db.client.connection.state", "idle")))
	o.ObserveInt64(r.count, int64(s.InUse), with(attribute.String("db.client.connection.state", "used")))
	if s.MaxOpenConnections > 0 {
		o.ObserveInt64(r.max, int64(s.MaxOpenConnections), pool)
	}
	if r.opts.idleMax > 0 {
		o.ObserveInt64(r.idleMax, int64(r.opts.idleMax), pool)
	}
	o.ObserveInt64(r.waitCount, s.WaitCount, pool)
	o.ObserveFloat64(r.waitDuration, s.WaitDuration.Seconds(), pool)
	o.ObserveInt64(r.closed, s.MaxIdleClosed, with(attribute.String("pgfast.close.reason", "max_idle")))
	o.ObserveInt64(r.closed, s.MaxIdleTimeClosed, with(attribute.String("pgfast.close.reason", "max_idle_time")))
	o.ObserveInt64(r.closed, s.MaxLifetimeClosed, with(attribute.String("pgfast.close.reason", "max_lifetime")))
	if r.conn == nil {
		return nil
	}
	cs := r.conn.Stats()
	for _, st := range states {
		v := int64(0)
		if st == cs.State {
			v = 1
		}
		o.ObserveInt64(r.state, v, with(attribute.String("pgfast.state", st.String())))
	}
	o.ObserveFloat64(r.stateAge, sinceOrZero(cs.StateSince).Seconds(), with(attribute.String("pgfast.state", cs.State.String())))
	o.ObserveInt64(r.dials, cs.Dials-cs.DialFailures, with(attribute.String("pgfast.dial.outcome", "ok")))
	o.ObserveInt64(r.dials, cs.DialFailures, with(attribute.String("pgfast.dial.outcome", "failed")))
	o.ObserveInt64(r.evictions, cs.Evictions, pool)
	o.ObserveInt64(r.stateChanges, cs.StateChanges, pool)
	for _, a := range cs.Addrs {
		o.ObserveInt64(r.addrConns, int64(a.OpenConns), with(
			attribute.String("pgfast.address", a.Addr), attribute.String("pgfast.address.status", a.Status)))
	}
	return nil
}

// sinceOrZero is the time since t, or zero for the zero time.
func sinceOrZero(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return time.Since(t)
}

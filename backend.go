package pgfast

import (
	"context"
	"database/sql/driver"
	"net"
	"sync"
	"time"
)

// Backend selects the driver pgfast wraps.
type Backend int

const (
	// PGX wraps github.com/jackc/pgx/v5/stdlib (driver name "pgfast").
	PGX Backend = iota
	// LibPQ wraps github.com/lib/pq (driver name "pgfast-pq").
	LibPQ
)

func (b Backend) String() string {
	switch b {
	case PGX:
		return "pgx"
	case LibPQ:
		return "lib/pq"
	}
	return "unknown"
}

// adapter is the one seam between pgfast's core and a backend driver. An
// adapter is made by its backend's parse function (parsePGX, parsePQ), which
// runs the backend's own DSN parser; connector then builds the backend's
// driver.Connector around the seam's dial function and hooks.
type adapter interface {
	connector(s *seam) driver.Connector
	// refusedTLS reports whether err itself (not what it wraps) is the
	// backend's error for a server refusing the TLS sslmode requires.
	refusedTLS(err error) bool
}

// parseDSN runs the chosen backend's parser and takes pgfast's settings out of
// what it left over.
func parseDSN(b Backend, dsn string) (adapter, *Config, error) {
	var (
		a   adapter
		p   *parsedDSN
		err error
	)
	switch b {
	case PGX:
		a, p, err = parsePGX(dsn)
	case LibPQ:
		a, p, err = parsePQ(dsn)
	default:
		return nil, nil, &ConfigError{Reason: "unknown backend " + b.String()}
	}
	if err != nil {
		return nil, nil, err
	}
	cfg, err := buildConfig(p)
	if err != nil {
		return nil, nil, err
	}
	return a, cfg, nil
}

// seam is what the core hands to a backend adapter: the dial function every
// connection must go through, and the hooks the adapter calls at the points
// only it can see.
type seam struct {
	cfg  *Config
	dial dialFunc
	// afterConnect runs once a connection is authenticated and verified; nc is
	// the socket pgfast's dialer made. An error closes the connection.
	afterConnect func(ctx context.Context, nc net.Conn) error
	// checkout runs before database/sql reuses a connection; it returns
	// driver.ErrBadConn for a dead one.
	checkout func(ctx context.Context, nc net.Conn) error
	// alive reports whether the socket still looks usable (no I/O).
	alive func(nc net.Conn) bool
	// onError is told every error a backend call on a connection returned
	// (adapters that wrap connections call it); the core decides what the
	// error says about the server (a demoted primary, a dead host).
	onError func(nc net.Conn, err error)
	// checkRole runs at checkout with the server's reported parameters
	// (nil when the backend does not expose them): a server that no longer
	// has the role target_session_attrs asked for is driver.ErrBadConn and
	// its address is evicted.
	checkRole func(nc net.Conn, params serverParams) error
	// orderHosts returns the order to try the DSN's hosts in, as indexes.
	orderHosts func(hosts []HostPort) []int
}

// dialFunc is pgfast's dial function. Its methods make it a lib/pq Dialer and
// DialerContext too.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// DialContext dials with ctx.
func (f dialFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}

// Dial dials without a deadline of its own (pgfast's per-address deadline applies).
func (f dialFunc) Dial(network, address string) (net.Conn, error) {
	return f(context.Background(), network, address)
}

// DialTimeout dials within timeout.
func (f dialFunc) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return f(ctx, network, address)
}

// dialRecord remembers the sockets dialed under one Connect call, so an
// adapter whose backend hides its socket (lib/pq) learns which one its
// connection uses, and so that cancelling that call's context aborts a
// handshake stuck on a dead network (lib/pq does not watch ctx after dialing).
type dialRecord struct {
	ctx   context.Context // the Connect call's context (not a per-dial one)
	mu    sync.Mutex
	conns []net.Conn
	stops []func() bool
}

type dialRecordKey struct{}

func withDialRecord(ctx context.Context) (context.Context, *dialRecord) {
	rec := &dialRecord{ctx: ctx}
	return context.WithValue(ctx, dialRecordKey{}, rec), rec
}

// add remembers nc and, until done is called, expires its deadline when the
// Connect call's context ends.
func (r *dialRecord) add(nc net.Conn) {
	stop := context.AfterFunc(r.ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	r.mu.Lock()
	r.conns = append(r.conns, nc)
	r.stops = append(r.stops, stop)
	r.mu.Unlock()
}

// done disarms the context watch and returns the last socket dialed: the one
// the backend kept (it dials hosts one after another and closes failures).
func (r *dialRecord) done() net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, stop := range r.stops {
		stop()
	}
	r.stops = nil
	if len(r.conns) == 0 {
		return nil
	}
	return r.conns[len(r.conns)-1]
}

// recording wraps dial so that sockets made under a withDialRecord context are
// remembered there.
func recording(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := dial(ctx, network, address)
		if err == nil {
			if rec, ok := ctx.Value(dialRecordKey{}).(*dialRecord); ok {
				rec.add(nc)
			}
		}
		return nc, err
	}
}

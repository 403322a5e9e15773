package pgfast

import (
	"context"
	"database/sql/driver"
	"fmt"
	"net"
	"sync"
	"time"
)

// Backend selects the driver pgfast wraps.
type Backend int

var _ fmt.Stringer = Backend(0)

const (
	// PGX wraps github.com/jackc/pgx/v5/stdlib (driver name "pgfast").
	PGX Backend = iota
	// LibPQ wraps github.com/lib/pq (driver name "pgfast-pq").
	LibPQ
)

// String returns "pgx" or "lib/pq".
func (b Backend) String() string {
	switch b {
	case PGX:
		return "pgx"
	case LibPQ:
		return "lib/pq"
	}
	return "unknown"
}

// adapter is the one seam between pgfast's core and a backend driver. The
// path through it, in order:
//
//   - parse: the backend's parse function (parsePGX, parsePQ) runs the
//     backend's own DSN parser and reports the DSN's host groups and a copy
//     of its leftover settings (parsedDSN); configure takes pgfast's keys out
//     of the leftovers into Config and hands the rest back (useLeftover).
//   - connector(core): the adapter builds the backend's driver.Connector
//     around core, the interface the Connector implements (connectorCore in
//     seamhooks.go): every socket comes from core.dial, and the adapter calls
//     core's other methods at the points only it can see (checkout, a
//     backend error, the host order).
//   - socket, refusedTLS: the core asks the adapter about a connection (its
//     socket) or an error (the server refusing TLS) in the backend's terms.
type adapter interface {
	// useLeftover replaces the settings the backend sends to the server as
	// runtime parameters with leftover: the parse's copy, from which the
	// core took its own keys.
	useLeftover(leftover map[string]string)
	// connector builds the backend's driver.Connector on the core.
	connector(co core) driver.Connector
	// refusedTLS reports whether err itself (not what it wraps) is the
	// backend's error for a server refusing the TLS sslmode requires.
	refusedTLS(err error) bool
	// socket returns the socket pgfast's dialer made for a connection of
	// this backend, nil if dc is not one.
	socket(dc driver.Conn) net.Conn
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
	cfg, err := configure(a, p)
	if err != nil {
		return nil, nil, err
	}
	return a, cfg, nil
}

// configure builds pgfast's Config from what a's parse reported and hands
// the adapter back the leftovers without pgfast's keys.
func configure(a adapter, p *parsedDSN) (*Config, error) {
	cfg, err := buildConfig(p)
	if err != nil {
		return nil, err
	}
	a.useLeftover(p.leftover)
	return cfg, nil
}

// core is what pgfast's core offers a backend adapter: the dial function
// every connection must go through, and the hooks the adapter calls at the
// points only it can see. The Connector implements it (connectorCore); tests
// use a fake of their own.
type core interface {
	// config is the connector's Config.
	config() *Config
	// dial makes every socket of the backend's connections (and of
	// lib/pq's cancel requests). A backend that wants a function value
	// converts the method value: dialFunc(co.dial).
	dial(ctx context.Context, network, address string) (net.Conn, error)
	// checkout runs before database/sql reuses a connection; it returns
	// driver.ErrBadConn for a dead one.
	checkout(ctx context.Context, nc net.Conn) error
	// alive reports whether the socket still looks usable (no I/O).
	alive(nc net.Conn) bool
	// onError is told every error a backend call on a connection returned
	// (adapters that wrap connections call it); the core decides what the
	// error says about the server (a demoted primary, a dead host).
	onError(nc net.Conn, err error)
	// ignoresErrors reports whether onError does nothing with any error
	// on this connector's connections: then an adapter need not route
	// them to it (lib/pq's rows are handed out unwrapped: pq_rows.go).
	ignoresErrors() bool
	// checkRole runs at checkout with the server's reported parameters
	// (nil when the backend does not expose them, which passes): a server
	// that no longer has the role target_session_attrs asked for is
	// driver.ErrBadConn and its address is evicted.
	checkRole(nc net.Conn, params serverParams) error
	// orderHosts returns the order to try the DSN's hosts in, as indexes.
	orderHosts(hosts []HostPort) []int
	// platform is what the connector applies on this system; without the
	// peek the backend keeps its own ping before reusing a connection.
	platform() platform
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
// expired is set when the Connect call's context ended before the watch of
// that socket could be disarmed: its deadline is (or is about to be) in the
// past, so the connection must not be handed out.
func (r *dialRecord) done() (nc net.Conn, expired bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, stop := range r.stops {
		if !stop() && i == len(r.stops)-1 {
			expired = true
		}
	}
	r.stops = nil
	if len(r.conns) == 0 {
		return nil, false
	}
	return r.conns[len(r.conns)-1], expired
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

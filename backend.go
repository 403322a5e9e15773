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

// adapter is the one seam between pgfast's core and a backend driver:
//
//   - parse (parsePGX, parsePQ) runs the backend's own DSN parser and reports
//     host groups and a copy of its leftover settings; configure takes
//     pgfast's keys out and hands the rest back (useLeftover).
//   - connector(core) builds the backend's driver.Connector around core:
//     every socket comes from core.dial, and the adapter calls core's other
//     methods at the points only it can see.
//   - socket, refusedTLS answer the core's questions in the backend's terms.
type adapter interface {
	// useLeftover replaces the backend's runtime parameters with leftover
	// (the parse's copy minus the core's keys).
	useLeftover(leftover map[string]string)
	connector(co core) driver.Connector
	// refusedTLS reports whether err itself (not what it wraps) is the
	// backend's error for a server refusing the TLS sslmode requires.
	refusedTLS(err error) bool
	// socket returns pgfast's socket under dc, nil if dc is not one.
	socket(dc driver.Conn) net.Conn
}

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

// configure builds Config from a's parse and hands the adapter back the
// leftovers without pgfast's keys.
func configure(a adapter, p *parsedDSN) (*Config, error) {
	cfg, err := buildConfig(p)
	if err != nil {
		return nil, err
	}
	a.useLeftover(p.leftover)
	return cfg, nil
}

// core is what pgfast's core offers a backend adapter: the dial every
// connection goes through and the hooks it calls. The Connector implements
// it (connectorCore); tests use a fake.
type core interface {
	config() *Config
	// dial makes every socket of the backend's connections (and of
	// lib/pq's cancel requests).
	dial(ctx context.Context, network, address string) (net.Conn, error)
	// checkout returns driver.ErrBadConn for a dead connection.
	checkout(ctx context.Context, nc net.Conn) error
	alive(nc net.Conn) bool
	// onError is told every error a backend call on a connection returned;
	// the core decides what it says about the server.
	onError(nc net.Conn, err error)
	// ignoresErrors reports whether onError ignores every error here, so an
	// adapter need not route them (lib/pq's rows are handed out unwrapped).
	ignoresErrors() bool
	// checkRole runs at checkout with the server's parameters (nil passes):
	// a server that lost the target_session_attrs role is driver.ErrBadConn
	// and its address is evicted.
	checkRole(nc net.Conn, params serverParams) error
	orderHosts(hosts []HostPort) []int
	// platform: without the peek the backend keeps its own ping.
	platform() platform
}

// dialFunc is pgfast's dial function; its methods make it a lib/pq Dialer
// and DialerContext.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// DialContext dials with ctx.
func (f dialFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}

// Dial dials without a deadline of its own (the per-address one applies).
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
// adapter whose backend hides its socket (lib/pq) learns which one it uses,
// and cancelling the call's context aborts a handshake stuck on a dead
// network (lib/pq does not watch ctx after dialing).
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

// add remembers nc and, until done, expires its deadline when the Connect
// call's context ends.
func (r *dialRecord) add(nc net.Conn) {
	stop := context.AfterFunc(r.ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	r.mu.Lock()
	r.conns = append(r.conns, nc)
	r.stops = append(r.stops, stop)
	r.mu.Unlock()
}

// done disarms the watch and returns the last socket dialed (the backend
// dials hosts in turn and closes failures). expired: the context ended
// before the watch was disarmed, so the socket's deadline is (about to be)
// past and the connection must not be handed out.
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

// recording wraps dial so sockets made under a withDialRecord context are
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

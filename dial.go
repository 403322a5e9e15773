package pgfast

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// defaultAttemptDelay is RFC 8305's recommended "Connection Attempt Delay".
const defaultAttemptDelay = 250 * time.Millisecond

// dialSettings are the TCP settings the dialer applies (libpq parameter meanings).
type dialSettings struct {
	ConnectTimeout     time.Duration // per address attempt (libpq connect_timeout semantics); 0 = no per-address deadline (ctx only)
	Keepalives         bool          // SO_KEEPALIVE
	KeepalivesIdle     time.Duration // TCP_KEEPIDLE (seconds granularity; 0 = OS default)
	KeepalivesInterval time.Duration // TCP_KEEPINTVL (0 = OS default)
	KeepalivesCount    int           // TCP_KEEPCNT (0 = OS default)
	TCPUserTimeout     time.Duration // TCP_USER_TIMEOUT in ms (0 = OS default, i.e. not set)
	AttemptDelay       time.Duration // RFC 8305 "connection attempt delay"; 0 means 250ms
}

// dialer resolves a host afresh on every dial and races its addresses
// (RFC 8305, "Happy Eyeballs v2"), applying the TCP options of its settings
// to every socket before connect().
type dialer struct {
	settings dialSettings
	resolver Resolver

	// dialAddr dials one resolved address (or a unix socket path). It
	// defaults to a net.Dialer configured with the socket options; tests
	// replace it to simulate blackholed addresses.
	dialAddr func(ctx context.Context, network, addr string) (net.Conn, error)

	// book, when set, records every attempt's outcome, orders addresses
	// known to be bad last, and tracks every socket it makes (addrbook.go, trackedconn.go).
	book *addrBook
}

// newDialer returns a dialer; r == nil means net.DefaultResolver. No caching of ours.
func newDialer(s dialSettings, r Resolver) *dialer {
	if r == nil {
		r = net.DefaultResolver
	}
	nd := &net.Dialer{KeepAlive: -1} // our options, not Go's keep-alive defaults
	configureSocketOptions(nd, s)
	return &dialer{settings: s, resolver: r, dialAddr: nd.DialContext}
}

// Dial dials address without a context (pq.Dialer).
func (d *dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialTimeout dials address with timeout as an overall limit (pq.Dialer);
// timeout <= 0 means no overall limit.
func (d *dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return d.DialContext(ctx, network, address)
}

// DialContext connects to address ("host:port", or a socket path for
// "unix"). A host name is resolved on every call and its addresses are
// raced; the first connection wins and every other attempt is cancelled
// (and closed if it connected anyway) before DialContext returns.
func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "unix":
		return d.dialUnix(ctx, address)
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	portNum, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: invalid port %q", address, port)
	}
	addrs, err := d.resolve(ctx, network, host)
	if err != nil {
		if contextDone(ctx) {
			return nil, canceledDialError(awaitDone(ctx), address)
		}
		// As net.Dialer reports it ("dial tcp: lookup HOST: ..."): a
		// *net.OpError around the *net.DNSError, which errors.As finds.
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	targets := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		targets[i] = netip.AddrPortFrom(a, uint16(portNum))
	}
	if d.book != nil {
		d.book.resolved(host, port, targets)
		d.book.preferHealthy(targets, time.Now(), d.attemptDelay())
	}
	var skipped []AddrStats
	if d.book != nil && !isProbe(ctx) {
		if targets, skipped = d.book.skipUnreachable(network, targets, time.Now()); len(targets) == 0 {
			return nil, &DialError{Host: host, Port: port, Attempts: skipped}
		}
	}
	conn, attempts := d.race(ctx, network, targets)
	switch {
	case conn != nil:
		return conn, nil
	case contextDone(ctx):
		return nil, canceledDialError(awaitDone(ctx), address)
	default:
		return nil, &DialError{Host: host, Port: port, Attempts: append(attempts, skipped...)}
	}
}

// dialUnix dials a unix socket path. No TCP option applies, but the socket
// is tracked like every socket pgfast makes (trackUnix): the adapters need its
// write count to know whether a statement left, or lib/pq's
// driver.ErrBadConn after a terminated backend makes database/sql run the
// statement a second time.
func (d *dialer) dialUnix(ctx context.Context, path string) (net.Conn, error) {
	if t := d.settings.ConnectTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	nc, err := d.dialAddr(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return trackUnix(nc), nil
}

package pgfast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
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
	// known to be bad last, and tracks every socket it makes (health.go).
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
		d.book.preferHealthy(targets)
	}
	conn, attempts := d.race(ctx, network, targets)
	switch {
	case conn != nil:
		return conn, nil
	case contextDone(ctx):
		return nil, canceledDialError(awaitDone(ctx), address)
	default:
		return nil, &DialError{Host: host, Port: port, Attempts: attempts}
	}
}

// dialUnix dials a unix socket path; no socket options apply.
func (d *dialer) dialUnix(ctx context.Context, path string) (net.Conn, error) {
	if t := d.settings.ConnectTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	return d.dialAddr(ctx, "unix", path)
}

// resolve returns host's addresses in the order to try them. An IP literal
// is returned as is, without asking the resolver.
func (d *dialer) resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	ips, err := d.resolver.LookupNetIP(ctx, resolverNetwork(network), host)
	if err != nil {
		return nil, err
	}
	ips = normalizeResolved(ips, network)
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no suitable address found", Name: host, IsNotFound: true}
	}
	return interleaveFamilies(ips), nil
}

// resolverNetwork maps a dial network to the LookupNetIP network.
func resolverNetwork(network string) string {
	switch network {
	case "tcp4":
		return "ip4"
	case "tcp6":
		return "ip6"
	default:
		return "ip"
	}
}

// normalizeResolved unmaps IPv4-mapped IPv6 addresses, drops duplicates and
// invalid addresses, and keeps only the family network asks for.
func normalizeResolved(ips []netip.Addr, network string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	seen := make(map[netip.Addr]bool, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case !ip.IsValid(), seen[ip]:
			continue
		case network == "tcp4" && !ip.Is4(), network == "tcp6" && !ip.Is6():
			continue
		}
		seen[ip] = true
		out = append(out, ip)
	}
	return out
}

// interleaveFamilies orders addresses RFC 8305 style: alternate between
// IPv6 and IPv4, starting with the family of the first address and keeping
// the resolver's order within each family.
func interleaveFamilies(addrs []netip.Addr) []netip.Addr {
	if len(addrs) < 2 {
		return addrs
	}
	firstIs4 := addrs[0].Unmap().Is4()
	var first, other []netip.Addr
	for _, a := range addrs {
		if a.Unmap().Is4() == firstIs4 {
			first = append(first, a)
		} else {
			other = append(other, a)
		}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for i := 0; i < len(first) || i < len(other); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(other) {
			out = append(out, other[i])
		}
	}
	return out
}

// attemptOutcome is what one connection attempt reports to the race.
type attemptOutcome struct {
	index int
	conn  net.Conn
	err   error
}

// race connects to targets in order, starting the next attempt when the
// attempt delay has passed since the previous start or as soon as an
// attempt fails. It returns the first connection; or nil and every
// attempt's error in order; or nil, nil if ctx ended first. When race
// returns, every attempt goroutine has exited and every losing connection
// has been closed.
func (d *dialer) race(ctx context.Context, network string, targets []netip.AddrPort) (net.Conn, []AddrStats) {
	if len(targets) == 1 { // nothing to race
		conn, err := d.attempt(ctx, network, targets[0])
		if err != nil {
			return nil, []AddrStats{{Addr: targets[0].String(), Status: "failed", Err: err}}
		}
		return conn, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	outcomes := make(chan attemptOutcome, len(targets)) // never blocks a sender
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		closeLosers(outcomes)
	}()

	delay := d.attemptDelay()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	errs := make([]error, len(targets))
	started, pending := 0, 0
	startNext := func() {
		i := started
		wg.Go(func() {
			conn, err := d.attempt(ctx, network, targets[i])
			outcomes <- attemptOutcome{index: i, conn: conn, err: err}
		})
		started++
		pending++
		timer.Reset(delay)
	}

	startNext()
	for pending > 0 {
		var tick <-chan time.Time
		if started < len(targets) {
			tick = timer.C
		}
		select {
		case o := <-outcomes:
			pending--
			if o.err == nil {
				return o.conn, nil
			}
			errs[o.index] = o.err
			if started < len(targets) {
				startNext()
			}
		case <-tick:
			startNext()
		case <-ctx.Done():
			return nil, nil
		}
	}
	return nil, addrErrors(targets, errs)
}

// closeLosers closes the connections of attempts that connected after
// the race was decided; every sender must have finished.
func closeLosers(outcomes chan attemptOutcome) {
	close(outcomes)
	for o := range outcomes {
		if o.conn != nil {
			o.conn.Close()
		}
	}
}

// attemptDelay returns the RFC 8305 connection attempt delay to use.
func (d *dialer) attemptDelay() time.Duration {
	if d.settings.AttemptDelay > 0 {
		return d.settings.AttemptDelay
	}
	return defaultAttemptDelay
}

// errAttemptDeadline is the cancellation cause of an attempt's own deadline.
var errAttemptDeadline = errors.New("pgfast: connect_timeout reached")

// attempt dials one address with its own ConnectTimeout deadline, and
// reports its outcome to the address book.
func (d *dialer) attempt(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error) {
	if d.book == nil {
		return d.attemptAddr(ctx, network, target)
	}
	d.book.attemptStarted(target)
	conn, err := d.attemptAddr(ctx, network, target)
	if err != nil && callerEnded(ctx, err) {
		d.book.attemptAbandoned(target)
		return nil, err
	}
	if tracked := d.book.attemptDone(target, conn, err); tracked != nil {
		conn = tracked
		if tc := trackedOf(tracked); tc != nil && watchesPeers && tc.peek != nil {
			tc.window = d.settings.deadPeerWindow()
			deadPeers.add(tc)
		}
	}
	return conn, err
}

// callerEnded reports whether an attempt's failure is its caller's doing: the
// caller's context ended (cancelled, or its deadline passed) before the
// attempt's own connect_timeout did. That says nothing about the server.
func callerEnded(ctx context.Context, err error) bool {
	var own *attemptTimeoutError
	return !errors.As(err, &own) && contextDone(ctx)
}

// attemptAddr dials one address with its own ConnectTimeout deadline.
func (d *dialer) attemptAddr(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error) {
	timeout := d.settings.ConnectTimeout
	attemptCtx := ctx
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
		var cancel context.CancelFunc
		attemptCtx, cancel = context.WithDeadlineCause(ctx, deadline, errAttemptDeadline)
		defer cancel()
	}
	conn, err := d.dialAddr(attemptCtx, network, target.String())
	if err == nil {
		return conn, nil
	}
	if conn != nil {
		conn.Close()
	}
	// The socket's deadline can fire before the context's timer does, so
	// judge by the clock rather than by attemptCtx.Err().
	if timeout > 0 && ctx.Err() == nil && !time.Now().Before(deadline) {
		err = &attemptTimeoutError{after: timeout, err: err}
	}
	return nil, err
}

// addrErrors pairs every target with its error.
func addrErrors(targets []netip.AddrPort, errs []error) []AddrStats {
	out := make([]AddrStats, len(targets))
	for i, t := range targets {
		out[i] = AddrStats{Addr: t.String(), Status: "failed", Err: errs[i]}
	}
	return out
}

// contextDone reports whether ctx is cancelled or past its deadline (its
// timer may not have fired yet when a socket deadline derived from it has).
func contextDone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

// awaitDone waits for ctx, which contextDone reported done, to say so: a
// socket deadline derived from ctx's deadline can fire just before ctx's own
// timer, and a caller that sees ctx.Err() == nil would take its own deadline
// for the server's failure. It returns ctx.
func awaitDone(ctx context.Context) context.Context {
	<-ctx.Done()
	return ctx
}

// canceledDialError reports that ctx ended the dial to address; it matches
// ctx.Err() (and the cancellation cause, if one was given) with errors.Is.
func canceledDialError(ctx context.Context, address string) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded // past the deadline, timer not yet fired
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("dial %s: %w: %w", address, err, cause)
	}
	return fmt.Errorf("dial %s: %w", address, err)
}

// DialError is returned when every address of a host failed. It names the
// host, the port and every address tried with the reason it failed.
type DialError struct {
	Host string
	Port string
	// Attempts lists every address tried, in the order tried, each with
	// Addr, Status "failed" and Err (the cause, e.g. a *net.OpError
	// wrapping ECONNREFUSED, or a timeout).
	Attempts []AddrStats
}

// Error returns e.g.
// "dial db.example:5432: [::1]:5432: i/o timeout after 10s; 127.0.0.1:5432: connection refused".
func (e *DialError) Error() string {
	var b strings.Builder
	b.WriteString("dial ")
	b.WriteString(net.JoinHostPort(e.Host, e.Port))
	b.WriteString(": ")
	if len(e.Attempts) == 1 {
		// One address: Go's own text ("dial tcp ADDR: connect: ..."), the
		// raw driver's, so that a grep for it keeps working.
		if op, ok := e.Attempts[0].Err.(*net.OpError); ok && op.Op == "dial" && op.Addr != nil && op.Addr.String() == e.Attempts[0].Addr {
			return op.Error()
		}
		if e.Attempts[0].Addr == net.JoinHostPort(e.Host, e.Port) {
			b.WriteString(conciseCause(e.Attempts[0].Err)) // the address is the host
			return b.String()
		}
	}
	for i, a := range e.Attempts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// Unwrap returns the cause of every failed attempt, so that errors.Is and
// errors.As look into all of them.
func (e *DialError) Unwrap() []error {
	errs := make([]error, 0, len(e.Attempts))
	for _, a := range e.Attempts {
		if a.Err != nil {
			errs = append(errs, a.Err)
		}
	}
	return errs
}

// conciseCause describes err without repeating the operation and address
// that the surrounding message already names.
func conciseCause(err error) string {
	if err == nil {
		return "unknown error"
	}
	var timeout *attemptTimeoutError
	if errors.As(err, &timeout) {
		return timeout.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var sys *os.SyscallError
	if errors.As(err, &sys) && sys.Syscall == "connect" {
		err = sys.Err
	}
	return err.Error()
}

// attemptTimeoutError reports that one address did not connect within
// ConnectTimeout. It matches os.ErrDeadlineExceeded and
// context.DeadlineExceeded and wraps the dial error it replaced.
type attemptTimeoutError struct {
	after time.Duration
	err   error
}

func (e *attemptTimeoutError) Error() string   { return "i/o timeout after " + e.after.String() }
func (e *attemptTimeoutError) Unwrap() error   { return e.err }
func (e *attemptTimeoutError) Timeout() bool   { return true }
func (e *attemptTimeoutError) Temporary() bool { return true }

func (e *attemptTimeoutError) Is(target error) bool {
	return target == os.ErrDeadlineExceeded || target == context.DeadlineExceeded
}

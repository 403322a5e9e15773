package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// defaultAttemptDelay is RFC 8305's recommended "Connection Attempt Delay".
const defaultAttemptDelay = 250 * time.Millisecond

// Settings are the TCP settings the dialer applies (libpq parameter meanings).
type Settings struct {
	ConnectTimeout     time.Duration // per address attempt (libpq connect_timeout semantics); 0 = no per-address deadline (ctx only)
	Keepalives         bool          // SO_KEEPALIVE
	KeepalivesIdle     time.Duration // TCP_KEEPIDLE (seconds granularity; 0 = OS default)
	KeepalivesInterval time.Duration // TCP_KEEPINTVL (0 = OS default)
	KeepalivesCount    int           // TCP_KEEPCNT (0 = OS default)
	TCPUserTimeout     time.Duration // TCP_USER_TIMEOUT in ms (0 = OS default, i.e. not set)
	AttemptDelay       time.Duration // RFC 8305 "connection attempt delay"; 0 means 250ms
}

// Dialer resolves a host afresh on every dial and races its addresses
// (RFC 8305), setting its TCP options on every socket before connect().
type Dialer struct {
	settings Settings
	resolver Resolver

	// dialAddr dials one address or unix path (tests simulate blackholes).
	dialAddr func(ctx context.Context, network, addr string) (net.Conn, error)

	// book, when set, records every attempt and tracks every socket.
	book *Book
}

// NewDialer returns a dialer; r == nil means net.DefaultResolver (never cached).
func NewDialer(s Settings, r Resolver) *Dialer {
	if r == nil {
		r = net.DefaultResolver
	}
	d := &Dialer{settings: s, resolver: r}
	d.dialAddr = d.dialNet
	return d
}

// dialNet dials one address with a net.Dialer made for the dial: none is
// kept per connector (an idle tenant's memory).
func (d *Dialer) dialNet(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{KeepAlive: -1} // our options, not Go's keep-alive defaults
	configureSocketOptions(&nd, d.settings)
	return nd.DialContext(ctx, network, addr)
}

// SetBook makes d record every attempt in b and track every socket it makes.
func (d *Dialer) SetBook(b *Book) { d.book = b }

// Dial dials address without a context (pq.Dialer).
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialTimeout dials address with timeout as an overall limit (pq.Dialer);
// timeout <= 0 means no overall limit.
func (d *Dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return d.DialContext(ctx, network, address)
}

// DialContext connects to address ("host:port", or a path for "unix"). A
// host name is resolved on every call and its addresses raced; every losing
// attempt is cancelled (and closed if it connected) before it returns.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
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
		// As net.Dialer reports it: errors.As finds the *net.DNSError.
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
	if d.book != nil && !noSkip(ctx) {
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

// dialUnix dials a unix socket path, tracked (trackUnix) for its write
// count: without it, lib/pq's driver.ErrBadConn after a terminated backend
// makes database/sql run a statement that left a second time.
func (d *Dialer) dialUnix(ctx context.Context, path string) (net.Conn, error) {
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

type attemptOutcome struct {
	index int
	conn  net.Conn
	err   error
}

// race starts the next attempt when the attempt delay has passed or the
// previous one failed. It returns the first connection; or nil and every
// attempt's error; or nil, nil if ctx ended first. On return every attempt
// goroutine has exited and every loser is closed.
func (d *Dialer) race(ctx context.Context, network string, targets []netip.AddrPort) (net.Conn, []AddrStats) {
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

// closeLosers closes connections that arrived after the race was decided;
// every sender must have finished.
func closeLosers(outcomes chan attemptOutcome) {
	close(outcomes)
	for o := range outcomes {
		if o.conn != nil {
			o.conn.Close()
		}
	}
}

func (d *Dialer) attemptDelay() time.Duration {
	if d.settings.AttemptDelay > 0 {
		return d.settings.AttemptDelay
	}
	return defaultAttemptDelay
}

// errAttemptDeadline is the cancellation cause of an attempt's own deadline.
var errAttemptDeadline = errors.New("pgfast: connect_timeout reached")

// attempt dials one address and reports its outcome to the book.
func (d *Dialer) attempt(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error) {
	if d.book == nil {
		return d.attemptAddr(ctx, network, target)
	}
	d.book.attemptStarted(target)
	start := time.Now()
	conn, err := d.attemptAddr(ctx, network, target)
	if err != nil && callerEnded(ctx, err) {
		d.book.attemptAbandoned(target, time.Since(start) > d.attemptDelay())
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

// callerEnded reports whether the caller's context ended before the
// attempt's own connect_timeout: that says nothing about the server.
func callerEnded(ctx context.Context, err error) bool {
	var own *attemptTimeoutError
	return !errors.As(err, &own) && contextDone(ctx)
}

func (d *Dialer) attemptAddr(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error) {
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
	// The socket's deadline can fire before the context's timer: judge by
	// the clock, not attemptCtx.Err().
	if timeout > 0 && ctx.Err() == nil && !time.Now().Before(deadline) {
		err = &attemptTimeoutError{after: timeout, err: err}
	}
	return nil, err
}

func addrErrors(targets []netip.AddrPort, errs []error) []AddrStats {
	out := make([]AddrStats, len(targets))
	for i, t := range targets {
		out[i] = AddrStats{Addr: t.String(), Status: "failed", Err: errs[i]}
	}
	return out
}

// contextDone reports whether ctx is cancelled or past its deadline (its
// timer may not have fired yet).
func contextDone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

// awaitDone waits until ctx, which contextDone reported done, says so, so a
// caller never takes its own deadline for the server's failure.
func awaitDone(ctx context.Context) context.Context {
	<-ctx.Done()
	return ctx
}

// unreachableSkip is how long after an eviction as unreachable (silent peer,
// no route) a dial to that address fails at once instead of waiting out
// connect_timeout, unless it succeeded since. It spares the dials eviction
// itself sets off: each evicted pgx connection sends a cancel request as it
// closes (pgconn's asyncClose) while pgxpool holds its slot, which kept a
// pool from dialing the new primary for a whole connect_timeout. The
// connector's own probes are never skipped, so recovery is never delayed.
const unreachableSkip = 5 * time.Second

type noSkipKey struct{}

// NoSkip marks ctx as the connector's own background attempt's: its dials
// are never skipped (they are how an evicted address is seen alive again).
func NoSkip(ctx context.Context) context.Context {
	return context.WithValue(ctx, noSkipKey{}, true)
}

func noSkip(ctx context.Context) bool {
	v, _ := ctx.Value(noSkipKey{}).(bool)
	return v
}

// skipUnreachable removes the addresses evicted as unreachable within
// unreachableSkip and not seen alive since, recording an attempt for each.
func (b *Book) skipUnreachable(network string, targets []netip.AddrPort, now time.Time) ([]netip.AddrPort, []AddrStats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var skipped []AddrStats
	kept := targets[:0:0]
	for _, t := range targets {
		e := b.addrs[t]
		if e == nil || e.unreachableAt.IsZero() || now.Sub(e.unreachableAt) >= unreachableSkip {
			kept = append(kept, t)
			continue
		}
		skipped = append(skipped, AddrStats{Addr: t.String(), Status: "failed", Err: &net.OpError{
			Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(t),
			Err: &unreachableError{ago: now.Sub(e.unreachableAt), cause: e.err},
		}})
	}
	return kept, skipped
}

// unreachableError is a skipped dial's reason. It is a timeout (as the dial
// it replaces would have been) and wraps cause.
type unreachableError struct {
	ago   time.Duration
	cause error
}

func (e *unreachableError) Error() string {
	s := fmt.Sprintf("not dialled: evicted as unreachable %s ago", RoundDuration(e.ago))
	if e.cause != nil {
		s += " (" + e.cause.Error() + ")"
	}
	return s
}

func (e *unreachableError) Unwrap() error   { return e.cause }
func (e *unreachableError) Timeout() bool   { return true }
func (e *unreachableError) Temporary() bool { return true }

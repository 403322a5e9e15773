package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
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

// keepIdle is how long a socket is idle before the kernel sends its first
// keep-alive probe (TCP_KEEPIDLE, whole seconds); zero when it sends none
// or the OS decides.
func (s Settings) keepIdle() time.Duration {
	if !s.Keepalives || s.KeepalivesIdle <= 0 {
		return 0
	}
	return time.Duration(CeilUnits(s.KeepalivesIdle, time.Second)) * time.Second
}

// keepIdleOf is keepIdle for the socket nc: with keepalives_idle=0 the
// system's keep-alive time, as the socket has it (net.ipv4.tcp_keepalive_time
// of its namespace), so a doze never outlasts its first probe where the
// system's time is shorter than dozeMax.
func (s Settings) keepIdleOf(nc net.Conn) time.Duration {
	if d := s.keepIdle(); d > 0 || !s.Keepalives {
		return d
	}
	if o, err := ReadSocketOptions(nc); err == nil && o.Keepalive {
		return o.KeepalivesIdle
	}
	return 0
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

	// adm admits startups (the process's table; a bubble's own in tests).
	adm *admission
	// queued counts this dialer's dials waiting for admission (Queued).
	queued atomic.Int32
}

// NewDialer returns a dialer; r == nil means net.DefaultResolver (never cached).
func NewDialer(s Settings, r Resolver) *Dialer {
	if r == nil {
		r = net.DefaultResolver
	}
	d := &Dialer{settings: s, resolver: r, adm: admissionFor()}
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
func (d *Dialer) SetBook(b *Book) {
	d.book = b
	b.connectTimeout = d.settings.ConnectTimeout
}

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
	addrs, err := d.resolveBounded(ctx, network, host)
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
	if d.book != nil {
		if targets, skipped = d.book.skipDead(network, targets, time.Now()); len(targets) == 0 {
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
	return d.admitted(ctx, admitKey{path: path}, nil, func(deadline time.Time) (net.Conn, error) {
		if !deadline.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		nc, err := d.dialAddr(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		tc := trackUnix(nc)
		if d.book != nil {
			d.book.trackUnix(tc)
		}
		return tc, nil
	})
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
		conn, err := d.attempt(ctx, network, targets[0], nil)
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

	// The attempt delay runs from the latest attempt's admission: time
	// queued for a slot is not time the address failed to answer.
	delay := d.attemptDelay()
	timer := time.NewTimer(delay)
	timer.Stop()
	defer timer.Stop()
	admitted := make(chan int, len(targets)) // never blocks a sender
	armed := false
	errs := make([]error, len(targets))
	started, pending := 0, 0
	startNext := func() {
		i := started
		wg.Go(func() {
			conn, err := d.attempt(ctx, network, targets[i], func() { admitted <- i })
			outcomes <- attemptOutcome{index: i, conn: conn, err: err}
		})
		started++
		pending++
		armed = false
	}

	startNext()
	for pending > 0 {
		var tick <-chan time.Time
		if armed && started < len(targets) {
			tick = timer.C
		}
		select {
		case i := <-admitted:
			if i == started-1 {
				timer.Reset(delay)
				armed = true
			}
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
			armed = false
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

// attempt dials one address once admitted (onAdmit, if set, is told) and
// reports its outcome to the book.
func (d *Dialer) attempt(ctx context.Context, network string, target netip.AddrPort, onAdmit func()) (net.Conn, error) {
	return d.admitted(ctx, admitKey{addr: target}, onAdmit, func(deadline time.Time) (net.Conn, error) {
		return d.attemptBooked(ctx, network, target, deadline)
	})
}

func (d *Dialer) attemptBooked(ctx context.Context, network string, target netip.AddrPort, deadline time.Time) (net.Conn, error) {
	if d.book == nil {
		return d.attemptAddr(ctx, network, target, deadline)
	}
	connectCtx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	c := &connecting{abort: abort}
	d.book.attemptStarted(target)
	start := time.Now()
	var conn net.Conn
	err := d.book.connectStarted(target, c)
	if err == nil {
		conn, err = d.attemptAddr(connectCtx, network, target, deadline)
		d.book.connected(target, c)
	} else {
		abort(err)
	}
	var verdict *unreachableError
	if err != nil && errors.As(context.Cause(connectCtx), &verdict) && !contextDone(ctx) {
		// A dead verdict about target came while connect() ran
		// (abortConnectsLocked): failed as a dial begun after it.
		err = &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(target), Err: verdict}
	}
	if err != nil && callerEnded(ctx, err) {
		d.book.attemptAbandoned(target, time.Since(start) > d.attemptDelay())
		return nil, err
	}
	if tracked := d.book.attemptDone(target, conn, err); tracked != nil {
		conn = tracked
		if tc := trackedOf(tracked); tc != nil {
			tc.hearing(target)
		}
		if tc := trackedOf(tracked); tc != nil && watchesPeers && tc.peek != nil {
			tc.window, tc.keepIdle = d.settings.deadPeerWindow(), d.settings.keepIdleOf(tc.Conn)
			tc.watcher = d.book.watcher()
			tc.watcher.add(tc)
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

// attemptAddr connects to target by deadline (zero: none), the attempt's
// connect_timeout counted from its admission.
func (d *Dialer) attemptAddr(ctx context.Context, network string, target netip.AddrPort, deadline time.Time) (net.Conn, error) {
	timeout := d.settings.ConnectTimeout
	attemptCtx := ctx
	if !deadline.IsZero() {
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
	if !deadline.IsZero() && ctx.Err() == nil && !time.Now().Before(deadline) {
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

type noSkipKey struct{}

// NoSkip marks ctx as the connector's own background attempt's. Dials to a
// server the view judged dead fail at once for it too: the view's pulse,
// not each tenant, finds the server alive again (skipDead).
func NoSkip(ctx context.Context) context.Context {
	return context.WithValue(ctx, noSkipKey{}, true)
}

func noSkip(ctx context.Context) bool {
	v, _ := ctx.Value(noSkipKey{}).(bool)
	return v
}

// skipDead removes the addresses the view judges dead, recording an attempt
// for each: no dial (a caller's, the connector's, a cancel request) goes
// to a dead server until its pulse answers, so a thousand tenants send it
// one attempt per second between them. Each skip pokes the pulse (one
// left unstarted, or a refused server's attempt on demand).
func (b *Book) skipDead(network string, targets []netip.AddrPort, now time.Time) ([]netip.AddrPort, []AddrStats) {
	var skipped []AddrStats
	var dead []*server
	kept := targets[:0:0]
	b.mu.Lock()
	for _, t := range targets {
		var st *serverState
		if e := b.addrs[t]; e != nil && e.srv != nil {
			st = e.srv.load()
			if st.verdict.Dead() {
				dead = append(dead, e.srv)
			}
		}
		if st == nil || !st.verdict.Dead() {
			kept = append(kept, t)
			continue
		}
		skipped = append(skipped, AddrStats{Addr: t.String(), Status: "failed", Err: &net.OpError{
			Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(t),
			Err: &unreachableError{ago: now.Sub(st.since), cause: st.cause, verdict: st.verdict},
		}})
	}
	b.mu.Unlock()
	for _, s := range dead {
		b.view.poke(s)
	}
	return kept, skipped
}

// unreachableError is a skipped dial's reason. It is a timeout (as the dial
// it replaces would have been) and wraps cause.
type unreachableError struct {
	ago     time.Duration
	cause   error
	verdict Verdict
	// aborted: the dial was in connect() when the verdict came.
	aborted bool
}

func (e *unreachableError) Error() string {
	how := "evicted as unreachable"
	if e.verdict == VerdictRefused {
		how = "refused connections"
	}
	s := fmt.Sprintf("not dialled: %s %s ago", how, RoundDuration(e.ago))
	if e.aborted {
		s = "connect abandoned: " + how + " meanwhile"
	}
	if e.cause != nil {
		s += " (" + e.cause.Error() + ")"
	}
	return s
}

func (e *unreachableError) Unwrap() error   { return e.cause }
func (e *unreachableError) Timeout() bool   { return true }
func (e *unreachableError) Temporary() bool { return true }

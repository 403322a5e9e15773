package pgfast

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

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

package pgfast

import (
	"errors"
	"time"
)

// The core's side of an application's before-connect hook (a pgxpool's
// BeforeConnect): it may fail, and it may supply the credentials, which
// changes what a failed login means.

// beforeConnectError is the hook's failure: the attempt fails with it, but
// it says nothing about the server (no eviction, never permanent).
type beforeConnectError struct {
	err       error // the hook's error (scrubbed), or why it was abandoned
	abandoned bool  // the hook had not returned when the attempt's time ran out
}

func (e *beforeConnectError) Error() string {
	if e.abandoned {
		return "pgfast: BeforeConnect abandoned: " + e.err.Error()
	}
	return "pgfast: BeforeConnect: " + e.err.Error()
}

func (e *beforeConnectError) Unwrap() error { return e.err }

func hookFailed(err error) bool {
	var be *beforeConnectError
	return errors.As(err, &be)
}

// retryFreshCredential decides the first authentication failure (28P01,
// 28000) since the last success when a hook supplies the credentials: they
// may have been rotated, and the next attempt calls the hook again. The
// connector goes Down (not permanently) and one attempt starts at once; if
// that fails too, the permanent rule applies (n is then 2), so failed logins
// stay at most three a minute. It reports whether it took the failure.
func (c *Connector) retryFreshCredential(l *loop, pe *permanentError, n int) bool {
	h, ok := c.adapter.(interface{ hasBeforeConnect() bool })
	if !ok || !h.hasBeforeConnect() || n != 1 || !authFailure(pe) {
		return false
	}
	c.setState(StateDown, pe)
	now := time.Now()
	l.lastDemand = now // the retry serves callers too
	if l.inflight >= attemptLimit(c.cfg.ConnectTimeout) {
		l.next = now
		return true
	}
	// Started now, not at the loop's next turn: another attempt's failure
	// with the old credential in the same turn would push it out.
	l.next, l.lastAttempt = now.Add(l.bo.next()), now
	c.startAttempt(l, attemptBackground)
	return true
}

func authFailure(err error) bool {
	var coded interface{ SQLState() string }
	if !errors.As(err, &coded) {
		return false
	}
	code := coded.SQLState()
	return code == "28P01" || code == "28000"
}

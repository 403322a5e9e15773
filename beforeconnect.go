package pgfast

import (
	"errors"
	"time"
)

// The core's side of an application's hook that runs before each connection
// (a pgxpool's BeforeConnect; pgx_adapter.go runs it): it may fail, and it
// may supply the credentials, which changes what a failed login means
// (permanent.go).

// beforeConnectError is the failure of the application's before-connect
// hook: that attempt fails with it, but it says nothing about the server (no
// eviction, no change of state, never permanent), whatever it wraps.
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

// hookFailed reports whether err is an attempt's before-connect failure.
func hookFailed(err error) bool {
	var be *beforeConnectError
	return errors.As(err, &be)
}

// retryFreshCredential decides the first authentication failure (28P01,
// 28000) since the connector last succeeded, when a before-connect hook
// supplies the credentials: the credential may have expired or been rotated,
// and the next attempt calls the hook again, so that verdict does not hold
// back the attempts after it. The connector goes Down (not permanently:
// Ready keeps waiting, and no caller gets the verdict as final) and one
// attempt starts at once. If it fails too, the permanent rule applies from
// there (n is then 2: retries every permanentBackoff), so failed logins stay
// at most three in any minute. It reports whether it took the failure.
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
	// Started here, not at the loop's next turn: a failure of another
	// attempt with the old credential, applied in the same turn, would push
	// the next attempt out by permanentRetry.
	l.next, l.lastAttempt = now.Add(l.bo.next()), now
	c.startAttempt(l, attemptBackground)
	return true
}

// authFailure reports whether the server refused the login (SQLSTATE 28P01
// or 28000).
func authFailure(err error) bool {
	var coded interface{ SQLState() string }
	if !errors.As(err, &coded) {
		return false
	}
	code := coded.SQLState()
	return code == "28P01" || code == "28000"
}

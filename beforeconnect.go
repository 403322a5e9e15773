package pgfast

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The core's side of an application's connection hooks (a pgxpool's
// BeforeConnect, WithOpenDBOptions' and WithPQBeforeConnect's): they may
// fail, and a before-connect hook may supply the credentials, which changes
// what a failed login means.

// beforeConnectError is an application hook's failure: the attempt fails
// with it, but it says nothing about the server (no eviction, never
// permanent).
type beforeConnectError struct {
	err       error  // the hook's error (scrubbed), or why it was abandoned
	abandoned bool   // the hook had not returned when the attempt's time ran out
	hook      string // the hook's name; "" for BeforeConnect
}

func (e *beforeConnectError) Error() string {
	hook := e.hook
	if hook == "" {
		hook = "BeforeConnect"
	}
	if e.abandoned {
		return "pgfast: " + hook + " abandoned: " + e.err.Error()
	}
	return "pgfast: " + hook + ": " + e.err.Error()
}

func (e *beforeConnectError) Unwrap() error { return e.err }

// runBeforeHook runs an application's before-connect hook on work, the
// attempt's own copy of its configuration, before anything is dialled (so
// before the attempt takes an admission slot). The hook is bounded by ctx and
// bound (connect_timeout): one that ignores its context is abandoned, and
// what it writes afterwards goes to a copy nobody reads. It returns nil when
// the caller may use work. Its error is a *beforeConnectError, never evidence
// about the server, with every spelling of the passwords (the
// configuration's and the one the hook set, from secrets, asked only once
// the hook returned) scrubbed from its whole chain; a panic fails the
// attempt instead of ending the process from a goroutine the application
// never made.
func runBeforeHook[T any](ctx context.Context, bound time.Duration, hook func(context.Context, *T) error, work *T, secrets func() []string) error {
	hctx, cancel := ctx, context.CancelFunc(func() {})
	if bound > 0 {
		hctx, cancel = context.WithTimeoutCause(ctx, bound,
			fmt.Errorf("did not return within connect_timeout (%s): %w", bound, context.DeadlineExceeded))
	}
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panicked: %v", p)
			}
		}()
		done <- hook(hctx, work)
	}()
	var err error
	select {
	case err = <-done:
	case <-hctx.Done():
		select {
		case err = <-done: // it returned in time after all
		default:
			// work may still be the hook's: report only ctx's cause.
			return &beforeConnectError{err: context.Cause(hctx), abandoned: true}
		}
	}
	if err == nil {
		return nil
	}
	return &beforeConnectError{err: scrubError(err, spellingsOf(secrets()))}
}

// retryLogin makes a connection with login, and when a before-connect hook
// supplies the credentials (fresh) and the server refused them (28P01,
// 28000), logs in once more at once: the hook runs again and may return a
// fresh credential (a token that expired, a secret rotated since the hook's
// cache read it). So a caller's query, or a role verification, does not
// fail on a rotation's stale credential, and the core is told the outcome
// of the pair only: a cured failure is no evidence against the server, and
// the connector stays Ready. The loop's own attempts are not retried here:
// retryFreshCredential paces them (failed logins stay at most three a
// minute). Like any caller's dial, the two logins of a caller whose
// credential is wrong for good both fail.
//
// The second login dials only when the hook gives another user or password
// than the refused one: a hook that only orders the hosts
// (stdlib.RandomizeHostOrderFunc), or returns a cached token, costs the
// server no second failed login (the first refusal is returned).
func retryLogin(ctx context.Context, fresh bool, login func(context.Context) (driver.Conn, error)) (driver.Conn, error) {
	if !fresh || isLoopAttempt(ctx) {
		return login(ctx)
	}
	h := &hookCredential{}
	ctx = context.WithValue(ctx, hookCredentialKey{}, h)
	dc, err := login(ctx)
	if err == nil || !h.ran || ctx.Err() != nil || hookFailed(err) || !authFailure(err) {
		return dc, err
	}
	h.retry = true
	dc, err2 := login(ctx)
	if errors.Is(err2, errSameCredential) {
		return nil, err
	}
	return dc, err2
}

// hookCredential is what retryLogin's logins learn from the hook: the
// credential it gave the first login.
type hookCredential struct {
	ran   bool   // the first login's hook ran and returned
	cred  string // the user and password it gave
	retry bool   // the second login is running
}

type hookCredentialKey struct{}

// errSameCredential stops retryLogin's second login before it dials: the
// hook gave the credential the server just refused.
var errSameCredential = errors.New("pgfast: the before-connect hook gave the refused credential again")

// noteHookCredential tells retryLogin, through ctx, the credential the hook
// gave (user, pw). On the second login the refused one again fails it
// (errSameCredential) before any dial.
func noteHookCredential(ctx context.Context, user, pw string) error {
	h, _ := ctx.Value(hookCredentialKey{}).(*hookCredential)
	if h == nil {
		return nil
	}
	cred := user + "\x00" + pw
	if h.retry {
		if cred == h.cred {
			return &beforeConnectError{err: errSameCredential}
		}
		return nil
	}
	h.ran, h.cred = true, cred
	return nil
}

func hookFailed(err error) bool {
	var be *beforeConnectError
	return errors.As(err, &be)
}

// retryFreshCredential decides the first authentication failure (28P01,
// 28000) since the last success when a hook supplies the credentials: they
// may have been rotated, and the next attempt calls the hook again. One
// attempt starts at once; if that fails too, the permanent rule applies (n
// is then 2), so failed logins stay at most three a minute, plus those of
// callers dialling while the retry runs. A Ready connector stays Ready
// meanwhile: one login with a credential a rotation just revoked says
// nothing about the database, and going Down would fail every caller that
// needs a new connection (a pool's Acquire) where the raw driver's next
// login, with the hook's fresh credential, works. Otherwise it goes Down
// (not permanently). It reports whether it took the failure.
func (c *Connector) retryFreshCredential(l *loop, pe *permanentError, n int) bool {
	h, ok := c.adapter.(interface{ hasBeforeConnect() bool })
	if !ok || !h.hasBeforeConnect() || n != 1 || !authFailure(pe) {
		return false
	}
	if c.ready.current() != StateReady {
		c.setState(StateDown, pe)
	}
	now := time.Now()
	l.lastDemand = now // the retry serves callers too
	if l.inflight >= attemptLimit(c.cfg.ConnectTimeout) {
		l.next = now
		return true
	}
	// Started now, not at the loop's next turn: another attempt's failure
	// with the old credential in the same turn would push it out.
	l.next, l.lastAttempt = now.Add(l.bo.next()), now
	c.startAttempt(l, attemptFresh)
	l.freshRetry = l.flying[len(l.flying)-1]
	return true
}

// freshLoginKey marks a fresh-credential retry's context: a pool
// connector's attempt logs in itself instead of pinging a connection the
// pool may hold (a login that proves nothing about the new credential).
type freshLoginKey struct{}

// staleCredential takes an authentication failure, with a hook supplying
// the credentials, that arrives while the fresh-credential retry is in
// flight: the login read its credential before the retry's hook call did
// (logins queued for admission when a rotation revoked it, a pool's burst
// of new connections), so the retry's outcome decides, not this failure.
// Once the retry succeeded, such failures are older than that verification
// and the loop ignores them anyway (attemptFailed).
func (c *Connector) staleCredential(l *loop, pe *permanentError) bool {
	if l.freshRetry == nil {
		return false
	}
	if !slices.Contains(l.flying, l.freshRetry) {
		l.freshRetry = nil // landed: its own failure, and later ones, count
		return false
	}
	return authFailure(pe)
}

func authFailure(err error) bool {
	var coded interface{ SQLState() string }
	if !errors.As(err, &coded) {
		return false
	}
	code := coded.SQLState()
	return code == "28P01" || code == "28000"
}

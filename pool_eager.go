package pgfast

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
)

// With pool_min_conns or pool_min_idle_conns, pgxpool connects that many
// times as soon as it is made. The connector's first attempt takes the
// first of those connections instead of dialling one beside them: a raw
// pool makes MinConns logins, and so does NewPool (pgxpool's
// TestPoolBackgroundChecksMinConns and TestConnectEagerlyReachesMinPoolSize
// count them). The eager connects pass the pool's gate while the connector
// is Connecting: the attempt waits for them, so making them wait for the
// attempt would stall both until connect_timeout.

// eagerKey marks, in the context given to pgxpool.NewWithConfig, the
// connects pgxpool makes at construction (they keep its values).
type eagerKey struct{}

// eagerConnects tells the first attempt when the first eager connect ended,
// and how.
type eagerConnects struct {
	once  sync.Once
	ended chan struct{}
	err   error // the first eager connect's; read after ended is closed
	// spent: an attempt saw the first eager connect end. Later attempts
	// (after a Down) dial as usual: the eager login is history.
	spent atomic.Bool
}

// errEagerLogin is the first attempt's outcome when one of pgxpool's eager
// connects logged in: that login is the attempt's (its connect end already
// reported it as a caller's dial does), and nothing more is dialled.
var errEagerLogin = errors.New("pgfast: the pool's eager connect logged in")

// eagerFor returns ctx marked for pgxpool's eager connects, and their
// tracker, when pc makes any.
func eagerFor(ctx context.Context, pc *pgxpool.Config) (context.Context, *eagerConnects) {
	if max(pc.MinConns, pc.MinIdleConns) <= 0 {
		return ctx, nil
	}
	e := &eagerConnects{ended: make(chan struct{})}
	return context.WithValue(ctx, eagerKey{}, e), e
}

// isEager reports whether ctx is one of pgxpool's construction connects.
func isEager(ctx context.Context) bool { return ctx.Value(eagerKey{}) != nil }

// endEager notes that the eager connect of ctx ended with err (nil: its
// login completed, and the application's AfterConnect is left). Called after
// the end was reported to the connector: the attempt's result comes after.
func endEager(ctx context.Context, err error) {
	if e, ok := ctx.Value(eagerKey{}).(*eagerConnects); ok {
		e.once.Do(func() {
			e.err = err
			close(e.ended)
		})
	}
}

// await waits for the first eager connect; its outcome is the attempt's,
// which dials nothing of its own: errEagerLogin when it logged in, an
// *eagerFailedError when it failed (its connect end reported that failure
// as a caller's dial does, and the loop's next attempt dials at its pace).
// Once one attempt saw it end, await returns nil at once and the attempt
// dials as usual.
func (e *eagerConnects) await(ctx context.Context) error {
	if e.spent.Load() {
		return nil
	}
	select {
	case <-e.ended:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.spent.Store(true)
	if e.err != nil {
		return &eagerFailedError{err: e.err}
	}
	return errEagerLogin
}

// eagerFailedError is a first attempt's outcome when pgxpool's first eager
// connect failed: already reported, not to be counted again.
type eagerFailedError struct{ err error }

func (e *eagerFailedError) Error() string {
	return "pgfast: the pool's eager connect failed: " + e.err.Error()
}
func (e *eagerFailedError) Unwrap() error { return e.err }

// eagerOutcome reports whether err is an outcome await took from an eager
// connect.
func eagerOutcome(err error) bool {
	var f *eagerFailedError
	return err == errEagerLogin || errors.As(err, &f)
}

package pgfast

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// State is a connector's readiness.
type State int32

var _ fmt.Stringer = State(0)

// The connector's states: StateConnecting (no answer yet) → StateReady ⇄ StateDown; StateClosed.
const (
	StateConnecting State = iota
	StateReady
	StateDown
	StateClosed
)

// String returns "connecting", "ready", "down" or "closed".
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateReady:
		return "ready"
	case StateDown:
		return "down"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// readiness is the connector's state as a future: every change closes the
// current changed channel and makes a new one, so a waiter selects on it and
// on its own context, and never polls. Only the connector's goroutine sets it
// (or Close, for a connector that has none); anyone may read it.
type readiness struct {
	mu        sync.Mutex
	state     State
	cause     error
	permanent bool // the cause is an error waiting cannot fix (permanent.go)
	since     time.Time
	changed   chan struct{}
	changes   uint64
	cur       atomic.Int32 // state, for lock-free checks on hot paths
	// oks counts the verified connections the connector's goroutine has
	// recorded: an attempt marks it when it begins, and its failure is
	// older news than any verification recorded since (loop.go).
	oks atomic.Uint64
	// fails counts the times the state went Down: a connection in use
	// proves the server only by answering a request made since Down began
	// (internal/netx/checkout.go).
	fails atomic.Uint64
}

// attemptMark is what an attempt notes when it begins: the count of
// verified connections recorded then, plus one; 0 (unknown) is taken as
// current.
type attemptMark uint64

// mark is an attempt's mark as it begins.
func (r *readiness) mark() attemptMark { return attemptMark(r.oks.Load() + 1) }

// outdated reports whether a connection was verified after the attempt
// marked m began: its failure is older news.
func (r *readiness) outdated(m attemptMark) bool {
	return m != 0 && uint64(m) != r.oks.Load()+1
}

// verified records a verified connection (the connector's goroutine only).
func (r *readiness) verified() { r.oks.Add(1) }

// failures returns how many failures have been recorded.
func (r *readiness) failures() uint64 { return r.fails.Load() }

func newReadiness() *readiness {
	return &readiness{state: StateConnecting, since: time.Now(), changed: make(chan struct{})}
}

// load returns the state, a channel closed at the next change, and the cause
// recorded with the state.
func (r *readiness) load() (State, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state, r.changed, r.cause
}

// current returns the state without taking the lock.
func (r *readiness) current() State { return State(r.cur.Load()) }

// failedPermanently reports whether the state is StateDown for an error
// waiting cannot fix, and that error.
func (r *readiness) failedPermanently() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state == StateDown && r.permanent, r.cause
}

// set moves to state st with cause err (permanent: waiting cannot fix it). It
// reports whether the state changed; a StateClosed readiness never changes
// again. The cause is updated either way, and waiters are woken when only
// whether it is permanent changed.
func (r *readiness) set(st State, err error, permanent bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == StateClosed {
		return false
	}
	if st == StateDown && r.state != StateDown {
		// Only the start of Down counts: a connection that answered since
		// then proves the server, however many attempts failed meanwhile
		// (an attempt refused with 53300 says nothing about the sessions open).
		r.fails.Add(1) // before the state reads Down: a checkout that sees Down sees this failure
	}
	r.cause = err
	wasPermanent := r.permanent
	r.permanent = permanent && st == StateDown
	if r.state == st {
		if r.permanent != wasPermanent {
			r.wake()
		}
		return false
	}
	r.state = st
	r.cur.Store(int32(st))
	r.since = time.Now()
	r.changes++
	r.wake()
	return true
}

// wake tells the waiters something changed. The caller holds r.mu.
func (r *readiness) wake() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait blocks until the state is StateReady or StateClosed, the connector is
// down for an error waiting cannot fix, or ctx ends. It returns the final
// state seen and ctx's error when ctx ended the wait.
func (r *readiness) wait(ctx context.Context) (State, error) {
	for {
		r.mu.Lock()
		st, permanent, changed := r.state, r.permanent, r.changed
		r.mu.Unlock()
		if st == StateReady || st == StateClosed || permanent {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

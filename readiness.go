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
// changed channel and makes a new one, so waiters select on it and never
// poll. Only the connector's goroutine sets it (or Close, without one).
type readiness struct {
	mu        sync.Mutex
	state     State
	cause     error
	permanent bool // the cause is an error waiting cannot fix (permanent.go)
	since     time.Time
	changed   chan struct{}
	changes   uint64
	cur       atomic.Int32 // state, for lock-free checks on hot paths
	// oks counts verified connections: an attempt's failure is older news
	// than any verification since it began.
	oks atomic.Uint64
	// fails counts the times the state went Down: a connection in use
	// proves the server only by answering a request made since.
	fails atomic.Uint64
	// refusals counts the connector's attempts that failed while not Ready
	// on a server that answered or was busy (a slow or refusing server: no
	// state change): a caller waiting for that attempt gets its error.
	refusals atomic.Uint64
}

// attemptMark is the verified count when an attempt began, plus one; 0
// (unknown) is taken as current.
type attemptMark uint64

func (r *readiness) mark() attemptMark { return attemptMark(r.oks.Load() + 1) }

func (r *readiness) outdated(m attemptMark) bool {
	return m != 0 && uint64(m) != r.oks.Load()+1
}

func (r *readiness) verified() { r.oks.Add(1) }

func (r *readiness) failures() uint64 { return r.fails.Load() }

func newReadiness() *readiness {
	return &readiness{state: StateConnecting, since: time.Now(), changed: make(chan struct{})}
}

// load returns the state, a channel closed at the next change, and the cause.
func (r *readiness) load() (State, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state, r.changed, r.cause
}

func (r *readiness) current() State { return State(r.cur.Load()) }

// failedPermanently reports whether the state is StateDown for an error
// waiting cannot fix, and that error.
func (r *readiness) failedPermanently() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state == StateDown && r.permanent, r.cause
}

// set moves to st with cause err and reports whether the state changed;
// StateClosed is final. The cause is updated either way, and a change of
// only permanence wakes waiters too.
func (r *readiness) set(st State, err error, permanent bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == StateClosed {
		return false
	}
	if st == StateDown && r.state != StateDown {
		// Only the start of Down counts: a connection that answered since
		// proves the server, however many attempts failed (53300 says
		// nothing about open sessions).
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

// refused records the failure err of an attempt on a slow or refusing
// server: the state stays, err becomes the cause (unless Ready or a
// permanent one stands), and waiters wake to see refusals moved.
func (r *readiness) refused(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == StateClosed {
		return
	}
	if r.state != StateReady && !r.permanent {
		r.cause = err
	}
	r.refusals.Add(1)
	r.wake()
}

func (r *readiness) wake() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait blocks until Ready or Closed, a permanent Down, or ctx ends. It
// returns the last state seen and ctx's error if ctx ended the wait.
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

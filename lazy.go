package pgfast

import (
	"context"
	"sync"
	"time"
)

// State is a connector's readiness.
type State int32

// The connector's states: StateConnecting (no answer yet) → StateReady ⇄ StateDown; StateClosed.
const (
	StateConnecting State = iota
	StateReady
	StateDown
	StateClosed
)

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
// on its own context, and never polls.
type readiness struct {
	mu      sync.Mutex
	state   State
	cause   error
	since   time.Time
	changed chan struct{}
	changes uint64
}

func newReadiness() *readiness {
	return &readiness{state: StateConnecting, since: time.Now(), changed: make(chan struct{})}
}

// load returns the state, the cause recorded with it, and a channel closed at
// the next change.
func (r *readiness) load() (State, error, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state, r.cause, r.changed
}

// set moves to state st with cause err. It reports whether the state changed;
// a StateClosed readiness never changes again. The cause is updated either way.
func (r *readiness) set(st State, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == StateClosed {
		return false
	}
	r.cause = err
	if r.state == st {
		return false
	}
	r.state = st
	r.since = time.Now()
	r.changes++
	close(r.changed)
	r.changed = make(chan struct{})
	return true
}

// wait blocks until the state is StateReady or StateClosed, or ctx ends. It returns the
// final state seen.
func (r *readiness) wait(ctx context.Context) (State, error) {
	for {
		st, _, changed := r.load()
		if st == StateReady || st == StateClosed {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

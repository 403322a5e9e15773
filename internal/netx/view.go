package netx

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing" // testing.Testing: a connector made inside a synctest bubble gets a private view (InBubble)
	"time"
)

// Verdict is the view's host-level judgment of one server (one resolved
// address): alive, or dead and why.
type Verdict uint8

const (
	// VerdictAlive: nothing host-level is known against the server, or its pulse
	// answered since.
	VerdictAlive Verdict = iota
	// VerdictSilent: a socket's peer sent nothing for the dead-peer window.
	VerdictSilent
	// VerdictUnreachable: no route to the host (EHOSTUNREACH, ENETUNREACH).
	VerdictUnreachable
	// VerdictRefused: the host answers with a reset (cheap to ask again).
	VerdictRefused
)

// Dead reports whether v is one of the dead verdicts.
func (v Verdict) Dead() bool { return v != VerdictAlive }

func (v Verdict) String() string {
	switch v {
	case VerdictSilent:
		return "dead (silent)"
	case VerdictUnreachable:
		return "dead (unreachable)"
	case VerdictRefused:
		return "dead (refused)"
	}
	return "alive"
}

// verdictOf says which dead verdict a host-level cause stands for.
func verdictOf(cause error) Verdict {
	switch {
	case errors.Is(cause, syscall.ECONNREFUSED):
		return VerdictRefused
	case errors.Is(cause, syscall.EHOSTUNREACH), errors.Is(cause, syscall.ENETUNREACH):
		return VerdictUnreachable
	}
	return VerdictSilent
}

// serverState is one immutable verdict of a server; dials read it without a
// lock (server.state).
type serverState struct {
	verdict Verdict
	epoch   uint64 // bumped by every change of verdict
	since   time.Time
	cause   error // what made it dead; nil when alive
}

var aliveState = &serverState{}

// server is the view's entry for one address.
type server struct {
	addr  netip.AddrPort
	state atomic.Pointer[serverState]

	// Guarded by View.mu:
	subs map[*Book]struct{} // the books that resolved the address
	// pulse is the running pulse (pulse.go), nil when none.
	pulse *pulse
	// connectTimeout is the longest connect_timeout among the subscribers
	// (every 8th pulse attempt waits that long).
	connectTimeout time.Duration
}

func (s *server) load() *serverState { return s.state.Load() }

// View is a table of servers keyed by resolved address, with each one's
// host-level verdict and the books (tenants) that use it. A verdict any
// book reaches is recorded here and fanned out to every other subscribed
// book, which shuts its sockets to the address down and tells its
// connector; while a server is dead only its pulse connects to it.
//
// The process has one shared view (SharedView); a connector with sharing
// off, or made inside a synctest bubble, has a private one (NewView), with
// the same code scoped to its own book.
//
// Locks: View.mu is a leaf. Books take it under their own mutex
// (subscribe, unsubscribe); the view never calls a book, a dial or a
// callback while holding it. No goroutine is resident: the fan-out runs on
// a drain started when there is work, which exits when its queue is empty,
// and a pulse runs only while its server is dead and used.
type View struct {
	mu       sync.Mutex
	servers  map[netip.AddrPort]*server
	queue    []fanout
	draining bool

	// shared: the process-wide view, which a bubble goroutine must never
	// start work for (InBubble).
	shared bool
	// watcher watches the sockets of this view's books for a silent peer.
	watcher *peerWatcher
	// pulses counts pulse connection attempts (tests, the fault suite).
	pulses atomic.Int64
	// verdicts counts dead verdicts recorded.
	verdicts atomic.Int64
	// firstDead is the time of the first dead verdict (UnixNano; 0: none).
	firstDead atomic.Int64
	// pulseDial dials one pulse attempt (tests replace it).
	pulseDial pulseDialFunc
	// running counts the view's goroutines (drain, pulses, attempts), so
	// tests can wait for them.
	running sync.WaitGroup
}

// fanout is one verdict change to apply to the subscribers it lists.
type fanout struct {
	s     *server
	state *serverState
	subs  []*Book
}

var sharedView = &View{servers: make(map[netip.AddrPort]*server), shared: true, watcher: deadPeers, pulseDial: dialPulse}

// SharedView returns the process-wide view.
func SharedView() *View { return sharedView }

// NewView returns an empty private view. Its books' sockets are watched by
// the process's dead-peer watcher (whose evictions go to each socket's own
// book), except inside a synctest bubble, where the view has a watcher of
// its own so no goroutine outside the bubble looks at its sockets.
func NewView() *View {
	w := deadPeers
	if InBubble() {
		w = newPeerWatcher()
	}
	return &View{servers: make(map[netip.AddrPort]*server), watcher: w, pulseDial: dialPulse}
}

// bubbleEpoch: a testing/synctest bubble's clock starts at 2000-01-01 UTC.
var bubbleEpoch = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// InBubble reports whether the calling goroutine runs inside a
// testing/synctest bubble: only in a test binary, where a clock before 2001
// is the bubble's fake one (the only thing a bubble lets one observe).
// Production binaries never take this path.
func InBubble() bool { return testing.Testing() && time.Now().Before(bubbleEpoch) }

// ViewStats is a view's counters.
type ViewStats struct {
	Servers  int       // entries in the table
	Verdicts int64     // dead verdicts recorded
	Pulses   int64     // pulse connection attempts started
	First    time.Time // the first dead verdict (zero: none)
}

// Stats returns v's counters.
func (v *View) Stats() ViewStats {
	v.mu.Lock()
	n := len(v.servers)
	v.mu.Unlock()
	st := ViewStats{Servers: n, Verdicts: v.verdicts.Load(), Pulses: v.pulses.Load()}
	if ns := v.firstDead.Load(); ns != 0 {
		st.First = time.Unix(0, ns)
	}
	return st
}

// Verdict returns addr's verdict, VerdictAlive when unknown.
func (v *View) Verdict(addr netip.AddrPort) Verdict {
	v.mu.Lock()
	s := v.servers[unmapped(addr)]
	v.mu.Unlock()
	if s == nil {
		return VerdictAlive
	}
	return s.load().verdict
}

func unmapped(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// subscribe adds b to addr's server, creating it. The caller may hold b.mu
// (View.mu is a leaf).
func (v *View) subscribe(addr netip.AddrPort, b *Book) *server {
	addr = unmapped(addr)
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.servers[addr]
	if s == nil {
		s = &server{addr: addr, subs: make(map[*Book]struct{})}
		s.state.Store(aliveState)
		v.servers[addr] = s
	}
	s.subs[b] = struct{}{}
	s.connectTimeout = max(s.connectTimeout, b.connectTimeout)
	return s
}

// others lists the books other than except that resolved addr: their
// sockets vouch for the path too before a verdict every one of them would
// pay for (verdict.go's peersOf).
func (v *View) others(addr netip.AddrPort, except *Book) []*Book {
	addr = unmapped(addr)
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.servers[addr]
	if s == nil {
		return nil
	}
	out := make([]*Book, 0, len(s.subs))
	for b := range s.subs {
		if b != except {
			out = append(out, b)
		}
	}
	return out
}

// unsubscribe removes b from s, and s from the table once nothing uses it
// (no subscriber, no pulse): the table never grows with address churn.
func (v *View) unsubscribe(s *server, b *Book) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(s.subs, b)
	v.forgetLocked(s)
}

func (v *View) forgetLocked(s *server) {
	if len(s.subs) == 0 && s.pulse == nil && v.servers[s.addr] == s {
		delete(v.servers, s.addr)
	}
}

// dead records a host-level verdict that book from reached about s (it
// shuts its own sockets down right after: a dial their drivers make on
// the way out must already see s dead) and fans it out to every other
// subscriber. A server already dead changes nothing.
func (v *View) dead(s *server, cause error, from *Book) {
	now := time.Now()
	v.mu.Lock()
	old := s.load()
	if old.verdict.Dead() || v.servers[s.addr] != s {
		v.mu.Unlock()
		return
	}
	st := &serverState{verdict: verdictOf(cause), epoch: old.epoch + 1, since: now, cause: cause}
	s.state.Store(st)
	subs := make([]*Book, 0, len(s.subs))
	for b := range s.subs {
		if b != from {
			subs = append(subs, b)
		}
	}
	v.verdicts.Add(1)
	v.firstDead.CompareAndSwap(0, now.UnixNano())
	startDrain := v.enqueueLocked(fanout{s: s, state: st, subs: subs})
	p := v.pulseLocked(s)
	v.mu.Unlock()
	v.start(startDrain, p)
}

// alive lifts s's dead verdict (its pulse got a byte of PostgreSQL) and
// tells every subscriber to try at once.
func (v *View) alive(s *server) {
	v.mu.Lock()
	old := s.load()
	if !old.verdict.Dead() {
		v.mu.Unlock()
		return
	}
	st := &serverState{verdict: VerdictAlive, epoch: old.epoch + 1, since: time.Now()}
	s.state.Store(st)
	subs := make([]*Book, 0, len(s.subs))
	for b := range s.subs {
		subs = append(subs, b)
	}
	startDrain := v.enqueueLocked(fanout{s: s, state: st, subs: subs})
	v.mu.Unlock()
	v.start(startDrain, nil)
}

// enqueueLocked queues f and reports whether the caller must start a drain.
func (v *View) enqueueLocked(f fanout) bool {
	if len(f.subs) > 0 {
		v.queue = append(v.queue, f)
	}
	if v.draining || len(v.queue) == 0 {
		return false
	}
	v.draining = true
	return true
}

// start runs a drain and a pulse the caller claimed. A bubble goroutine
// starts nothing for the shared view (its goroutines and timers would
// belong to the bubble): the drain runs inline, the pulse is left to the
// next dial from outside (poke).
func (v *View) start(drain bool, p *pulse) {
	if v.shared && InBubble() {
		if drain {
			v.drain()
		}
		if p != nil {
			v.mu.Lock()
			if p.s.pulse == p {
				p.s.pulse = nil
				v.forgetLocked(p.s)
			}
			v.mu.Unlock()
		}
		return
	}
	if drain {
		v.running.Add(1)
		go func() {
			defer v.running.Done()
			v.drain()
		}()
	}
	if p != nil {
		v.running.Add(1)
		go func() {
			defer v.running.Done()
			v.runPulse(p)
		}()
	}
}

// drain applies queued fan-outs until the queue is empty. It never blocks
// and runs no user code: each book shuts sockets down and posts to its
// connector.
func (v *View) drain() {
	for {
		v.mu.Lock()
		q := v.queue
		v.queue = nil
		if len(q) == 0 {
			v.draining = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		for _, f := range q {
			if f.s.load() != f.state {
				continue // superseded (dead, then alive again) before it was applied
			}
			for _, b := range f.subs {
				if f.state.verdict.Dead() {
					b.sharedDead(f.s, f.state.cause)
				} else {
					b.sharedAlive(f.s)
				}
			}
		}
	}
}

// Wait waits until the view's goroutines have ended (tests): drains and
// pulses end once their work is done.
func (v *View) Wait() { v.running.Wait() }

// errSharedVerdict marks an eviction on another tenant's verdict.
var errSharedVerdict = errors.New("pgfast: another connector of this process found the server dead")

// sharedCause is the cause a book records for a verdict it was told about.
type sharedCause struct{ cause error }

func (e *sharedCause) Error() string {
	return errSharedVerdict.Error() + ": " + e.cause.Error()
}

func (e *sharedCause) Unwrap() []error { return []error{errSharedVerdict, e.cause} }

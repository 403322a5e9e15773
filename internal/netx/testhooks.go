package netx

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// This file's exports are for the root package's tests only.

// WatchedSockets returns how many sockets the process's dead-peer watcher has.
func WatchedSockets() int {
	deadPeers.mu.Lock()
	defer deadPeers.mu.Unlock()
	return len(deadPeers.socks)
}

// WatcherDone returns the done channel of the running watcher goroutine, or
// nil when none runs.
func WatcherDone() <-chan struct{} { return deadPeers.running() }

// ShutDown shuts nc, pgfast's socket, down as an eviction does.
func ShutDown(nc net.Conn) {
	if tc := trackedOf(nc); tc != nil {
		tc.shutdown()
	}
}

// Doomed reports whether nc, pgfast's socket, is to be dropped at its next checkout.
func Doomed(nc net.Conn) bool {
	tc := trackedOf(nc)
	return tc != nil && tc.doomed.Load()
}

// NewTestSocket wraps nc as pgfast's socket with an empty book of its own.
func NewTestSocket(nc net.Conn) net.Conn { return &trackedConn{Conn: nc, book: NewBook(nil)} }

// AttemptTimeout returns the error of an attempt connect_timeout ended.
func AttemptTimeout(after time.Duration) error { return &attemptTimeoutError{after: after} }

// HoldAdmission takes every free admission slot of address (ip:port) in
// the process's table, as startups that never end, until release.
func HoldAdmission(address string) (release func()) {
	key := admitKey{addr: netip.MustParseAddrPort(address)}
	var held []*slot
	for {
		s, _ := admissions.enter(&Login{}, key, 0, true)
		if s == nil {
			break
		}
		s.settle(nil, nil) // connected: startups the server works on, not unanswered SYNs
		held = append(held, s)
	}
	return func() {
		for _, s := range held {
			admissions.release(s, sigNone)
		}
	}
}

// AdmissionLimit returns the slots address (ip:port) has in the process's
// table (the initial limit before its first startup).
func AdmissionLimit(address string) int {
	key := admitKey{addr: netip.MustParseAddrPort(address)}
	admissions.mu.Lock()
	defer admissions.mu.Unlock()
	if g := admissions.gates[key]; g != nil {
		return g.capacity()
	}
	return admitStart
}

// AdmissionPeaks is what TraceAdmission saw of one address's gate.
type AdmissionPeaks struct {
	Held   int // most slots held at once
	Limit  int // the highest limit an admission saw
	Silent int // startups admitted over the limit (the gate's silent mode)
}

// TraceAdmission records every admission to address (ip:port) in the
// process's table until stop. A limit sampled from outside misses the
// peaks between samples: the limit grows by one per fast login and drops
// by a tenth on a slow one.
func TraceAdmission(address string) (stop func() AdmissionPeaks) {
	key := admitKey{addr: netip.MustParseAddrPort(address)}
	var p AdmissionPeaks
	admissions.mu.Lock()
	admissions.admitting = func(g *gate) {
		if admissions.gates[key] != g {
			return
		}
		p.Held = max(p.Held, len(g.held)+1)
		p.Limit = max(p.Limit, g.capacity())
		if len(g.held) >= g.capacity() {
			p.Silent++
		}
	}
	admissions.mu.Unlock()
	return func() AdmissionPeaks {
		admissions.mu.Lock()
		defer admissions.mu.Unlock()
		admissions.admitting = nil
		return p
	}
}

// IsBad reports whether addr is to be tried last (evicted or failing).
func (b *Book) IsBad(addr netip.AddrPort) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.isBad(addr)
}

// Track records a successful attempt to addr that made nc, as the dialer does.
func (b *Book) Track(addr netip.AddrPort, nc net.Conn) net.Conn {
	b.attemptStarted(addr)
	return b.attemptDone(addr, nc, nil)
}

// Evict evicts nc's address generation: down as host-level evidence, else as
// old evidence found at checkout. It reports whether it evicted.
func Evict(nc net.Conn, cause error, down bool) bool {
	tc := trackedOf(nc)
	if tc == nil || tc.book == nil {
		return false
	}
	how := evictStale
	if down {
		how = evictDead
	}
	return tc.book.evict(tc.addr, tc.gen, cause, how)
}

// Evicted reports whether nc, pgfast's socket, was shut down by an eviction.
func Evicted(nc net.Conn) bool {
	tc := trackedOf(nc)
	return tc != nil && tc.evicted.Load()
}

// Number returns g's generation number (for test logs).
func (g Gen) Number() uint64 { return g.gen }

// SocketState is the liveness check on nc: alive, or dead and why.
func SocketState(nc net.Conn) (bool, error) { return socketState(nc) }

// IsNoSkip reports whether ctx was marked by NoSkip.
func IsNoSkip(ctx context.Context) bool { return noSkip(ctx) }

// Verifying reports whether a role verification of addr is running.
func (b *Book) Verifying(addr netip.AddrPort) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.addrs[addr]
	return e != nil && e.verify
}

// CanPeek reports whether this build has the checkout's peek.
const CanPeek = canPeek

// WatchesPeers reports whether this build runs the dead-peer watcher.
const WatchesPeers = watchesPeers

// EvictDead evicts nc's address as the dead-peer watcher does on a silent
// peer (a host-level verdict), which the view shares.
func EvictDead(nc net.Conn) bool {
	tc := trackedOf(nc)
	if tc == nil {
		return false
	}
	return tc.book.evict(tc.addr, tc.gen, &peerSilentError{silent: DefaultDeadPeerWindow, window: DefaultDeadPeerWindow}, evictDead)
}

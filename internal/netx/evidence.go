package netx

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"weak"
)

// The process-wide "last PostgreSQL byte per address" clock (issue 19 item 3,
// docs/design/fleet.md §3.6). A login whose TCP handshake completed and that
// then timed out without a byte from the server is either a frozen server
// (SIGSTOP: its kernel still completes handshakes) or a busy one (forking
// hundreds of backends). A busy server answers someone: if any socket of the
// process to that address read a byte since this login's handshake, the
// server is slow, not dead. (Stage S6's view may absorb this clock into its
// per-server evidence.)
//
// The read path costs no clock read and, in steady use, no store: each
// address's cell has an epoch that only handshakes advance (a mark), and a
// Read copies the current epoch into the cell's heard word when it differs.
// "Heard since the mark m" is then heard ≥ m. A straggling Read may store an
// older epoch over a newer one; that only makes the answer "not heard", the
// conservative side (the login's failure counts as today).
//
// The table holds only mutex-guarded plain data and weak pointers, so it is
// safe from inside testing/synctest bubbles: nothing in it belongs to one.

// heardCell is one address's clock.
type heardCell struct {
	epoch atomic.Uint64 // advanced by mark (a handshake to the address)
	heard atomic.Uint64 // the epoch current when a byte was last read
}

// read records a byte read from the cell's address.
func (c *heardCell) read() {
	if e := c.epoch.Load(); c.heard.Load() != e {
		c.heard.Store(e)
	}
}

// mark starts a period: heardSince(mark()) reports a byte read after it.
func (c *heardCell) mark() uint64 { return c.epoch.Add(1) }

func (c *heardCell) heardSince(m uint64) bool { return c.heard.Load() >= m }

// heardCells maps each address to its cell, held weakly: sockets (and the
// logins being judged) hold their cell, so a cell lives while anything can
// still read from or ask about its address.
var heardCells struct {
	mu    sync.Mutex
	m     map[netip.AddrPort]weak.Pointer[heardCell]
	sweep int // the map's size after the last sweep of collected cells
}

// heardCellFor returns addr's cell, making it.
func heardCellFor(addr netip.AddrPort) *heardCell {
	heardCells.mu.Lock()
	defer heardCells.mu.Unlock()
	if c := heardCells.m[addr].Value(); c != nil {
		return c
	}
	if heardCells.m == nil {
		heardCells.m = make(map[netip.AddrPort]weak.Pointer[heardCell])
	}
	if len(heardCells.m) >= 2*heardCells.sweep+64 {
		for a, p := range heardCells.m {
			if p.Value() == nil {
				delete(heardCells.m, a)
			}
		}
		heardCells.sweep = len(heardCells.m)
	}
	c := &heardCell{}
	heardCells.m[addr] = weak.Make(c)
	return c
}

// hearing attaches addr's clock to tc, marking tc's handshake.
func (tc *trackedConn) hearing(addr netip.AddrPort) {
	tc.heard = heardCellFor(addr)
	tc.heardMark = tc.heard.mark()
}

// Answered reports whether nc, pgfast's socket (possibly under TLS), read a
// byte from its server: the server process spoke (a completed handshake
// alone does not say so; a frozen server's kernel completes them).
func Answered(nc net.Conn) bool {
	tc := trackedOf(nc)
	return tc != nil && tc.recent.reads.Load() > 0
}

// AddrHeardSince reports whether any socket of the process to nc's address
// read a byte from it since nc's handshake: a server that answered anyone
// meanwhile is busy, not frozen. False for a socket without an address.
func AddrHeardSince(nc net.Conn) bool {
	tc := trackedOf(nc)
	return tc != nil && tc.heard != nil && tc.heard.heardSince(tc.heardMark)
}

package pgfast

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/netx"
)

// Drain replaces every connection of db (a *sql.DB using "pgfast" or
// "pgfast-pq") or of pool (made by NewPool or NewPoolWithConfig) gracefully,
// for a planned switchover or after rotating credentials or certificates:
// idle connections are closed now, connections in use when they are next
// released or checked out, warm ones (pgfast_min_conns) at once; no caller
// gets an error and no statement runs twice. The host names are looked up
// again first, so the replacements go where DNS points now, and each new
// connection runs the BeforeConnect hook (fresh credentials) as every
// connection does.
//
// Drain returns nil once every connection that existed when it was called
// is closed; replacements are made as callers need them (pgfast_min_conns
// at once, pgxpool's MinConns at the pool's next health check). When ctx ends first it returns an
// error wrapping ctx's saying how many are left (a connection held the whole
// time, a long transaction). Nothing runs on after it returns, but the
// connections left stay marked: a pool destroys them on release, pgfast-pq
// closes them on release, and pgfast (pgx) refuses them at a checkout when
// the *sql.DB has no SetMaxOpenConns limit (with one, a later Drain retires
// them). After Close it returns ErrClosed at once; for a *sql.DB that does
// not use pgfast it returns an error, and for a pool NewPool did not make it
// calls pool.Reset and returns nil.
//
// Drain is a function of the *sql.DB, beside Ready, rather than a method of
// the Connector: the connector does not see database/sql's idle
// connections, and Drain closes them through db itself (a checkout of its
// own, which takes each one off the idle list as no caller could). For a
// pool it builds on pgxpool's Reset.
func Drain[P *sql.DB | *pgxpool.Pool](ctx context.Context, p P) error {
	switch x := any(p).(type) {
	case *sql.DB:
		if x == nil {
			return errDrainNotPgfast
		}
		c := ConnectorOf(x)
		if c == nil {
			return errDrainNotPgfast
		}
		return c.replaceAll(ctx, x, nil)
	case *pgxpool.Pool:
		if x == nil {
			return nil
		}
		c := PoolConnector(x)
		if c == nil {
			x.Reset() // raw pgxpool's own drain; nothing to wait on
			return nil
		}
		return c.replaceAll(ctx, nil, x)
	}
	return nil
}

var errDrainNotPgfast = errors.New("pgfast: Drain: the *sql.DB does not use pgfast (sql.Open with \"pgfast\" or \"pgfast-pq\", or sql.OpenDB with a pgfast Connector)")

// drainTick is how often Drain looks at what is left and takes database/sql's
// idle connections again.
const drainTick = 20 * time.Millisecond

// drainMarks is what a checkout needs to know about the latest Drain
// (Connector.retiring).
type drainMarks struct {
	db *sql.DB // nil for a pool
}

// drainKey marks the context of Drain's own checkouts: they always refuse a
// retired connection (Drain retries, no caller waits on it).
type drainKey struct{}

// callersMayRefuse reports whether a caller's checkout may refuse a retired
// connection with driver.ErrBadConn. database/sql retries a refused checkout
// twice on its idle list, then opens a new connection; only with a
// SetMaxOpenConns limit does that third try wait for a connection another
// caller releases, which pgx (no driver.Validator) hands over unchecked, so
// a refusal there would reach the caller. Without a limit there are no such
// hand-overs: every checkout that can be refused is one of the first two.
// pgxpool tries another connection after a refused PrepareConn, up to
// MaxConns + 1 times in one Acquire.
func (m *drainMarks) callersMayRefuse() bool {
	return m.db == nil || m.db.Stats().MaxOpenConnections == 0
}

// refusesRetired is the checkout's part of a drain: a retired connection is
// refused where the refusal cannot reach a caller (callersMayRefuse), and
// always at Drain's own checkouts. Without a drain it costs one atomic load.
func (c *Connector) refusesRetired(ctx context.Context, nc net.Conn) bool {
	m := c.retiring.Load()
	if m == nil || !netx.Retired(nc) {
		return false
	}
	return ctx.Value(drainKey{}) != nil || m.callersMayRefuse()
}

// replaceAll is Drain for c, with db or pool its front end.
func (c *Connector) replaceAll(ctx context.Context, db *sql.DB, pool *pgxpool.Pool) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	// Names first, so that no replacement dials an address DNS dropped;
	// the sockets taken before too: a dropped address's are doomed and
	// leave the book's current generation, but Drain waits for them.
	before := c.book.Sockets()
	c.recheckNames(ctx)
	c.retiring.Store(&drainMarks{db: db})
	left := c.book.Sockets()
	for _, nc := range before {
		if !slices.Contains(left, nc) {
			left = append(left, nc)
		}
	}
	total := len(left)
	for _, nc := range left {
		netx.Retire(nc)
	}
	c.dropRetiredWarm()
	if pool != nil {
		pool.Reset() // idle ones closed now, those in use destroyed on release
	}
	tick := time.NewTicker(drainTick)
	defer tick.Stop()
	for {
		if db != nil {
			takeIdle(ctx, db)
		}
		c.dropRetiredWarm()
		left = stillOpen(left)
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgfast: Drain: %d of %d connections not replaced yet (each still goes when next released or checked out where that is safe): %w",
				len(stillOpen(left)), total, context.Cause(ctx))
		case <-c.ctx.Done():
			return ErrClosed
		case <-tick.C:
		}
	}
}

func stillOpen(socks []net.Conn) []net.Conn {
	out := socks[:0]
	for _, nc := range socks {
		if !netx.Gone(nc) {
			out = append(out, nc)
		}
	}
	return out
}

// takeIdle takes db's idle connections with checkouts of Drain's own, which
// refuse the retired ones (database/sql closes them and takes the next);
// the others are held until the pass ends, so the next checkout reaches
// deeper into the idle list, then given back. With db at its
// SetMaxOpenConns limit and nothing idle, it waits briefly for a connection
// a caller releases: with pgx, that is where a retired one in steady use
// can be caught.
func takeIdle(ctx context.Context, db *sql.DB) {
	st := db.Stats()
	n := st.Idle
	wait := time.Duration(0)
	if n == 0 && st.MaxOpenConnections > 0 && st.OpenConnections >= st.MaxOpenConnections {
		n, wait = 1, drainTick
	}
	if n == 0 {
		return
	}
	dctx := context.WithValue(ctx, drainKey{}, struct{}{})
	if wait > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(dctx, wait)
		defer cancel()
	}
	var held []*sql.Conn
	defer func() {
		for _, conn := range held {
			_ = conn.Close()
		}
	}()
	for range n {
		if wait == 0 && db.Stats().Idle == 0 {
			return // callers took the rest: no new connection for nothing
		}
		conn, err := db.Conn(dctx)
		if err != nil {
			return
		}
		held = append(held, conn)
	}
}

// dropRetiredWarm closes the warm connections a drain retired (those made
// before it, or by an attempt in flight when it began) and has the loop make
// new ones.
func (c *Connector) dropRetiredWarm() {
	c.mu.Lock()
	var drop []driver.Conn
	keep := c.warm[:0]
	for _, dc := range c.warm {
		if nc := c.adapter.socket(dc); nc != nil && netx.Retired(nc) {
			drop = append(drop, dc)
		} else {
			keep = append(keep, dc)
		}
	}
	clear(c.warm[len(keep):])
	c.warm = keep
	c.mu.Unlock()
	for _, dc := range drop {
		_ = dc.Close()
	}
	if len(drop) > 0 {
		c.post(event{kind: evRewarm})
	}
}

// recheckNames looks every host name up now and forgets the addresses DNS
// no longer lists (their sockets are doomed, as a scheduled recheck does:
// dnsrecheck.go), whatever pgfast_dns_recheck says: a drain for a
// switchover must not wait for the next recheck. Each lookup is bounded by
// ctx and 2 s; a failed one proves nothing and changes nothing.
func (c *Connector) recheckNames(ctx context.Context) {
	for _, h := range c.cfg.Hosts {
		if h.Addr != "" || h.Host == "" || isUnixHost(h.Host) || isIPLiteral(h.Host) {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, drainLookupBound)
		ips, err := c.resolver.LookupNetIP(lctx, "ip", h.Host)
		cancel()
		if err != nil || len(ips) == 0 {
			continue
		}
		current := make(map[netip.Addr]bool, len(ips))
		for _, ip := range ips {
			current[ip.Unmap()] = true
		}
		c.book.ForgetMoved(h.Host, h.Port, current, fmt.Errorf("DNS no longer lists it for %s", h.Host))
	}
}

const drainLookupBound = 2 * time.Second

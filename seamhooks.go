package pgfast

import (
	"context"
	"database/sql/driver"
	"net"
	"net/netip"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// connectorCore is the Connector's side of the adapter seam.
type connectorCore struct {
	c *Connector
	// dialFn: the dialer, recording a lib/pq Connect's sockets and a
	// login's (witnessing), paused once Close abandoned the attempt
	// (closedPause).
	dialFn dialFunc
}

var _ core = (*connectorCore)(nil)

func (c *Connector) newCore(d *netx.Dialer) *connectorCore {
	return &connectorCore{c: c, dialFn: c.closedPause(witnessing(recording(d.DialContext)))}
}

func (k *connectorCore) config() *Config { return k.c.cfg }

func (k *connectorCore) platform() platform { return k.c.plat }

func (k *connectorCore) dial(ctx context.Context, network, address string) (net.Conn, error) {
	return k.dialFn(ctx, network, address)
}

func (k *connectorCore) checkout(ctx context.Context, nc net.Conn) error {
	return k.c.verifiedCheckout(ctx, nc)
}

func (k *connectorCore) alive(nc net.Conn) bool { return netx.Alive(nc) }

func (k *connectorCore) onError(nc net.Conn, err error) { k.c.onBackendError(nc, err) }

func (k *connectorCore) ignoresErrors() bool { return k.c.ignoresBackendErrors() }

func (k *connectorCore) checkRole(nc net.Conn, params serverParams) error {
	if params == nil {
		return nil
	}
	return k.c.checkRole(nc, params)
}

func (k *connectorCore) orderHosts(hosts []HostPort) []int {
	return orderHosts(k.c.book, hosts, k.c.cfg.LoadBalanceHosts == "random")
}

func orderHosts(b *netx.Book, hosts []HostPort, random bool) []int {
	return b.OrderHosts(len(hosts), func(i int) (string, uint16) { return hostKey(hosts[i]), hosts[i].Port }, random)
}

const closedDialPause = time.Second

// closedPause makes dials whose context ended after Close fail without
// dialling: at once while Close waits (so an attempt walking its host list
// ends promptly), after a pause once Close abandoned them, as a backend
// ignoring its context would otherwise spin a CPU for ever. Other dials (a
// cancel for a connection in use) are untouched.
func (c *Connector) closedPause(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if c.ctx.Err() != nil && ctx.Err() != nil {
			if c.abandoned.Load() {
				t := time.NewTimer(closedDialPause)
				defer t.Stop()
				<-t.C
			}
			return nil, ErrClosed
		}
		return dial(ctx, network, address)
	}
}

// verifiedCheckout is the liveness checkout check. While Down, a connection
// passing it that read its server's answer to a request made since the
// latest failure proves the database works, so the goroutine is told. A
// pass alone proves nothing: a silent host's idle socket passes the peek.
// A connection a Drain retired is refused first where that is safe
// (drain.go). The healthy path costs two atomic loads.
func (c *Connector) verifiedCheckout(ctx context.Context, nc net.Conn) error {
	if c.refusesRetired(ctx, nc) {
		return driver.ErrBadConn // a Drain replaces it (drain.go)
	}
	err := netx.Checkout(ctx, nc)
	if err == nil && c.ready.current() == StateDown {
		if netx.AnsweredSince(nc, c.ready.failures()) {
			c.post(event{kind: evVerified})
		}
	}
	return err
}

// onEvict is the book's report of an eviction. It may run on a query's read
// path, so it only posts to the connector's goroutine (which goes Down when
// the address is believed unreachable). It never blocks.
func (c *Connector) onEvict(addr netip.AddrPort, cause error, down bool) {
	c.post(event{kind: evEvicted, addr: addr, err: cause, down: down})
}

package pgfast

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/pgfast/pgfast/internal/netx"
)

// connectorCore is the Connector's side of the adapter seam: the core the
// backend adapters call, wired to the connector's dialer and health
// machinery.
type connectorCore struct {
	c *Connector
	// dialFn is the connector's dial function: its dialer, recording the
	// sockets of a lib/pq Connect call, failing once Close abandoned the
	// attempt (closedPause).
	dialFn dialFunc
}

var _ core = (*connectorCore)(nil)

// newCore wires the connector's health machinery into the core the backend
// adapters call.
func (c *Connector) newCore(d *netx.Dialer) *connectorCore {
	return &connectorCore{c: c, dialFn: c.closedPause(recording(d.DialContext))}
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

// orderHosts returns the order to try hosts in, as indexes (Book.OrderHosts).
func orderHosts(b *netx.Book, hosts []HostPort, random bool) []int {
	return b.OrderHosts(len(hosts), func(i int) (string, uint16) { return hostKey(hosts[i]), hosts[i].Port }, random)
}

// closedDialPause is how long a dial made by an attempt Close abandoned
// waits before failing.
const closedDialPause = time.Second

// closedPause makes dials whose context has ended after Close fail without
// dialling: at once while Close waits for the attempts in flight (so an
// attempt still walking its host list ends promptly), and after a pause once
// Close has abandoned them. Abandoned attempts come from a backend that
// ignores its context (a loop over its hosts that never checks it), which
// would otherwise spin a CPU for ever. Other dials (a cancel request for a
// connection still in use) are not touched.
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

// verifiedCheckout is the checkout check (liveness; the adapters judge the
// role first). While the connector is Down, a connection that passes it and
// has read its server's answer to a request made since the latest failure
// (answered I/O, internal/netx/checkout.go) proves the database works, so the
// connector's goroutine is told. Passing the check alone proves nothing: an
// idle socket to a silent host has nothing to read, so its peek passes. The
// healthy path costs one atomic load.
func (c *Connector) verifiedCheckout(ctx context.Context, nc net.Conn) error {
	err := netx.Checkout(ctx, nc)
	if err == nil && c.ready.current() == StateDown {
		if netx.AnsweredSince(nc, c.ready.failures()) {
			c.post(event{kind: evVerified})
		}
	}
	return err
}

// onEvict is the address book's report of an eviction. It may run on a
// query's read path, so it only tells the connector's goroutine, which logs
// it and, when the address is believed unreachable, goes Down so that
// callers fail fast while it looks for a usable server. It never blocks.
func (c *Connector) onEvict(addr netip.AddrPort, cause error, down bool) {
	c.post(event{kind: evEvicted, addr: addr, err: cause, down: down})
}

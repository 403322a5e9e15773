package pgfast

import (
	"reflect"
	"runtime"
	"sync"
	"unsafe"
	"weak"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgfast/pgfast/internal/netx"
)

// poolRegistry maps each NewPool pool to its connector, holding the pool
// weakly so it can be collected. No goroutine watches a pool: pgxpool's close
// channel is checked, without blocking, wherever the connector is reached
// through its pool (PoolConnector, every connection the pool closes), and a
// collected pool's cleanup closes the connector.
var poolRegistry struct {
	mu sync.Mutex
	m  map[weak.Pointer[pgxpool.Pool]]*Connector
}

// poolLink is what a NewPool connector knows of its pool.
type poolLink struct {
	key    weak.Pointer[pgxpool.Pool]
	closed <-chan struct{} // pgxpool's closeChan; nil if unreadable (poolClosed)
}

// PoolConnector returns the connector of a pool made by NewPool or
// NewPoolWithConfig: its Ready, State, Stats and Config are the pool's. It
// returns nil for any other pool, and once the pool is closed. Close the
// pool, not the connector (that makes new connections fail with ErrClosed).
func PoolConnector(p *pgxpool.Pool) *Connector {
	if p == nil {
		return nil
	}
	poolRegistry.mu.Lock()
	c := poolRegistry.m[weak.Make(p)]
	poolRegistry.mu.Unlock()
	if c == nil || c.closeIfPoolClosed() || c.ctx.Err() != nil {
		return nil
	}
	return c
}

// registerPool records c as p's connector. c stops once p is closed (seen
// by closeIfPoolClosed) or garbage collected.
func registerPool(p *pgxpool.Pool, c *Connector) {
	key := weak.Make(p)
	c.pool.Store(&poolLink{key: key, closed: poolClosed(p)})
	poolRegistry.mu.Lock()
	if poolRegistry.m == nil {
		poolRegistry.m = make(map[weak.Pointer[pgxpool.Pool]]*Connector)
	}
	poolRegistry.m[key] = c
	poolRegistry.mu.Unlock()
	// The closure does not refer to p: the pool stays collectable. A pool
	// made inside a synctest bubble is only forgotten: the cleanup runs
	// outside the bubble, where closing the connector's channels is fatal.
	bubble := netx.InBubble()
	runtime.AddCleanup(p, func(key weak.Pointer[pgxpool.Pool]) {
		if c := unregisterPool(key); c != nil && !bubble {
			go c.Close() // Close waits (boundedly): not on the cleanup goroutine
		}
	}, key)
}

// closeWithPool makes every connection the pool closes check whether the
// pool itself was closed: Pool.Close closes the channel, then every idle
// connection (and each one released later) through BeforeClose. The
// application's BeforeClose runs after, as before.
func closeWithPool(pc *pgxpool.Config, c *Connector) {
	user := pc.BeforeClose
	pc.BeforeClose = func(conn *pgx.Conn) {
		c.closeIfPoolClosed()
		if user != nil {
			user(conn)
		}
	}
}

// closeIfPoolClosed closes c (in a goroutine of its own: Close waits,
// boundedly) and forgets its pool once the pool was closed; it reports
// whether it was. It never blocks.
func (c *Connector) closeIfPoolClosed() bool {
	l := c.pool.Load()
	if l == nil || l.closed == nil {
		return false
	}
	select {
	case <-l.closed:
	default:
		return false
	}
	if unregisterPool(l.key) == c {
		go c.Close()
	}
	return true
}

// forgetPool removes a closed connector from the registry (Close).
func (c *Connector) forgetPool() {
	if l := c.pool.Load(); l != nil {
		poolRegistry.mu.Lock()
		if poolRegistry.m[l.key] == c {
			delete(poolRegistry.m, l.key)
		}
		poolRegistry.mu.Unlock()
	}
}

func unregisterPool(key weak.Pointer[pgxpool.Pool]) *Connector {
	poolRegistry.mu.Lock()
	defer poolRegistry.mu.Unlock()
	c := poolRegistry.m[key]
	delete(poolRegistry.m, key)
	return c
}

// poolClosed returns the channel pgxpool closes in Pool.Close, read from its
// unexported closeChan (pgxpool has no close hook; TestUpstreamLayout catches
// a move). Without the field it returns nil and the connector stops when the
// pool is collected.
func poolClosed(p *pgxpool.Pool) <-chan struct{} {
	f := reflect.ValueOf(p).Elem().FieldByName("closeChan")
	if !f.IsValid() || f.Type() != reflect.TypeFor[chan struct{}]() {
		return nil
	}
	return *(*chan struct{})(unsafe.Pointer(f.UnsafeAddr()))
}

package pgfast

import (
	"reflect"
	"runtime"
	"sync"
	"unsafe"
	"weak"

	"github.com/jackc/pgx/v5/pgxpool"
)

// poolRegistry maps each NewPool pool to its connector, holding the pool
// weakly so it can be collected.
var poolRegistry struct {
	mu sync.Mutex
	m  map[weak.Pointer[pgxpool.Pool]]*Connector
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
	defer poolRegistry.mu.Unlock()
	return poolRegistry.m[weak.Make(p)]
}

// registerPool records c as p's connector and stops c when p is closed (at
// once: a watcher of pgxpool's close channel) or garbage collected.
func registerPool(p *pgxpool.Pool, c *Connector) {
	key := weak.Make(p)
	poolRegistry.mu.Lock()
	if poolRegistry.m == nil {
		poolRegistry.m = make(map[weak.Pointer[pgxpool.Pool]]*Connector)
	}
	poolRegistry.m[key] = c
	poolRegistry.mu.Unlock()

	// Neither closure refers to p: the pool stays collectable.
	runtime.AddCleanup(p, func(key weak.Pointer[pgxpool.Pool]) {
		if c := unregisterPool(key); c != nil {
			go c.Close() // Close waits (boundedly): not on the cleanup goroutine
		}
	}, key)
	if closed := poolClosed(p); closed != nil {
		go func() {
			select {
			case <-closed:
				_ = c.Close() // then forget: the registry lists no stopping connector
				unregisterPool(key)
			case <-c.done:
				// Closed another way (the connector itself).
				unregisterPool(key)
			}
		}()
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

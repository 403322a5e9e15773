package pgfast

import (
	"sync"
	"time"
)

// group owns the connector's short-lived background goroutines (role
// verifications, DNS rechecks): Close stops accepting new ones and waits a
// bounded time for the rest.
type group struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// goIfOpen runs f in a goroutine unless the group is closed; it reports
// whether it did.
func (g *group) goIfOpen(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Go(f)
	return true
}

// closeAndWait refuses new goroutines and waits for the running ones, at
// most d (a backend stuck despite its context is abandoned).
func (g *group) closeAndWait(d time.Duration) {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	waitBounded(&g.wg, d)
}

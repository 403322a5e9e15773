package pgfast

import (
	"sync"
	"time"
)

// workers owns the connector's short-lived background goroutines (role
// verifications, DNS rechecks): Close stops accepting new ones and waits a
// bounded time for the rest.
type workers struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// goIfOpen runs f in a goroutine unless the workers are closed; it reports
// whether it did.
func (w *workers) goIfOpen(f func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.wg.Go(f)
	return true
}

// closeAndWait refuses new goroutines and waits for the running ones, at
// most d (a backend stuck despite its context is abandoned).
func (w *workers) closeAndWait(d time.Duration) {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	waitBounded(&w.wg, d)
}

package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pgfast/pgfast/internal/diag"
)

// liveInterval is how often the progress line is redrawn.
const liveInterval = 100 * time.Millisecond

// liveLine is the progress line shown on a terminal while an address is
// pending: what is being done to which address, and for how long. A nil
// *liveLine does nothing.
type liveLine struct {
	w    io.Writer
	mu   sync.Mutex
	ev   diag.Event
	have bool
	done chan struct{}
	wg   sync.WaitGroup
}

// startLiveLine starts redrawing the progress line on w until stop.
func startLiveLine(w io.Writer) *liveLine {
	l := &liveLine{w: w, done: make(chan struct{})}
	l.wg.Go(func() {
		t := time.NewTicker(liveInterval)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
				l.draw()
			}
		}
	})
	return l
}

// update records a progress event (the diag.Probe progress callback).
func (l *liveLine) update(e diag.Event) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.ev, l.have = e, e.Stage != diag.AddrDone
	l.mu.Unlock()
	l.draw()
}

// draw redraws the line, or clears it when nothing is pending.
func (l *liveLine) draw() {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprint(l.w, "\r\x1b[K")
	if l.have {
		fmt.Fprint(l.w, liveText(l.ev, time.Now()))
	}
}

// stop stops redrawing and clears the line.
func (l *liveLine) stop() {
	if l == nil {
		return
	}
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	l.have = false
	l.mu.Unlock()
	l.draw()
}

// liveText is the progress line for e at time now.
func liveText(e diag.Event, now time.Time) string {
	what := e.Addr
	if what == "" {
		what = e.Host
	}
	return fmt.Sprintf("pgfast probe: %s: %s… %.1fs", what, e.Stage, now.Sub(e.At).Seconds())
}

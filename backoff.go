package pgfast

import (
	"math/rand/v2"
	"time"
)

// Backoff bounds for the background goroutine's connection attempts.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// backoff yields capped, jittered, exponentially growing delays: each is drawn
// from [d/2, d] where d doubles from minBackoff up to maxBackoff.
type backoff struct {
	d    time.Duration
	rand func(max time.Duration) time.Duration // [0, max]; nil: math/rand
}

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = minBackoff
	} else {
		b.d = min(2*b.d, maxBackoff)
	}
	half := b.d / 2
	if b.rand != nil {
		return half + b.rand(half)
	}
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.d = 0 }

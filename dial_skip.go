package pgfast

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// unreachableSkip is how long after pgfast evicted an address on evidence
// that its host is unreachable (a silent peer, no route) a dial to it fails
// at once instead of waiting out connect_timeout, unless a connection to it
// has succeeded since. The dials it spares are the ones an eviction itself
// sets off against the dead address: each evicted pgx connection sends a
// cancel request to its server as it closes (pgconn's asyncClose), and
// pgxpool holds the connection's pool slot until that returns, so a dead
// primary's cancel dials kept a pool from opening connections to the new
// primary for a whole connect_timeout; and a multi-host attempt moves on to
// the next host at once. The connector's own probes are never skipped (they
// are how the address is seen alive again), so the skip never delays
// recovery; and it ends after unreachableSkip, so an address that came back
// while another host served is tried again by callers too.
const unreachableSkip = 5 * time.Second

// probeDialKey marks the context of the connector's own connection attempts.
type probeDialKey struct{}

// probeContext marks ctx as a connector probe's.
func probeContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, probeDialKey{}, true)
}

func isProbe(ctx context.Context) bool {
	v, _ := ctx.Value(probeDialKey{}).(bool)
	return v
}

// skipUnreachable removes from targets the addresses evicted as unreachable
// within unreachableSkip and not seen alive since, and returns what is left
// with an attempt record for each address removed.
func (b *addrBook) skipUnreachable(network string, targets []netip.AddrPort, now time.Time) ([]netip.AddrPort, []AddrStats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var skipped []AddrStats
	kept := targets[:0:0]
	for _, t := range targets {
		e := b.addrs[t]
		if e == nil || e.unreachableAt.IsZero() || now.Sub(e.unreachableAt) >= unreachableSkip {
			kept = append(kept, t)
			continue
		}
		skipped = append(skipped, AddrStats{Addr: t.String(), Status: "failed", Err: &net.OpError{
			Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(t),
			Err: &unreachableError{ago: now.Sub(e.unreachableAt), cause: e.err},
		}})
	}
	return kept, skipped
}

// unreachableError is a skipped dial's reason: the address was evicted as
// unreachable ago, for cause. It is a timeout (the dial it replaces would
// have ended as one) and wraps cause.
type unreachableError struct {
	ago   time.Duration
	cause error
}

func (e *unreachableError) Error() string {
	s := fmt.Sprintf("not dialled: evicted as unreachable %s ago", roundDuration(e.ago))
	if e.cause != nil {
		s += " (" + e.cause.Error() + ")"
	}
	return s
}

func (e *unreachableError) Unwrap() error   { return e.cause }
func (e *unreachableError) Timeout() bool   { return true }
func (e *unreachableError) Temporary() bool { return true }

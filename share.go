package pgfast

import (
	"net/netip"

	"github.com/pgfast/pgfast/internal/netx"
)

// viewFor returns the view through which a connector with cfg shares
// host-level verdicts: the process's, or one of its own with sharing off
// (pgfast_share=0) or when made inside a testing/synctest bubble (nothing
// process-wide may hold a bubble's channels or post into it).
func viewFor(cfg *Config) *netx.View {
	if !cfg.Share || netx.InBubble() {
		return netx.NewView()
	}
	return netx.SharedView()
}

// onAlive is the view's report that the pulse of a dead address got an
// answer from PostgreSQL: the connector tries at once rather than at its
// next backoff. It only posts, and never blocks.
func (c *Connector) onAlive(netip.AddrPort) { c.post(event{kind: evAttemptNow}) }

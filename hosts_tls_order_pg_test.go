package pgfast

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// countingResolver answers every name with one address and counts lookups:
// pgfast's dialer resolves on every dial, so it counts dials.
type countingResolver struct {
	addr    netip.Addr
	lookups atomic.Int64
}

func (r *countingResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	return []netip.Addr{r.addr}, nil
}

// TestPGXLoadBalanceTLSFirstRealServer: against a real server without TLS,
// sslmode=prefer load_balance_hosts=random must try TLS first on every
// connect (two dials: TLS refused, then plaintext), never plaintext first
// (one dial).
func TestPGXLoadBalanceTLSFirstRealServer(t *testing.T) {
	s := server(t)
	for _, hosts := range []string{"db.example", "db.example,db2.example"} {
		r := &countingResolver{addr: netip.MustParseAddr(s.Host())}
		dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=prefer load_balance_hosts=random connect_timeout=5",
			hosts, s.Port(), pgtest.TrustUser, pgtest.Database)
		c, err := NewConnector(dsn, WithResolver(r))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := c.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
		const connects = 200
		before := r.lookups.Load()
		for i := range connects {
			dc, err := c.backend.Connect(ctx)
			if err != nil {
				t.Fatalf("connect %d: %v", i, err)
			}
			dc.Close()
		}
		cancel()
		c.Close()
		// Background warm-up dials can only add to the count.
		if dials := r.lookups.Load() - before; dials < 2*connects {
			t.Errorf("%s: %d dials for %d connects, want %d: at least %d connects tried plaintext first",
				hosts, dials, connects, 2*connects, 2*connects-dials)
		}
	}
}

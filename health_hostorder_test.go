package pgfast

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestHostOrderFailedHostTriedLast: once a host of a multi-host DSN failed, new
// connections try it last (so no connection pays for it first) until it is
// seen alive again. Proven on the address book: the failed address's entry
// is not touched again while the other host keeps answering.
func TestHostOrderFailedHostTriedLast(t *testing.T) {
	srv := server(t)
	live := srv.Port()
	dead := freeLoopbackPort(t)
	cases := []struct {
		name     string
		dsnHosts string
		deadAddr netip.AddrPort
	}{
		// Two hosts: nothing listens on 127.0.0.2 (loopback), so it is refused.
		{"distinct hosts", fmt.Sprintf("host=127.0.0.2,%s port=%d", srv.Host(), live),
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(live))},
		// One host, two ports: the dead port comes first.
		{"same host other port", fmt.Sprintf("host=%[1]s,%[1]s port=%d,%d", srv.Host(), dead, live),
			netip.AddrPortFrom(netip.MustParseAddr(srv.Host()), uint16(dead))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b backendCase) {
				dsn := fmt.Sprintf("%s user=%s dbname=%s sslmode=disable", tc.dsnHosts, pgtest.TrustUser, pgtest.Database)
				c, err := NewConnector(dsn, WithBackend(b.backend))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.Ready(ctx); err != nil {
					t.Fatalf("Ready: %v", err)
				}
				first, ok := hcAddr(c, tc.deadAddr.Addr().String(), int(tc.deadAddr.Port()))
				if !ok || first.Status != "failed" {
					t.Fatalf("the first connection did not try %s first and fail: %+v (all %+v)", tc.deadAddr, first, c.Stats().Addrs)
				}
				for i := range 5 {
					dc, err := c.Connect(ctx)
					if err != nil {
						t.Fatalf("connection %d: %v", i, err)
					}
					dc.Close()
				}
				now, _ := hcAddr(c, tc.deadAddr.Addr().String(), int(tc.deadAddr.Port()))
				if !now.Since.Equal(first.Since) || now.Status != "failed" {
					t.Errorf("the failed address %s was tried again while the other host answered: status %s since %v, was %s since %v",
						tc.deadAddr, now.Status, now.Since.Format(time.StampMicro), first.Status, first.Since.Format(time.StampMicro))
				}
			})
		})
	}
}

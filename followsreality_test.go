package pgfast

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/pgfast/pgfast/internal/pgtest"
)

// TestDownEndsWhenConnectionsInUsePassCheckout: a connector Down while its
// server works (here: every fresh login refused with "too many clients",
// because the pool itself holds all the slots) becomes Ready as soon as a
// connection in use passes its checkout checks.
func TestDownEndsWhenConnectionsInUsePassCheckout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		// superuser_reserved_connections (3) leave 2 slots for the pool.
		srv := newServer(t, pgtest.Options{Settings: map[string]string{"max_connections": "5"}})
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		db := openT(t, b, srv.DSN(pgtest.TrustUser))
		readyT(t, db, 10*time.Second)
		db.SetMaxOpenConns(2)
		db.SetMaxIdleConns(2)
		ctx := context.Background()
		c1, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c1.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		c1.Close()
		c2.Close()

		c := ConnectorOf(db)
		failures := c.Stats().DialFailures
		// An eviction report (a blip) takes it Down; its probes find no free slot.
		c.onEvict(netip.MustParseAddrPort("127.0.0.1:1"), errors.New("connection timed out"), true)
		deadline := time.Now().Add(10 * time.Second)
		for c.State() != StateDown || c.Stats().DialFailures == failures {
			if time.Now().After(deadline) {
				t.Fatalf("state %s, %d failed probes", c.State(), c.Stats().DialFailures-failures)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The pool's connections keep working: a checkout after a query answered says so.
		start := time.Now()
		for c.State() != StateReady {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("still %s %s after queries on working connections: %v", c.State(), time.Since(start), c.Stats().LastError)
			}
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			_, _ = db.ExecContext(qctx, "SELECT 1")
			cancel()
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestPromotedStandbyReadyWithinAProbeInterval: a DSN asking for a writable
// server that only lists a standby is Down ("read only"); once the standby
// is promoted, with the application calling, the connector is Ready within
// well under one background probe interval, the verdict taken before the
// promotion not kept.
func TestPromotedStandbyReadyWithinAProbeInterval(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backendCase) {
		primary := newServer(t, pgtest.Options{})
		if err := primary.Start(); err != nil {
			t.Fatal(err)
		}
		standby, err := primary.StartStandby(pgtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(standby.Cleanup)
		db := openT(t, b, withKV(standby.DSN(pgtest.TrustUser), "target_session_attrs=read-write"))
		c := ConnectorOf(db)
		deadline := time.Now().Add(10 * time.Second)
		for c.State() != StateDown {
			if time.Now().After(deadline) {
				t.Fatalf("state %s against a standby with target_session_attrs=read-write", c.State())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(3 * time.Second) // the backoff reaches its cap
		stop := make(chan struct{})
		served := make(chan time.Time, 1)
		go func() { served <- firstSuccess(db, stop) }()
		if err := standby.Promote(); err != nil {
			close(stop)
			t.Fatal(err)
		}
		promoted := time.Now()
		var at time.Time
		select {
		case at = <-served:
		case <-time.After(10 * time.Second):
			close(stop)
			t.Fatalf("no query served within 10s of the promotion (state %s)", c.State())
		}
		close(stop)
		took := at.Sub(promoted)
		t.Logf("served %s after the promotion returned; state %s", took, c.State())
		if took > time.Second {
			t.Errorf("served %s after the promotion, want well under the %s probe interval", took, maxBackoff)
		}
		if c.State() != StateReady {
			t.Errorf("state %s after serving", c.State())
		}
	})
}

// TestRoleVerdictDuringPromotionIsRechecked: a writable-server session that
// still reports in_hot_standby=on saw its server before a promotion (a live
// server never becomes a standby): verified, not evicted at once; a standby
// session that reports it was promoted is evicted at once.
func TestRoleVerdictDuringPromotionIsRechecked(t *testing.T) {
	standby := fakeParams{"in_hot_standby": "on", "default_transaction_read_only": "off"}
	promoted := fakeParams{"in_hot_standby": "off", "default_transaction_read_only": "off"}
	for _, tc := range []struct {
		tsa    string
		params fakeParams
		evict  bool
	}{
		{"read-write", standby, false},
		{"primary", standby, false},
		{"standby", promoted, true},
		{"read-only", promoted, false}, // session-level: verified
	} {
		why, serverWide := roleViolation(tc.tsa, tc.params)
		if why == "" {
			t.Fatalf("%s: no violation for %v", tc.tsa, tc.params)
		}
		if got := evictAtOnce(tc.tsa, serverWide); got != tc.evict {
			t.Errorf("%s (%s): evict at once %v, want %v", tc.tsa, why, got, tc.evict)
		}
	}
}

type fakeParams map[string]string

func (p fakeParams) ParameterStatus(key string) string { return p[key] }
